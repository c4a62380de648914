"""vLLM engine (optional, GPU): continuous batching with multi-LoRA (``LoRARequest`` per row).

Each micro-batch from the queue goes to ``LLM.generate`` with one ``SamplingParams`` and one
``LoRARequest`` per prompt, so rows for different adapters run in one vLLM batch (vLLM's punica
kernels). Answers are delivered whole (no token streaming from the offline engine: a stream gets
one chunk); use the transformers engine where token-level streaming matters. Label sub-models
score the first answer token's log-probability per label (labels must differ in their first
token; otherwise the most probable label is generated greedily).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from zimo.serve.backends.base import (
    Backend,
    BackendError,
    Job,
    Result,
    TokenLogprob,
    make_label_prompt,
)
from zimo.serve.config import BackendConfig


def require_vllm():
    try:
        import vllm
    except ImportError as e:
        raise BackendError(
            500, "the vLLM backend needs vllm on a CUDA machine: pip install vllm"
        ) from e
    return vllm


class VllmBackend(Backend):
    kind = "vllm"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self._lora_ids: dict[str, int] = {}
        self._prompts: dict[str, Any] = {}

    def load(self) -> None:
        vllm = require_vllm()
        from zimo.models import load_tokenizer, resolve_model_dir
        from zimo.prompts import ensure_chat_template

        folder = resolve_model_dir(self.config.base)
        dtype = "auto" if self.config.dtype == "auto" else self.config.dtype
        self.llm = vllm.LLM(
            model=str(folder),
            dtype=dtype,
            enable_lora=True,
            max_loras=max(1, int(self.config.adapter_memory_mb // 16)),
            max_lora_rank=64,
            max_model_len=self.config.n_ctx,
        )
        self.tok = load_tokenizer(self.config.base)
        ensure_chat_template(self.tok)

    def _lora(self, name: str):
        sub = self.models.get(name)
        if sub is None or sub.adapter_dir is None:
            return None
        from vllm.lora.request import LoRARequest

        if name not in self._lora_ids:
            self._lora_ids[name] = len(self._lora_ids) + 1
        return LoRARequest(name, self._lora_ids[name], str(Path(sub.adapter_dir)))

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, model: str, messages: list[dict[str, str]]) -> list[int]:
        sub = self.models.get(model)
        if sub is not None and sub.task == "label":
            return self._label_prompt(model).prompt_ids(self.label_text(messages))
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def encode_text(self, model: str, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def _label_prompt(self, model: str):
        if model not in self._prompts:
            self._prompts[model] = make_label_prompt(self.tok, self.models[model])
        return self._prompts[model]

    def run_batch(self, jobs: list[Job]) -> None:
        from vllm import SamplingParams

        t0 = time.perf_counter()
        params, loras, prompts = [], [], []
        for j in jobs:
            p = j.params
            if j.kind == "label":
                sp = SamplingParams(max_tokens=1, temperature=0, logprobs=20)
            else:
                sp = SamplingParams(
                    max_tokens=p.max_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    stop=p.stop or None,
                    logprobs=(p.top_logprobs or 1) if p.logprobs else None,
                    seed=p.seed,
                    # (vLLM counts the prompt's tokens too; Zimo's own engine only the answer's)
                    repetition_penalty=p.repetition_penalty,
                    frequency_penalty=p.frequency_penalty,
                    presence_penalty=p.presence_penalty,
                )
            params.append(sp)
            loras.append(self._lora(j.model))
            prompts.append({"prompt_token_ids": j.prompt_ids})
        try:
            outs = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
        except Exception as e:
            raise BackendError(500, f"vLLM failed: {type(e).__name__}: {str(e)[:200]}") from e
        dt = time.perf_counter() - t0
        for j, out in zip(jobs, outs, strict=True):
            o = out.outputs[0]
            if j.kind == "label":
                res = self._label_result(j, o)
            else:
                lps = None
                if j.params.logprobs and o.logprobs:
                    lps = []
                    for tid, d in zip(o.token_ids, o.logprobs, strict=False):
                        top = sorted(
                            ((v.decoded_token or "", v.logprob) for v in d.values()),
                            key=lambda x: -x[1],
                        )
                        lps.append(TokenLogprob(d[tid].decoded_token or "", d[tid].logprob, top[: j.params.top_logprobs]))  # fmt: skip
                finish = "stop" if o.finish_reason == "stop" else "length"
                res = Result(o.text, finish, len(j.prompt_ids), len(o.token_ids), lps)
                j.emit(o.text, lps)
            res.compute_s = dt / len(jobs)
            res.queue_s = t0 - j.submitted
            res.batch_size = len(jobs)
            j.finish(res)

    def _label_result(self, j: Job, o) -> Result:
        lp = self._label_prompt(j.model)
        first = o.logprobs[0] if o.logprobs else {}
        scores = [first[a[0]].logprob if a[0] in first else -1e9 for a in lp.label_ids]
        m = max(scores)
        probs = [math.exp(s - m) for s in scores]
        total = sum(probs)
        probs = [p / total for p in probs]
        from zimo.infer.label import decide_label

        sub = self.models.get(j.model)
        best = decide_label(probs, lp.labels, sub.metadata if sub else None)
        j.emit(lp.labels[best])
        return Result(lp.labels[best], "stop", len(j.prompt_ids), len(lp.label_ids[best]),
                      label_probs=dict(zip(lp.labels, probs, strict=True)))  # fmt: skip
