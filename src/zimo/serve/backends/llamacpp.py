"""llama.cpp engine (optional extra ``zimo[llamacpp]``): GGUF models on CPUs, phones, Macs.

The base is a GGUF file (``backend.base``: a ``.gguf`` path or an embedded preset such as
``gecko``). A sub-model is either the base itself, a GGUF LoRA adapter (a ``*.gguf`` file in its
``adapter_dir``, from ``zimo export``) or a merged GGUF (``metadata["gguf"]``). llama.cpp keeps
one adapter set per context, so each sub-model gets its own ``Llama`` instance (the base
weights are memory-mapped, so the page cache shares them) and instances are evicted LRU beyond
``adapter_memory_mb`` worth of adapters. Jobs run one at a time: llama-cpp-python has no mixed
LoRA batches; use the transformers engine (or vLLM on GPUs) where batching matters.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from zimo.hw import cores
from zimo.serve.backends.base import (
    Backend,
    BackendError,
    Job,
    Result,
    TokenLogprob,
    make_label_prompt,
)
from zimo.serve.config import BackendConfig


def require_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        raise BackendError(
            500,
            "the llama.cpp backend needs llama-cpp-python: pip install 'zimo[llamacpp]'",
        ) from e
    return llama_cpp


def base_gguf(base: str) -> Path:
    """The GGUF file of ``base`` (a path, or an embedded preset's file)."""
    p = Path(base).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p
    from zimo.models import embedded_gguf

    found = embedded_gguf(base)
    if found is None:
        raise BackendError(
            500, f"backend llamacpp needs a .gguf base or an embedded preset, got {base!r}"
        )
    return Path(found)


def _last_logits(llm):
    """Next-token logits after the last ``eval`` (float64 copy).

    llama-cpp-python >= 0.3 no longer copies logits into ``llm.scores`` unless the model was
    made with ``logits_all=True`` (which holds n_ctx × vocab floats); the context still has
    the last position's row, so read that.
    """
    import numpy as np

    ptr = llm._ctx.get_logits()
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)


def eval_after_cached_prefix(llm: Any, ids: list[int]) -> int:
    """Evaluate ``ids`` on ``llm``, keeping the KV cache of the longest prefix it shares with
    what the context last held; returns how many tokens were reused.

    Every label prompt of a sub-model starts with the same template, system prompt and
    instruction (~40 of an SMS prompt's ~65 tokens): re-evaluating them per request was most
    of a label request's time. Always evaluates at least the last token, so the logits belong
    to this prompt. Recurrent models (no positional KV to truncate) start from scratch."""
    n = 0
    if not (getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False)):
        for a, b in zip(llm.input_ids[: llm.n_tokens], ids, strict=False):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)
    if n <= 0:
        llm.reset()
        n = 0
    else:
        llm.n_tokens = n  # eval() drops the cached keys and values from here on
    llm.eval(ids[n:])
    return n


def label_log_scores(
    llm: Any, prompt_ids: list[int], label_ids: list[list[int]], first_tokens_distinct: bool
) -> list[float]:
    """Log-probability of each label's answer after ``prompt_ids``, scored like the default
    engine (:mod:`.transformers_peft`, ``zimo.infer.label.LabelScorer``).

    When the labels' first answer tokens differ (``ham``/``spam``), only that first token is
    scored: one prompt evaluation per text instead of one per label plus a step per answer
    token. The default engine scores the same way, so both engines compute the same
    P(label) and meet the stored decision threshold on equal terms (on the SMS demo the
    whole-answer score happened to give the same labels too: benchmarks/export_quant.md).
    Otherwise each answer is fed token by token (without ``logits_all`` llama.cpp keeps
    only the last position's logits).
    """
    import numpy as np

    def logprob(tok: int) -> float:
        logits = _last_logits(llm)
        return float(logits[tok] - np.logaddexp.reduce(logits))

    eval_after_cached_prefix(llm, prompt_ids)
    if first_tokens_distinct:
        logits = _last_logits(llm)
        norm = np.logaddexp.reduce(logits)
        return [float(logits[ans[0]] - norm) for ans in label_ids]
    scores = []
    for ans in label_ids:
        if scores:  # the first label reuses the evaluation above; later ones its prefix
            eval_after_cached_prefix(llm, prompt_ids)
        total = 0.0
        for k, tok in enumerate(ans):
            total += logprob(tok)
            if k < len(ans) - 1:
                llm.eval([tok])
        scores.append(total)
    return scores


class LlamaCppBackend(Backend):
    kind = "llamacpp"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self._llms: OrderedDict[str, Any] = OrderedDict()  # sub-model name -> Llama
        self._hf_tok = None
        self._lock = threading.Lock()
        self._prompts: dict[str, Any] = {}

    def load(self) -> None:
        self._llama_cpp = require_llama_cpp()
        self.gguf = base_gguf(self.config.base)
        from zimo.models import load_tokenizer
        from zimo.prompts import ensure_chat_template

        # The HF tokenizer renders chat templates and label prompts exactly as training did;
        # llama.cpp's GGUF carries the same vocabulary, so the token ids carry over.
        self._hf_tok = load_tokenizer(self.config.base)
        ensure_chat_template(self._hf_tok)
        self._get("")  # load the base now, so the first request is not slow

    def _get(self, name: str):
        llm = self._llms.get(name)
        if llm is not None:
            self._llms.move_to_end(name)
            return llm
        sub = self.models.get(name)
        kwargs: dict[str, Any] = dict(
            model_path=str(self.gguf),
            n_ctx=self.config.n_ctx,
            # ZIMO_THREADS caps every Zimo process (zimo.hw.cores), this engine's too.
            n_threads=self.config.threads or cores(),
            verbose=False,
        )
        if sub is not None and sub.metadata.get("gguf"):
            kwargs["model_path"] = str(sub.metadata["gguf"])
        elif sub is not None and sub.adapter_dir:
            loras = sorted(Path(sub.adapter_dir).glob("*.gguf"))
            if not loras:
                raise BackendError(
                    400,
                    f"`{name}` has no GGUF LoRA in {sub.adapter_dir}; export it with "
                    "`zimo export` or serve it with backend transformers",
                )
            kwargs["lora_path"] = str(loras[0])
        llm = self._llama_cpp.Llama(**kwargs)
        self._llms[name] = llm
        # Keep at most a handful of contexts (each holds a KV cache).
        while len(self._llms) > max(2, int(self.config.adapter_memory_mb // 64)):
            self._llms.popitem(last=False)
        return llm

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._hf_tok(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, model: str, messages: list[dict[str, str]]) -> list[int]:
        sub = self.models.get(model)
        if sub is not None and sub.task == "label":
            return self._label_prompt(model).prompt_ids(self.label_text(messages))
        with self._lock:
            text = self._hf_tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return list(self._hf_tok(text, add_special_tokens=False)["input_ids"])

    def encode_text(self, model: str, text: str) -> list[int]:
        with self._lock:
            return list(self._hf_tok(text, add_special_tokens=False)["input_ids"])

    def _label_prompt(self, model: str):
        lp = self._prompts.get(model)
        if lp is None:
            lp = self._prompts[model] = make_label_prompt(self._hf_tok, self.models[model])
        return lp

    def run_batch(self, jobs: list[Job]) -> None:
        import time

        for job in jobs:
            t0 = time.perf_counter()
            try:
                res = self._label(job) if job.kind == "label" else self._generate(job)
            except BackendError as e:
                job.fail(e)
                continue
            res.compute_s = time.perf_counter() - t0
            res.queue_s = t0 - job.submitted
            job.finish(res)

    def _label(self, job: Job) -> Result:
        import numpy as np

        llm = self._get(job.model)
        lp = self._label_prompt(job.model)
        scores = label_log_scores(llm, job.prompt_ids, lp.label_ids, lp.first_tokens_distinct)
        sc = np.array(scores)
        probs = np.exp(sc - np.logaddexp.reduce(sc))
        from zimo.infer.label import decide_label

        sub = self.models.get(job.model)
        best = decide_label(probs, lp.labels, sub.metadata if sub else None)
        label = lp.labels[best]
        lps = None
        if job.params.logprobs:
            top = sorted(((lab, math.log(max(p, 1e-300))) for lab, p in zip(lp.labels, probs, strict=True)), key=lambda x: -x[1])  # fmt: skip
            lps = [TokenLogprob(label, top[0][1], top[: max(1, job.params.top_logprobs)])]
        job.emit(label, lps)
        return Result(label, "stop", len(job.prompt_ids), len(lp.label_ids[best]), lps,
                      label_probs=dict(zip(lp.labels, probs.tolist(), strict=True)))  # fmt: skip

    def _generate(self, job: Job) -> Result:
        p = job.params
        llm = self._get(job.model)
        kwargs: dict[str, Any] = dict(
            prompt=job.prompt_ids,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=p.stop or None,
            logprobs=p.top_logprobs or (1 if p.logprobs else None),
            seed=p.seed if p.seed is not None else -1,
            # Explicit, so llama.cpp's own defaults never apply. (Its repeat penalty looks at
            # the last 64 tokens, prompt included; Zimo's engine counts only the answer's.)
            repeat_penalty=p.repetition_penalty,
            frequency_penalty=p.frequency_penalty,
            presence_penalty=p.presence_penalty,
            stream=True,
        )
        if p.json_mode:
            from llama_cpp import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_json_schema('{"type": "object"}', verbose=False)
        text, finish, n, lps = [], "length", 0, ([] if p.logprobs else None)
        for chunk in llm.create_completion(**kwargs):
            if job.cancelled.is_set():
                finish = "cancelled"
                break
            ch = chunk["choices"][0]
            piece = ch.get("text") or ""
            entries = None
            if lps is not None and ch.get("logprobs"):
                lp = ch["logprobs"]
                entries = [
                    TokenLogprob(t, float(v), sorted(top.items(), key=lambda x: -x[1]) if top else [])
                    for t, v, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"] or [{}] * len(lp["tokens"]), strict=False)
                ]  # fmt: skip
                lps.extend(entries)
            if piece:
                n += 1
                text.append(piece)
                job.emit(piece, entries)
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
        return Result("".join(text), finish, len(job.prompt_ids), n, lps)
