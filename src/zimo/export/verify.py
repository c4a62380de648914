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
- **label agreement** (label tasks): the label chosen by comparing label log-probabilities.

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


def label_prompt(tokenizer: Any, text: str, labels: list[str], instruction: str | None) -> str:
    """The prompt used by the engine-neutral label scorer (llama.cpp side and fallback)."""
    task = instruction or "Classify the text."
    content = f"{task}\nAnswer with one of: {', '.join(labels)}.\n\nText: {text}"
    msgs = [{"role": "user", "content": content}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return content + "\nAnswer: "


def _label_prompts(
    tokenizer: Any, labels: list[str], instruction: str | None, texts: list[str]
) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids per text and answer ids per label, as served (``zimo.prompts``) if present."""
    try:
        from zimo.prompts import LabelPrompt
    except ImportError:
        label_ids = [tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
        prompts = [
            tokenizer(label_prompt(tokenizer, t, labels, instruction), add_special_tokens=False)[
                "input_ids"
            ]
            for t in texts
        ]
        return prompts, label_ids
    lp = LabelPrompt(tokenizer, list(labels), instruction)
    return [lp.prompt_ids(t) for t in texts], [list(x) for x in lp.label_ids]


def label_choices_from_logprobs(
    logprob_fn: LogProbFn,
    tokenizer: Any,
    labels: list[str],
    instruction: str | None,
    texts: list[str],
) -> list[int]:
    """Index of the most likely label (summed answer-token log-probs) for each text."""
    prompts, label_ids = _label_prompts(tokenizer, labels, instruction, texts)
    out = []
    for prompt in prompts:
        scores = []
        for ids in label_ids:
            rows = logprob_fn(prompt + ids)
            pos = np.arange(len(prompt) - 1, len(prompt) - 1 + len(ids))
            scores.append(float(rows[pos, ids].sum()))
        out.append(int(np.argmax(scores)))
    return out


def label_choices_hf(
    model: Any, tokenizer: Any, labels: list[str], instruction: str | None, texts: list[str]
) -> tuple[list[int], str]:
    """Label choices as Zimo serves them (``zimo.infer.label.LabelScorer``) when available."""
    try:
        from zimo.infer.label import LabelScorer
    except ImportError:
        fn = hf_logprob_fn(model)
        return label_choices_from_logprobs(fn, tokenizer, labels, instruction, texts), "export"
    import torch

    with torch.inference_mode():
        proba = LabelScorer(model, tokenizer, labels, instruction).predict_proba(texts)
    return [int(i) for i in np.asarray(proba).argmax(-1)], "zimo.infer.label"


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
        choices, how = label_choices_hf(
            model, tok, label_spec["labels"], label_spec.get("instruction"), label_spec["texts"]
        )
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
    merged: Any,
    tokenizer: Any,
    label_spec: dict | None,
) -> dict:
    """Load the GGUF with llama.cpp (llama-cpp-python) and compare; skipped when absent."""
    if not llamacpp_available():
        return {"skipped": f"llama-cpp-python not installed ({LLAMACPP_INSTALL})"}
    from llama_cpp import Llama

    t0 = time.perf_counter()
    longest = max(
        len(p) + len(c) for p, c in zip(ref["prompt_ids"], ref["continuations"], strict=True)
    )
    n_ctx = max(512, longest + 64)
    if label_spec:
        n_ctx = max(n_ctx, 1024)
    llm = Llama(
        model_path=str(gguf_path),
        n_ctx=n_ctx,
        logits_all=True,
        verbose=False,
        n_threads=max(1, len(os.sched_getaffinity(0))),
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
        if label_spec:
            labels, instr, texts = (
                label_spec["labels"],
                label_spec.get("instruction"),
                label_spec["texts"],
            )
            # Both sides through the same engine-neutral scorer, so only the engine differs.
            ref_c = label_choices_from_logprobs(
                hf_logprob_fn(merged), tokenizer, labels, instr, texts
            )
            got = label_choices_from_logprobs(fn, tokenizer, labels, instr, texts)
            out["labels"] = {
                "agreement": _agreement(ref_c, got),
                "n": len(got),
                "target": LABEL_TARGET,
                "scorer": "export",
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

    ``label_spec`` = ``{"labels": [...], "instruction": str | None, "texts": [...]}`` adds the
    label-agreement check (label tasks). ``reference_`` reuses the merge step's greedy
    continuations (see :class:`zimo.export.merge.MergeResult`).
    """
    gguf_path = Path(gguf_path)
    merged.eval()
    ref = reference_ or reference(merged, tokenizer, prompts or DEFAULT_PROMPTS, new_tokens)
    new_tokens = len(ref["continuations"][0]) if ref["continuations"] else new_tokens
    ref_labels = None
    result: dict[str, Any] = {"prompts": len(ref["prompt_ids"]), "new_tokens": new_tokens}
    if label_spec and label_spec.get("texts"):
        ref_labels, how = label_choices_hf(
            merged,
            tokenizer,
            label_spec["labels"],
            label_spec.get("instruction"),
            label_spec["texts"],
        )
    else:
        label_spec = None
    result["transformers"] = check_transformers(gguf_path, ref, quant, label_spec, ref_labels)
    if llamacpp:
        result["llama_cpp"] = check_llamacpp(gguf_path, ref, quant, merged, tokenizer, label_spec)
    else:
        result["llama_cpp"] = {"skipped": "disabled"}
    checks = [v for v in (result["transformers"], result["llama_cpp"]) if "passed" in v]
    result["passed"] = all(c["passed"] for c in checks)
    return result
