"""Check an exported GGUF against the merged HF model it came from.

Two independent readers load the file back: transformers' GGUF loader (always) and
llama.cpp through llama-cpp-python (when the ``zimo[llamacpp]`` extra is installed; that is
the engine Ollama and phones run). On a fixed prompt set we compare:

- **tokenizer agreement**: the embedded tokenizer splits every prompt exactly as the HF one;
- **greedy-token agreement**: the HF model's greedy continuation of each prompt is fed to the
  GGUF model (teacher forcing) and we count the positions where the GGUF model's top token is
  the same, up to and including the first end-of-answer token (EOS / end of turn): an engine
  stops there, so later positions are never generated and would only add noise (a model's
  next-token distribution after its end of turn is nearly flat). Every counted position
  agreeing for a prompt means free-running greedy decoding gives the identical answer, which
  is also reported (``sequences_identical``). The agreement over all positions, past the
  end of the answer too, is reported as ``token_agreement_all_positions``;
- **label agreement** (label tasks): on test-split texts, the label ``zimo serve`` would answer
  with the merged model (the sub-model's own prompt, scoring and dev-tuned decision
  threshold) against the label each engine gives from the GGUF with the same rule; the
  llama.cpp side is scored by the llama.cpp serving engine's own function.

Targets: f16 >= 99 %, q8_0 >= 95 % greedy-token agreement; labels >= 99 %.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zimo.export.gguf_writer import LLAMACPP_INSTALL, llamacpp_available
from zimo.export.merge import (
    DEFAULT_PROMPTS,
    chat_prompt_ids,
    greedy_continuations,
    stop_token_ids,
)

TOKEN_TARGETS = {"f16": 0.99, "q8_0": 0.95, "q4_k_m": 0.85}
LABEL_TARGET = 0.99

# (ids) -> log-softmax rows, one per position: the one thing both engines must provide.
LogProbFn = Callable[[list[int]], np.ndarray]


@contextlib.contextmanager
def _fast_gguf_name_maps() -> Iterator[None]:
    """Cache gguf.get_tensor_name_map while transformers loads a GGUF.

    transformers rebuilds the (pure, expensive) name map once per module, ~400 times for a
    30-layer model: 10-20 s of a 135M model's load on a busy CPU. Caching it changes nothing
    but the time; the original is restored afterwards.
    """
    import functools

    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def reference(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> dict:
    """The merged HF model's prompt ids and greedy continuations (what GGUF must reproduce)."""
    prompt_ids = chat_prompt_ids(tokenizer, prompts)
    conts = greedy_continuations(model, prompt_ids, new_tokens)
    texts = [tokenizer.decode(p) for p in prompt_ids]
    return {
        "prompt_ids": prompt_ids,
        "continuations": conts,
        "prompt_texts": texts,
        "stop_ids": stop_token_ids(tokenizer, model),
    }


def answer_length(continuation: list[int], stop_ids: list[int] | set[int]) -> int:
    """Tokens up to and including the first end-of-answer token (all of them if none)."""
    for i, t in enumerate(continuation):
        if t in stop_ids:
            return i + 1
    return len(continuation)


def token_agreement(ref: dict, logprob_fn: LogProbFn) -> dict:
    """Teacher-forced top-1 agreement of ``logprob_fn`` with the reference continuations.

    Counted up to each answer's end (see the module docstring); ``token_agreement_all_positions``
    also counts the positions after it.
    """
    stops = set(ref.get("stop_ids") or [])
    agree = total = identical = agree_all = total_all = 0
    for p, c in zip(ref["prompt_ids"], ref["continuations"], strict=True):
        rows = logprob_fn(p + c)
        pred = rows[len(p) - 1 : len(p) - 1 + len(c)].argmax(-1)
        hit = pred == np.asarray(c)
        n = answer_length(c, stops)
        agree += int(hit[:n].sum())
        total += n
        identical += int(hit[:n].all())
        agree_all += int(hit.sum())
        total_all += len(c)
    return {
        "token_agreement": agree / max(total, 1),
        "positions": total,
        "sequences_identical": identical,
        "sequences": len(ref["prompt_ids"]),
        "token_agreement_all_positions": agree_all / max(total_all, 1),
        "positions_all": total_all,
    }


def hf_logprob_fn(model: Any) -> LogProbFn:
    import torch

    def fn(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            return torch.log_softmax(logits, -1).numpy()

    return fn


# --------------------------------------------------------------------------- labels


# Keys of a label spec that shape the prompt and the decision, as the sub-model's
# ``label_task.json`` stores them and ``zimo serve`` applies them.
LABEL_RULE_KEYS = ("system", "max_text_tokens", "positive_label", "decision_threshold")


def served_label_prompt(tokenizer: Any, spec: dict) -> Any:
    """The exact label prompt serving builds (:func:`zimo.serve.backends.base.make_label_prompt`):
    the spec's system prompt (the training default when absent) and text truncation."""
    from zimo.prompts import LabelPrompt

    kw: dict[str, Any] = {}
    if "system" in spec:
        kw["system"] = spec["system"]
    if spec.get("max_text_tokens"):
        kw["max_text_tokens"] = int(spec["max_text_tokens"])
    return LabelPrompt(tokenizer, list(spec["labels"]), spec.get("instruction"), **kw)


def decide_labels(proba: np.ndarray, spec: dict) -> list[int]:
    """Label index per row with the served decision rule (dev-tuned threshold when stored)."""
    from zimo.infer.label import decide

    labels = list(spec["labels"])
    pos_label, thr = spec.get("positive_label"), spec.get("decision_threshold")
    pos = labels.index(pos_label) if pos_label in labels and thr is not None else None
    return [int(i) for i in decide(np.asarray(proba), pos, thr)]


def _softmax(scores: list[float]) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    s = np.exp(s - s.max())
    return s / s.sum()


def label_choices_from_logprobs(logprob_fn: LogProbFn, tokenizer: Any, spec: dict) -> list[int]:
    """Served label per text, scored from full-sequence log-probs (any engine).

    Scored as the serving engines do: the first answer token when it tells the labels apart,
    else the summed log-probs of each whole answer (label + end-of-turn).
    """
    lp = served_label_prompt(tokenizer, spec)
    rows = []
    for text in spec["texts"]:
        prompt = lp.prompt_ids(text)
        if lp.first_tokens_distinct:
            last = logprob_fn(prompt)[len(prompt) - 1]
            scores = [float(last[ids[0]]) for ids in lp.label_ids]
        else:
            scores = []
            for ids in lp.label_ids:
                r = logprob_fn(prompt + ids)
                pos = np.arange(len(prompt) - 1, len(prompt) - 1 + len(ids))
                scores.append(float(r[pos, ids].sum()))
        rows.append(_softmax(scores))
    return decide_labels(np.stack(rows), spec)


def label_choices_hf(model: Any, tokenizer: Any, spec: dict) -> tuple[list[int], str]:
    """Served labels of a transformers model: ``zimo.infer.label.LabelScorer`` (the scoring
    the default serving engine shares) in float32, with the served decision rule."""
    import torch

    from zimo.infer.label import LabelScorer

    lp = served_label_prompt(tokenizer, spec)
    scorer = LabelScorer(
        model,
        tokenizer,
        lp.labels,
        lp.instruction,
        system=lp.system,
        max_text_tokens=lp.max_text_tokens,
        autocast=False,  # serving runs float32 on CPUs; bf16 autocast would add its own noise
    )
    with torch.inference_mode():
        proba = scorer.predict_proba(list(spec["texts"]))
    return decide_labels(proba, spec), "zimo.infer.label"


def label_choices_llamacpp(
    gguf_path: Path, tokenizer: Any, spec: dict, n_threads: int
) -> list[int]:
    """Served labels of a GGUF through llama.cpp, scored by the llama.cpp serving engine's own
    function (:func:`zimo.serve.backends.llamacpp.label_log_scores`)."""
    from llama_cpp import Llama

    from zimo.serve.backends.llamacpp import label_log_scores

    lp = served_label_prompt(tokenizer, spec)
    prompts = [lp.prompt_ids(t) for t in spec["texts"]]
    longest = max((len(p) for p in prompts), default=0) + max(len(a) for a in lp.label_ids)
    # A context without logits_all: the serving engine reads the last position's logits.
    llm = Llama(
        model_path=str(gguf_path),
        n_ctx=max(512, longest + 16),
        verbose=False,
        n_threads=n_threads,
    )
    try:
        rows = [
            _softmax(label_log_scores(llm, p, lp.label_ids, lp.first_tokens_distinct))
            for p in prompts
        ]
    finally:
        llm.close() if hasattr(llm, "close") else None
    return decide_labels(np.stack(rows), spec)


def _agreement(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)


# --------------------------------------------------------------------------- backends


def _tokenizer_agreement(texts: list[str], ref_ids: list[list[int]], encode) -> float:
    same = sum(encode(t) == list(ids) for t, ids in zip(texts, ref_ids, strict=True))
    return same / max(len(texts), 1)


def check_transformers(
    gguf_path: Path, ref: dict, quant: str, label_spec: dict | None, ref_labels: list[int] | None
) -> dict:
    """Load the GGUF with transformers' GGUF loader and compare."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    folder, fname = str(gguf_path.parent), gguf_path.name
    with _fast_gguf_name_maps():
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname).eval()
    out: dict[str, Any] = {"load_seconds": round(time.perf_counter() - t0, 1)}
    out["tokenizer_agreement"] = _tokenizer_agreement(
        ref["prompt_texts"],
        ref["prompt_ids"],
        lambda t: tok(t, add_special_tokens=False)["input_ids"],
    )
    out.update(token_agreement(ref, hf_logprob_fn(model)))
    out["target"] = TOKEN_TARGETS[quant]
    passed = out["token_agreement"] >= out["target"] and out["tokenizer_agreement"] == 1.0
    if label_spec and ref_labels is not None:
        choices, how = label_choices_hf(model, tok, label_spec)
        out["labels"] = {
            "agreement": _agreement(ref_labels, choices),
            "n": len(choices),
            "target": LABEL_TARGET,
            "scorer": how,
        }
        passed = passed and out["labels"]["agreement"] >= LABEL_TARGET
    out["passed"] = bool(passed)
    return out


def llamacpp_logprob_fn(llm: Any) -> LogProbFn:
    def fn(ids: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    return fn


def check_llamacpp(
    gguf_path: Path,
    ref: dict,
    quant: str,
    tokenizer: Any,
    label_spec: dict | None,
    ref_labels: list[int] | None,
) -> dict:
    """Load the GGUF with llama.cpp (llama-cpp-python) and compare; skipped when absent."""
    if not llamacpp_available():
        return {"skipped": f"llama-cpp-python not installed ({LLAMACPP_INSTALL})"}
    from llama_cpp import Llama

    t0 = time.perf_counter()
    longest = max(
        len(p) + len(c) for p, c in zip(ref["prompt_ids"], ref["continuations"], strict=True)
    )
    n_threads = max(1, len(os.sched_getaffinity(0)))
    llm = Llama(
        model_path=str(gguf_path),
        n_ctx=max(512, longest + 64),
        logits_all=True,
        verbose=False,
        n_threads=n_threads,
    )
    out: dict[str, Any] = {"load_seconds": round(time.perf_counter() - t0, 1)}
    try:
        out["tokenizer_agreement"] = _tokenizer_agreement(
            ref["prompt_texts"],
            ref["prompt_ids"],
            lambda t: llm.tokenize(t.encode("utf-8"), add_bos=False, special=True),
        )
        fn = llamacpp_logprob_fn(llm)
        out.update(token_agreement(ref, fn))
        out["target"] = TOKEN_TARGETS[quant]
        passed = out["token_agreement"] >= out["target"] and out["tokenizer_agreement"] == 1.0
        if label_spec and ref_labels is not None:
            # The llama.cpp serving engine's scoring on the GGUF vs the served labels of the
            # merged model: prompt, scoring and decision rule as ``zimo serve`` applies them.
            t1 = time.perf_counter()
            got = label_choices_llamacpp(gguf_path, tokenizer, label_spec, n_threads)
            out["labels"] = {
                "agreement": _agreement(ref_labels, got),
                "n": len(got),
                "target": LABEL_TARGET,
                "scorer": "zimo.serve.backends.llamacpp",
                "seconds": round(time.perf_counter() - t1, 1),
            }
            passed = passed and out["labels"]["agreement"] >= LABEL_TARGET
        out["passed"] = bool(passed)
    finally:
        llm.close() if hasattr(llm, "close") else None
    return out


def verify_gguf(
    merged: Any,
    tokenizer: Any,
    gguf_path: str | os.PathLike,
    quant: str,
    *,
    prompts: list[str] | None = None,
    new_tokens: int = 16,
    label_spec: dict | None = None,
    llamacpp: bool = True,
    reference_: dict | None = None,
) -> dict:
    """Compare a GGUF with the merged HF model; returns the ``verify`` part of the report.

    ``label_spec`` = ``{"labels": [...], "instruction": str | None, "texts": [...]}`` plus the
    sub-model's ``system``, ``max_text_tokens``, ``positive_label`` and ``decision_threshold``
    (from ``label_task.json``) adds the label-agreement check (label tasks): the merged model's
    labels as ``zimo serve`` decides them vs each engine's labels on the GGUF. ``reference_`` reuses the merge step's greedy
    continuations (see :class:`zimo.export.merge.MergeResult`).
    """
    gguf_path = Path(gguf_path)
    merged.eval()
    ref = reference_ or reference(merged, tokenizer, prompts or DEFAULT_PROMPTS, new_tokens)
    new_tokens = len(ref["continuations"][0]) if ref["continuations"] else new_tokens
    ref_labels = None
    result: dict[str, Any] = {"prompts": len(ref["prompt_ids"]), "new_tokens": new_tokens}
    if label_spec and label_spec.get("texts"):
        ref_labels, how = label_choices_hf(merged, tokenizer, label_spec)
        result["served_labels"] = {
            "n": len(ref_labels),
            "counts": {lab: ref_labels.count(i) for i, lab in enumerate(label_spec["labels"])},
            "decision_threshold": label_spec.get("decision_threshold"),
            "positive_label": label_spec.get("positive_label"),
        }
    else:
        label_spec = None
    result["transformers"] = check_transformers(gguf_path, ref, quant, label_spec, ref_labels)
    if llamacpp:
        result["llama_cpp"] = check_llamacpp(
            gguf_path, ref, quant, tokenizer, label_spec, ref_labels
        )
    else:
        result["llama_cpp"] = {"skipped": "disabled"}
    checks = [v for v in (result["transformers"], result["llama_cpp"]) if "passed" in v]
    result["passed"] = all(c["passed"] for c in checks)
    return result
