"""transformers + PEFT engine: one base model in memory, many LoRA adapters, mixed batches.

Each sub-model is a LoRA adapter loaded into one ``PeftModel`` under an internal name. A batch
may hold rows for different adapters (and for the bare base, ``"__base__"``): PEFT's
``adapter_names=`` forward argument applies each row's adapter, so eight sub-models cost about
one forward pass, not eight. Adapters load on first use and the least recently used ones are
deleted when their parameters exceed ``adapter_memory_mb``.

Decoding is a plain loop over ``model(...)`` with a KV cache rather than ``generate()``: rows in
one batch have their own temperature, top-p, stop strings, max_tokens, JSON constraint and
stream, which ``generate()`` cannot mix.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
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
from zimo.serve.config import BackendConfig, SubModel
from zimo.serve.detok import TextStream
from zimo.serve.json_mode import JsonPrefix

log = logging.getLogger("zimo.serve")

BASE = "__base__"  # PEFT's name for "no adapter" rows in a mixed batch
JSON_CANDIDATES = 64  # how many best tokens to try against the JSON automaton per step


def _resolve_device(spec: str):
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def _resolve_dtype(spec: str, device):
    import torch

    if spec == "auto":
        # fp32 on CPU: bf16 is several times slower on CPUs without bf16 hardware (zimo.hw).
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, spec)


def load_base(base: str, dtype) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the base, through ``zimo.models`` (GGUF converted once)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from zimo.models import load_causal_lm

    return load_causal_lm(base, dtype=dtype)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _word_ids(label_ids: list[int]) -> list[int]:
    """The label word's tokens: ``LabelPrompt.label_ids`` end with the end-of-turn token,
    which generation does not count as a completion token either."""
    return label_ids[:-1] if len(label_ids) > 1 else label_ids


class _Row:
    """Decoding state of one job inside a batch."""

    def __init__(self, job: Job, stream: TextStream, eos: set[int]):
        self.job = job
        self.stream = stream
        self.eos = eos
        self.done = False
        self.finish = "length"
        self.logprobs: list[TokenLogprob] | None = [] if job.params.logprobs else None
        self.json = JsonPrefix() if job.params.json_mode else None
        from zimo.infer.penalties import Penalties

        self.penalties = Penalties.of(job.params)  # once per job, not per decoded token
        self.generator = None
        if job.params.seed is not None:
            import torch

            self.generator = torch.Generator().manual_seed(int(job.params.seed))


class PeftBackend(Backend):
    """The default engine (CPU or one GPU)."""

    kind = "transformers"

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        self.model = None  # the base (a PeftModel once an adapter is loaded)
        self.peft = None
        self.tok = None
        self.device = None
        self.dtype = None
        self._aid: dict[str, str] = {}  # sub-model name -> internal adapter name
        self._loaded: OrderedDict[str, int] = OrderedDict()  # internal name -> bytes, LRU order
        self._next_id = 0
        self._prompts: dict[str, Any] = {}  # label prompt builders per sub-model
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe across threads
        self._piece_cache: dict[int, str] = {}
        self.loads = 0
        self.evictions = 0
        self._pending_unload: set[str] = set()  # adapters to delete before the next batch
        self.stack = None  # StackedLoRA when every loaded adapter is plain LoRA
        self.stack_fallbacks = 0
        self._last_batch_s = 0.0
        from zimo.serve.backends.label_prefix import LabelPrefixCache

        self._label_prefix = LabelPrefixCache()
        self.weights: dict[str, Any] = {}  # the int8 choice (zimo.infer.fastpath)
        # (adapter, model): the only loaded adapter merged into an int8 copy of its layers,
        # for label batches that use just it (see _remerge); None otherwise.
        self.merged: tuple[str, Any] | None = None
        self.merges = 0

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        import torch

        from zimo.hw import serving_threads

        # One request at a time is tokenised (under a lock): a Rust thread pool per core would
        # only compete with the engine's threads.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(self.config.threads or serving_threads())
        self.device = _resolve_device(self.config.device)
        self.dtype = _resolve_dtype(self.config.dtype, self.device)
        model, tok = load_base(self.config.base, self.dtype)
        from zimo.prompts import ensure_chat_template

        ensure_chat_template(tok)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.model = model.to(self.device).eval()
        # int8 base weights where the CPU has no bf16 (label requests run faster there); before
        # any adapter loads, so every sub-model's LoRA sits on the same quantised base. The
        # float weights stay for generation, whose one-token steps int8 makes slower.
        from zimo.infer.fastpath import prepare_for_cpu_inference

        self.weights = prepare_for_cpu_inference(self.model, tok, str(self.device), keep_float=True)
        import inspect

        # transformers 5.x renamed the KV-cache argument ``past_key_values`` -> ``cache``.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.tok = tok
        eos = set()
        for src in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
            if isinstance(src, int):
                eos.add(src)
            elif src:
                eos.update(int(x) for x in src)
        self.eos_ids = eos
        self.vocab = int(model.get_output_embeddings().weight.shape[0])

    # ------------------------------------------------------------------ models
    def add_model(self, sub: SubModel) -> None:
        if sub.adapter_dir is not None:
            cfg = Path(sub.adapter_dir) / "adapter_config.json"
            if not cfg.is_file():
                raise BackendError(
                    400, f"{sub.adapter_dir} is not a PEFT adapter folder (no adapter_config.json)"
                )
        old = self.models.get(sub.name)
        super().add_model(sub)
        self._prompts.pop(sub.name, None)
        self._label_prefix.clear(sub.name)
        if old is not None and old.adapter_dir != sub.adapter_dir:
            # A retrained sub-model under the same name: load the new weights on next use.
            self._pending_unload.add(self._aid.pop(sub.name, ""))

    def remove_model(self, name: str) -> None:
        super().remove_model(name)
        aid = self._aid.pop(name, None)
        if aid:
            self._pending_unload.add(aid)

    def loaded_adapters(self) -> list[str]:
        inv = {v: k for k, v in self._aid.items()}
        return [inv.get(a, a) for a in self._loaded]

    def _adapter_bytes(self, aid: str) -> int:
        marker = f".{aid}."
        return sum(
            p.numel() * p.element_size() for n, p in self.peft.named_parameters() if marker in n
        )

    def _unload(self, aid: str) -> None:
        if self.peft is not None and aid in self.peft.peft_config:
            self.peft.delete_adapter(aid)
            if self.peft.peft_config and self.peft.active_adapter not in self.peft.peft_config:
                self.peft.set_adapter(next(iter(self.peft.peft_config)))
        self._loaded.pop(aid, None)
        self.evictions += 1
        self._restack()

    def _ensure(self, names: set[str]) -> dict[str, str]:
        """Load the adapters of ``names`` (LRU-evicting others); name -> PEFT adapter name."""
        for aid in list(self._pending_unload):
            if aid:
                self._unload(aid)
            self._pending_unload.discard(aid)
        out: dict[str, str] = {}
        for name in names:
            sub = self.models.get(name)
            if sub is None:
                raise BackendError(404, f"The model `{name}` does not exist", "model_not_found")
            if sub.adapter_dir is None:
                out[name] = BASE
                continue
            aid = self._aid.get(name)
            if aid is None or aid not in self._loaded:
                aid = self._load_adapter(sub)
            self._loaded.move_to_end(aid)
            out[name] = aid
        budget = self.config.adapter_memory_mb * 1024 * 1024
        in_use = set(out.values())
        for aid in list(self._loaded):
            if sum(self._loaded.values()) <= budget:
                break
            if aid not in in_use:  # never evict what this batch needs
                self._unload(aid)
        return out

    def _load_adapter(self, sub: SubModel) -> str:
        from peft import PeftModel

        aid = f"zm{self._next_id}"
        self._next_id += 1
        t0 = time.perf_counter()
        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    self.model, sub.adapter_dir, adapter_name=aid, is_trainable=False
                )
                self.peft.eval()
            else:
                self.peft.load_adapter(sub.adapter_dir, adapter_name=aid, is_trainable=False)
                if self.peft.active_adapter not in self.peft.peft_config:
                    # PEFT keeps naming a deleted adapter active when it was the last one; its
                    # forward then fails on every request (a retrained sub-model's hot reload).
                    self.peft.set_adapter(aid)
        except Exception as e:
            raise BackendError(
                500,
                f"could not load the adapter of `{sub.name}` from {sub.adapter_dir}: "
                f"{type(e).__name__}: {str(e)[:200]} (was it trained on base "
                f"{self.config.base!r}?)",
            ) from e
        self.peft.to(self.device)
        self._aid[sub.name] = aid
        self._loaded[aid] = self._adapter_bytes(aid)
        self._restack()
        self.loads += 1
        log.info("loaded adapter %s in %.2fs", sub.name, time.perf_counter() - t0)
        return aid

    def _remerge(self) -> None:
        """Keep a merged int8 copy of the only loaded adapter (``fastpath.merged_int8``), for
        label batches that use just it; drop it when that adapter goes or a second loads.

        The rule: a merged copy pays where one adapter is served alone (the common deployment
        of one sub-model): a label request then runs one int8 GEMM per layer instead of GEMM
        plus LoRA. With several adapters loaded, batches mix them on the shared base (stacked
        LoRA), and a copy per adapter would cost an int8 copy of its layers each; so none is
        kept. Generation never uses it (its one-token steps run the kept float weights)."""
        loaded = list(self._loaded)
        want = loaded[0] if len(loaded) == 1 else None
        if self.merged is not None and self.merged[0] == want:
            return
        self.merged = None
        if want is None or not self.config.merge_single_adapter or not self.weights.get("int8"):
            return
        from zimo.infer.fastpath import merged_int8

        t0 = time.perf_counter()
        model = merged_int8(self.peft, self.tok, want)
        if model is not None:
            self.merged = (want, model)
            self.merges += 1
            log.info(
                "merged adapter %s for label requests in %.2fs", want, time.perf_counter() - t0
            )

    def _label_model(self, adapters: list[str]):
        """The merged copy where every row of a label batch uses its adapter, else None."""
        if self.merged is not None and all(a == self.merged[0] for a in adapters):
            return self.merged[1]
        return None

    def _restack(self) -> None:
        """Use stacked LoRA batches when all loaded adapters allow it, else PEFT's own path."""
        self._label_prefix.clear()  # a prefix's KV depends on the adapters
        if self.peft is None:
            return
        self._remerge()
        from zimo.serve.backends.stacked_lora import StackedLoRA

        loaded = list(self._loaded)
        ok = self.config.stacked_lora and all(StackedLoRA.supports(self.peft, a) for a in loaded)
        if ok:
            if self.stack is None:
                self.stack = StackedLoRA(self.peft)
            self.stack.rebuild(loaded)
        else:
            if self.stack is not None:
                self.stack.close()
                self.stack = None
                self.stack_fallbacks += 1
            self.peft.base_model.enable_adapter_layers()

    # ------------------------------------------------------------------ text
    def _encode(self, text: str) -> list[int]:
        with self._tok_lock:
            return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self.tok.decode(ids, skip_special_tokens=True)

    def _piece(self, tid: int) -> str:
        s = self._piece_cache.get(tid)
        if s is None:
            with self._tok_lock:
                s = self.tok.decode([tid], skip_special_tokens=False)
            self._piece_cache[tid] = s
        return s

    def encode_chat(self, model: str, messages: list[dict[str, str]]) -> list[int]:
        sub = self.models.get(model)
        if sub is not None and sub.task == "label":
            return self.label_prompt(model).prompt_ids(self.label_text(messages))
        msgs = list(messages)
        instr = (sub.metadata.get("system") if sub else None) or None
        if instr and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": instr})
        msgs = [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in msgs]
        with self._tok_lock:
            text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return self._encode(text)

    def encode_text(self, model: str, text: str) -> list[int]:
        sub = self.models.get(model)
        if sub is not None and sub.task == "label":
            return self.label_prompt(model).prompt_ids(text)
        return self._encode(text)

    def label_prompt(self, model: str):
        """The exact prompt builder that training used (``zimo.prompts.LabelPrompt``)."""
        lp = self._prompts.get(model)
        if lp is None:
            with self._tok_lock:
                lp = make_label_prompt(self.tok, self.models[model])
            self._prompts[model] = lp
        return lp

    # ------------------------------------------------------------------ batches
    def run_batch(self, jobs: list[Job]) -> None:
        import torch

        names = self._ensure({j.model for j in jobs})
        t0 = time.perf_counter()
        with torch.inference_mode():
            labels = [j for j in jobs if j.kind == "label"]
            gens = [j for j in jobs if j.kind != "label"]
            if labels:
                self._score_labels(labels, names)
            if gens:
                from zimo.infer.fastpath import float_weights

                with float_weights():
                    self._generate(gens, names)
        self._last_batch_s = time.perf_counter() - t0

    def _forward(self, ids, mask, pos, adapters: list[str], past=None, keep: int = 1,
                 label: bool = False):  # fmt: skip
        """One forward; ``label``: a label batch, which runs on the merged copy of its adapter
        where there is one (:meth:`_remerge`)."""
        kwargs: dict[str, Any] = dict(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=past is not None,
            logits_to_keep=keep,
        )
        if past is not None:
            kwargs[self._cache_kw] = past
        merged = self._label_model(adapters) if label else None
        if merged is not None:
            return merged(**kwargs)
        if self.stack is not None:
            self.stack.set_rows(adapters, self.device)
            return self.peft(**kwargs)
        if self.peft is not None:
            return self.peft(**kwargs, adapter_names=adapters)
        return self.model(**kwargs)

    def new_cache(self):
        """An empty KV cache for this base."""
        from transformers import DynamicCache

        try:  # with the config, sliding-window layers (Gemma 3) get the right cache type
            return DynamicCache(config=self.model.config)
        except TypeError:
            return DynamicCache()

    def _pad(self, seqs: list[list[int]]):
        from zimo.infer.label import left_pad

        return left_pad(seqs, self.tok.pad_token_id, self.device)

    def _score_labels(self, jobs: list[Job], names: dict[str, str]) -> None:
        """Label log-probabilities per job (the same scoring as ``zimo.infer.LabelScorer``)."""
        import torch

        t0 = time.perf_counter()
        per_job: list[list[float]] = [[] for _ in jobs]
        # Rows: one per (job, label) for multi-token answers; one per job when first tokens differ.
        prompts = {id(j): self.label_prompt(j.model) for j in jobs}
        simple = [j for j in jobs if prompts[id(j)].first_tokens_distinct]
        # One forward per sub-model after its cached prompt prefix (label_prefix); whole
        # prompts, all sub-models in one forward, where a prompt does not start with it.
        uncached = []
        for model in dict.fromkeys(j.model for j in simple):
            group = [j for j in simple if j.model == model]
            lp = self._label_prefix.first_token_scores(
                self, model, names[model], group, prompts[id(group[0])]
            )
            if lp is None:
                uncached += group
                continue
            for r, j in enumerate(group):
                per_job[jobs.index(j)] = lp[r].tolist()
        if uncached:
            ids, mask, pos = self._pad([j.prompt_ids for j in uncached])
            adapters = [names[j.model] for j in uncached]
            out = self._forward(ids, mask, pos, adapters, keep=1, label=True)
            lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            for r, j in enumerate(uncached):
                first = [a[0] for a in prompts[id(j)].label_ids]
                per_job[jobs.index(j)] = lp[r, first].tolist()
        rest = [j for j in jobs if not prompts[id(j)].first_tokens_distinct]
        for j in rest:
            answers = prompts[id(j)].label_ids
            k = max(len(a) for a in answers)
            seqs = [j.prompt_ids + a[:-1] for a in answers]
            # Right-align answers of different lengths by left padding the whole sequence.
            ids, mask, pos = self._pad(seqs)
            out = self._forward(ids, mask, pos, [names[j.model]] * len(seqs), keep=k, label=True)
            lp = torch.log_softmax(out.logits.float(), dim=-1)
            scores = []
            for r, a in enumerate(answers):
                tail = lp[r, k - len(a) :, :]
                scores.append(
                    float(tail.gather(-1, torch.tensor(a, device=tail.device)[:, None]).sum())
                )
            per_job[jobs.index(j)] = scores
        dt = time.perf_counter() - t0
        for j, scores in zip(jobs, per_job, strict=True):
            sc = torch.tensor(scores, dtype=torch.float64)
            probs = torch.softmax(sc, dim=0).tolist()
            labels = prompts[id(j)].labels
            from zimo.infer.label import decide_label

            sub = self.models.get(j.model)
            best = decide_label(probs, labels, sub.metadata if sub else None)
            lps = None
            if j.params.logprobs:
                top = sorted(
                    (
                        (lab, math.log(max(pr, 1e-300)))
                        for lab, pr in zip(labels, probs, strict=True)
                    ),
                    key=lambda x: -x[1],
                )
                # One entry per token of the label, as completion_tokens counts them: the
                # first carries the label's log-probability and the other labels as
                # alternatives; the rest are forced once the label is chosen (log p = 0).
                ids = _word_ids(prompts[id(j)].label_ids[best])
                alts = top[: max(1, j.params.top_logprobs)]
                pieces = [self._piece(t) for t in ids] if len(ids) > 1 else [labels[best]]
                lps = [TokenLogprob(pieces[0], top[0][1], alts)]
                lps += [TokenLogprob(piece, 0.0, []) for piece in pieces[1:]]
            j.emit(labels[best], lps)
            j.finish(
                Result(
                    text=labels[best],
                    finish_reason="stop",
                    prompt_tokens=len(j.prompt_ids),
                    completion_tokens=len(_word_ids(prompts[id(j)].label_ids[best])),
                    logprobs=lps,
                    compute_s=dt / len(jobs),
                    queue_s=(j.started or t0) - j.submitted,
                    label_probs=dict(zip(labels, probs, strict=True)),
                    batch_size=len(jobs),
                )
            )

    def _generate(self, jobs: list[Job], names: dict[str, str]) -> None:
        import torch

        t0 = time.perf_counter()
        rows = [_Row(j, TextStream(self.decode, j.params.stop), self.eos_ids) for j in jobs]
        adapters = [names[j.model] for j in jobs]
        ids, mask, pos = self._pad([j.prompt_ids for j in jobs])
        max_new = max(j.params.max_tokens for j in jobs)
        past = self.new_cache()
        cur, cur_pos = ids, pos
        work = 0  # tokens processed, to apportion compute time
        step_tokens = [len(j.prompt_ids) for j in jobs]
        for step in range(max_new):
            out = self._forward(cur, mask, cur_pos, adapters, past=past, keep=1)
            # ``past`` (a DynamicCache) is updated in place by the forward pass.
            logits = out.logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)
            nxt = self._choose(rows, logits, logp)
            chosen = nxt.tolist()  # one device->host copy per step, not one per row
            for r, row in enumerate(rows):
                if row.done:
                    continue
                tid = chosen[r]
                step_tokens[r] += 1
                self._advance(row, tid, logp[r], step)
            work += len(rows)
            if all(row.done for row in rows):
                break
            cur = nxt.view(-1, 1).to(self.device)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            cur_pos = cur_pos[:, -1:] + 1
        dt = time.perf_counter() - t0
        total = sum(step_tokens) or 1
        for r, row in enumerate(rows):
            tail = row.stream.flush()
            if tail:
                row.job.emit(tail)
            j = row.job
            j.finish(
                Result(
                    text=row.stream.text,
                    finish_reason=row.finish,
                    prompt_tokens=len(j.prompt_ids),
                    completion_tokens=len(row.stream.ids),
                    logprobs=row.logprobs,
                    compute_s=dt * step_tokens[r] / total,
                    queue_s=(j.started or t0) - j.submitted,
                    batch_size=len(jobs),
                )
            )

    def _choose(self, rows: list[_Row], logits, logp):
        """Next token per row: greedy, or temperature + top-p sampling; JSON rows constrained."""
        import torch

        for row_i, row in enumerate(rows):
            if not row.done:  # the answer's own tokens only, exactly as `zimo eval` decodes
                row.penalties.apply_row(logits[row_i], row.stream.ids)
        nxt = logits.argmax(dim=-1)
        for r, row in enumerate(rows):
            p = row.job.params
            if row.done:
                nxt[r] = self.tok.pad_token_id
                continue
            order = None
            if p.temperature > 1e-5:
                scaled = logits[r] / p.temperature
                probs = torch.softmax(scaled, dim=-1)
                if p.top_p < 1.0:
                    sp, si = probs.sort(descending=True)
                    keep = (sp.cumsum(0) - sp) < p.top_p
                    # The most likely token always stays: a top_p below float32's range
                    # (1e-46) would otherwise keep nothing and fail the whole batch.
                    keep[0] = True
                    sp = sp * keep
                    probs = torch.zeros_like(probs).scatter_(0, si, sp)
                    probs = probs / probs.sum()
                pick = torch.multinomial(probs, 1, generator=row.generator)
                nxt[r] = pick[0]
                if row.json is not None:
                    order = torch.multinomial(
                        probs, min(JSON_CANDIDATES, int((probs > 0).sum())), generator=row.generator
                    )
            if row.json is not None:
                if order is None:
                    order = logits[r].topk(JSON_CANDIDATES).indices
                nxt[r] = self._json_pick(row, order, logits[r])
        return nxt

    def _json_pick(self, row: _Row, order, logits) -> int:
        """The first candidate whose text keeps a valid JSON prefix (EOS only when complete)."""
        for tid in order.tolist():
            if tid in self.eos_ids:
                continue
            piece = self._piece(tid)
            if not piece:
                continue
            trial = row.json.clone()
            if trial.feed(piece):
                return tid
        # None of the model's top choices fits: scan the whole vocabulary, best first.
        for tid in logits.argsort(descending=True).tolist():
            if tid in self.eos_ids:
                continue
            piece = self._piece(tid)
            if piece and row.json.clone().feed(piece):
                return tid
        return next(iter(self.eos_ids))

    def _advance(self, row: _Row, tid: int, logp, step: int) -> None:
        job = row.job
        if job.cancelled.is_set():
            row.done, row.finish = True, "cancelled"
            return
        if tid in row.eos and not job.params.ignore_eos:
            row.done, row.finish = True, "stop"
            return
        if row.json is not None:
            row.json.feed(self._piece(tid))
        text = row.stream.push(tid)
        lps = None
        if row.logprobs is not None:
            k = job.params.top_logprobs
            top = []
            if k:
                v, i = logp.topk(k)
                top = [(self._piece(int(t)), float(x)) for t, x in zip(i, v, strict=True)]
            entry = TokenLogprob(self._piece(tid), float(logp[tid]), top)
            row.logprobs.append(entry)
            lps = [entry]
        job.emit(text, lps)
        if row.stream.stopped or (row.json is not None and row.json.done):
            row.done, row.finish = True, "stop"
        elif len(row.stream.ids) >= job.params.max_tokens:
            row.done, row.finish = True, "length"

    def stats(self) -> dict[str, Any]:
        s = super().stats()
        s.update(
            device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""),
            adapters_loaded=self.loaded_adapters(),
            adapter_bytes=int(sum(self._loaded.values())),
            adapter_loads=self.loads,
            adapter_evictions=self.evictions,
            stacked_lora=self.stack is not None,
            merged_adapter=self.loaded_adapters()[0] if self.merged is not None else None,
            adapter_merges=self.merges,
            threads=_torch_threads(),
            int8=bool(self.weights.get("int8")),
        )
        return s
