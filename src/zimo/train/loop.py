"""The training loop shared by label and chat tasks (one readable ``fit``, litgpt style).

Inputs are pre-tokenised :class:`~zimo.train.batches.Example` rows: token ids plus the positions
whose *next* token is trained (label answer tokens, or assistant turns). Per step:

1. the frozen lower layers run without autograd, or their output comes from a cache built once
   when it fits in memory and more than one epoch is trained (:mod:`zimo.train.frozen`);
2. the upper (trainable) layers run with autograd on length-bucketed, right-padded batches,
   after the prompt prefix every row shares (:mod:`zimo.train.batches`);
3. the LM head runs only at the loss positions; cross-entropy; AdamW on fp32 trainable weights.

How the step is spread over processes (one, ``torchrun`` ranks, accelerate with FSDP or
DeepSpeed) is a :mod:`zimo.train.strategy`. Checkpoints (atomic) every ``checkpoint_every``
steps and at the end; a rerun resumes from the newest; the run's state is a :class:`FitState`.

Devices: the model's device decides (``setup.prepare_model`` puts it there). On CUDA, autocast
runs in bf16 where the GPU has it, else in fp16 with a gradient scaler. An allocator failure
(CUDA OOM, ``MemoryError``, torch's CPU allocator) becomes one :class:`ZimoError` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zimo import interrupts
from zimo.hw import attention_kernel, fastest_attention
from zimo.train.batches import Batch, Example, micro_batches, shared_prefix
from zimo.train.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from zimo.train.config import TrainConfig
from zimo.train.frozen import FrozenLower
from zimo.train.setup import (
    RETUNE_EVERY_S,
    cuda_mixed_precision,
    is_oom,
    oom_error,
    retune_threads,
)
from zimo.train.split import DecoderParts, expanded_cache, head_logits, run_layers, run_prefix
from zimo.train.strategy import choose_strategy

ProgressFn = Callable[[dict[str, Any]], None]

# Budget for the cache of frozen lower-layer outputs (bytes); above it we recompute each step.
CACHE_BUDGET = int(os.environ.get("ZIMO_TRAIN_CACHE_BYTES", 2 * 1024**3))


@dataclass
class FitState:
    """What a run has done so far. Checkpointed with the weights, so a resumed run goes on
    from exactly here and reports the same numbers."""

    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # the last 20 step losses
    dev_loss: float | None = None
    initial_dev_loss: float | None = None  # the untuned dev loss, measured once
    initial_measured: bool = False
    best: float | None = None  # best dev loss so far (early stopping)
    best_step: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # shallow: best_state's tensors are saved, not copied

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitState:
        known = {f.name for f in fields(cls)}
        st = cls(**{k: v for k, v in d.items() if k in known})
        # Checkpoints written before this flag existed measured it when the key was present.
        st.initial_measured = st.initial_measured or "initial_dev_loss" in d
        return st


class Fitter:
    """Trains the parameters of ``model`` that require grad, from layer ``first_trained`` up."""

    def __init__(
        self,
        model: torch.nn.Module,
        parts: DecoderParts,
        first_trained: int,
        train: list[Example],
        dev: list[Example],
        cfg: TrainConfig,
        out_dir: Path,
        pad_id: int,
        *,
        bf16: bool,
        cache_frozen: bool,
        progress: ProgressFn | None = None,
        run_key: str = "",
    ) -> None:
        self.model, self.parts, self.cfg = model, parts, cfg
        self.train, self.dev = train, dev
        self.out_dir, self.pad_id, self.progress = Path(out_dir), pad_id, progress
        self.strategy = choose_strategy()
        self.engine, self.rank, self.world = (
            self.strategy.engine,
            self.strategy.rank,
            self.strategy.world,
        )
        self.lower = list(range(first_trained))
        self.upper = list(range(first_trained, parts.n_layers))
        self.prefix_len = shared_prefix(train + dev) if cfg.share_prefix else 0
        if self.engine:  # the wrapped model runs whole: no split forward, caches or shared prefix
            self.lower, self.upper = [], list(range(parts.n_layers))
            self.prefix_len = 0
        self.bf16 = bf16
        self.cache_frozen = cache_frozen and bool(self.lower)
        self.prefix_ids = torch.tensor([train[0].ids[: self.prefix_len]]) if train else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        # peft LoRA layers (their input casts are switched off under CPU autocast, see _autocast)
        self._lora_layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
        self.attention: dict[str, str] | None = None  # kernel per phase, set by choose_attention
        self.device = self.params[0].device if self.params else torch.device("cpu")
        self.frozen = FrozenLower(
            parts, self.lower, self.device, self.prefix_ids, pad_id, self._autocast
        )
        self.scaler: torch.amp.GradScaler | None = None
        self._where = "starting"
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.log_path = self.out_dir / "train_log.jsonl"
        self.run_key = hashlib.sha1(
            (run_key + cfg.model_dump_json() + str(self.world)).encode()
        ).hexdigest()[:16]

        nb = math.ceil(len(train) / cfg.batch_size)
        self.micro_per_step = cfg.grad_accum * self.world
        self.steps_per_epoch = max(1, nb // self.micro_per_step)
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.n_batches_epoch = nb

        self.opt = torch.optim.AdamW(
            self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999)
        )
        from transformers import get_scheduler

        warm = cfg.warmup if cfg.warmup >= 1 else cfg.warmup * self.total_steps
        name = {"constant": "constant_with_warmup"}.get(cfg.schedule, cfg.schedule)
        self.sched = get_scheduler(
            name, self.opt, num_warmup_steps=int(warm), num_training_steps=self.total_steps
        )

    # -- forward pieces -----------------------------------------------------------------------
    def amp_dtype(self) -> torch.dtype | None:
        """Autocast dtype: bf16 when chosen; fp16 on CUDA where :func:`cuda_mixed_precision`
        says so (a GPU without bf16, or accelerate's ``mixed_precision: fp16``)."""
        if self.engine:
            return None  # accelerate's mixed precision (set by the strategy's prepare) applies
        if self.bf16:
            return torch.bfloat16
        if self.device.type == "cuda" and cuda_mixed_precision(self.cfg) == "fp16":
            return torch.float16
        return None

    def _autocast(self):
        """Mixed precision (when chosen) and the attention kernel that measures fastest here.

        With a bf16 frozen base on the CPU, peft's LoRA layers would cast each bf16 input up to
        their fp32 weights' dtype, and autocast would cast it straight back down for the
        matmul: a copy of every LoRA input, forward and backward, for a bit-identical result
        (~10% of a step, measured). Inside autocast that round trip is switched off.
        """
        dt = self.amp_dtype()
        stack = contextlib.ExitStack()
        stack.enter_context(
            torch.autocast(self.device.type, dtype=dt or torch.bfloat16, enabled=dt is not None)
        )
        if self.attention is not None:
            grad = torch.is_grad_enabled()
            stack.enter_context(attention_kernel(self.attention["train" if grad else "eval"]))
        if dt is not None and self.device.type == "cpu" and self._lora_layers:
            for m in self._lora_layers:
                m.cast_input_dtype_enabled = False
            stack.callback(self._restore_lora_casts)
        return stack

    def _restore_lora_casts(self) -> None:
        for m in self._lora_layers:
            m.cast_input_dtype_enabled = True

    def choose_attention(self) -> dict[str, Any] | None:
        """Time the CPU attention kernels on this model's shape (a typical training batch) and
        keep the faster for training (forward + backward) and for evaluation (forward only)."""
        if self.device.type != "cpu" or self.engine or not self.train:
            return None
        cfg = self.parts.body.config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        seq = int(np.median([e.n_tokens for e in self.train])) - self.prefix_len
        dtype = "bfloat16" if self.amp_dtype() == torch.bfloat16 else "float32"
        bs = min(self.cfg.batch_size, len(self.train))
        train = fastest_attention(dtype, bs, heads, seq, head_dim, backward=True)
        ev = fastest_attention(dtype, bs, heads, seq, head_dim, backward=False)
        self.attention = {"train": train["backend"], "eval": ev["backend"]}
        return {"attention": self.attention, "attention_ms": {"train": train, "eval": ev}}

    def _upper_prefix_cache(self, batch: int):
        """The shared prefix through the trainable layers, once per batch (with autograd), as a
        KV cache expanded to ``batch`` rows."""
        h = self.frozen.prefix(self.bf16)[1] if self.lower else None
        ids = self.prefix_ids.to(self.device) if h is None else None
        pairs, _ = run_prefix(
            self.parts, self.upper, self.prefix_len, self.device, input_ids=ids, hidden=h
        )
        return expanded_cache(pairs, batch)

    def build_cache(self, split: str, examples: list[Example]) -> None:
        """Run the frozen lower layers once over ``examples`` and keep their outputs."""
        self.frozen.build_cache(split, examples, max(8, self.cfg.batch_size * 2), self.bf16)

    def _loss_whole(self, examples: list[Example], idx: list[int]) -> tuple[torch.Tensor, Batch]:
        """Loss through the (wrapped) model's own forward, logits only at the loss columns."""
        b = Batch([examples[i] for i in idx], self.pad_id).to(self.device)
        keep = torch.unique(b.cols)  # sorted
        out = self.model(
            input_ids=b.ids,
            attention_mask=b.mask,
            position_ids=b.pos,
            logits_to_keep=keep,
            use_cache=False,
        )
        logits = out.logits[b.rows, torch.searchsorted(keep, b.cols)]
        return F.cross_entropy(logits.float(), b.targets, reduction="sum"), b

    def _loss(
        self, split: str, examples: list[Example], idx: list[int]
    ) -> tuple[torch.Tensor, Batch]:
        if self.strategy.whole_model:
            return self._loss_whole(examples, idx)
        b = Batch([examples[i] for i in idx], self.pad_id, self.prefix_len).to(self.device)
        with self._autocast():
            if self.frozen.is_cached(split):
                h_in = self.frozen.cached(split, idx, b)
            else:
                h_in = self.frozen.hidden(b, self.bf16)
            h = run_layers(
                self.parts,
                self.upper,
                input_ids=b.ids if h_in is None else None,
                hidden=h_in,
                attention_mask=b.full_mask(),
                position_ids=b.pos,
                final_norm=True,
                cache=self._upper_prefix_cache(len(b.lengths)) if b.offset else None,
            )
            logits = head_logits(self.parts, h[b.rows, b.cols])
        loss = F.cross_entropy(logits.float(), b.targets, reduction="sum")
        return loss, b

    @torch.no_grad()
    def dev_loss(self) -> float | None:
        """Mean per-token loss on the dev rows (sharded over ranks under DDP)."""
        if not self.dev:
            return None
        was = self.model.training
        self.model.eval()
        order = np.argsort([e.n_tokens for e in self.dev], kind="stable")
        # Sharding wrappers run collectives inside forward: every rank must run the same
        # batches, so under accelerate each rank evaluates all dev rows (no reduce needed).
        shard = self.strategy.shards_dev
        mine = order[self.rank :: self.world] if shard else order
        total = [0.0, 0.0]
        bs = max(8, self.cfg.batch_size * 2)
        for s in range(0, len(mine), bs):
            loss, b = self._loss("dev", self.dev, mine[s : s + bs].tolist())
            total[0] += loss.item()
            total[1] += b.n_loss
        # On the model's device: NCCL reduces only CUDA tensors.
        total = torch.tensor(total, dtype=torch.float64, device=self.device)
        if shard:
            torch.distributed.all_reduce(total)
        self.model.train(was)
        return float(total[0] / max(total[1], 1))

    # -- checkpoints --------------------------------------------------------------------------
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def _load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)

    def _checkpoint(self, step: int, st: dict[str, Any]) -> None:
        acc_state = self.strategy.save_state(self.ckpt_dir, step)
        if self.rank == 0:
            save_checkpoint(
                self.ckpt_dir,
                step,
                {
                    "run_key": self.run_key,
                    "step": step,
                    "acc_state": acc_state,
                    "trainable": self._trainable_state() if acc_state is None else None,
                    "optimizer": self.opt.state_dict() if acc_state is None else None,
                    "scheduler": self.sched.state_dict(),
                    "scaler": self.scaler.state_dict() if self.scaler else None,
                    "rng": rng_state(),
                    **st,
                },
            )
            self.strategy.prune(self.ckpt_dir)
        self.strategy.barrier()

    def _resume(self) -> dict[str, Any] | None:
        ck = load_latest(self.ckpt_dir)
        if ck is None or ck.get("run_key") != self.run_key:
            return None  # none, or written by a run with other settings: start over
        if ck.get("acc_state"):
            if not self.strategy.load_state(self.ckpt_dir / ck["acc_state"]):
                return None  # written under FSDP/DeepSpeed; this run is not: start over
        else:
            self._load_trainable(ck["trainable"])
            self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        return ck

    def _log(self, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def _trim_log(self, last_step: int) -> None:
        """Drop log lines past the checkpoint we resume from, so no step is logged twice."""
        if self.rank != 0 or not self.log_path.exists():
            return
        keep = [
            ln
            for ln in self.log_path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= last_step
        ]
        tmp = self.log_path.with_suffix(".tmp")
        tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        os.replace(tmp, self.log_path)

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``total_steps`` (or early stop), resuming from a checkpoint if one exists.

        Out of memory (CPU or GPU) raises a one-line :class:`ZimoError` naming the fixes.
        """
        try:
            return self._fit()
        except Exception as e:
            if not is_oom(e):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise oom_error(self.cfg, self.device, self._where) from e

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # fp16 autocast needs loss scaling (small gradients underflow fp16); bf16 does not.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype() == torch.float16
        )
        if self.engine and not self.strategy.whole_model:
            self.model, self.opt = self.strategy.prepare(self.model, self.opt, cfg, self.device)
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        ck, step, st, cache_s = self._start()
        self.model.train()
        eval_every = cfg.eval_every or max(1, self.steps_per_epoch // 2)
        stream = micro_batches(
            self.train, cfg.batch_size, cfg.seed, cfg.bucketing, step * self.micro_per_step
        )
        t_run = t_threads = time.perf_counter()
        run_tokens = 0
        while step < self.total_steps and not st.stopped_early:
            interrupts.check()  # a Ctrl-C a library swallowed since the last check (setup, a step)
            t0 = time.perf_counter()
            if self.device.type == "cpu" and t0 - t_threads > RETUNE_EVERY_S:
                retune_threads(cfg)  # other jobs may have started or stopped
                t_threads = t0
            self._where = f"training (step {step + 1} of {self.total_steps})"
            loss_sum, n_tok, lr, last, n_loss = self._optimizer_step(stream)
            step += 1
            dt = time.perf_counter() - t0
            loss_v = loss_sum / max(n_loss, 1)
            st.tokens += n_tok
            st.seconds += dt
            run_tokens += n_tok
            st.losses = (st.losses + [loss_v])[-20:]
            row = {
                "step": step,
                "epoch": round(last[0] / self.n_batches_epoch, 3),
                "loss": round(loss_v, 5),
                "lr": lr,
                "tokens": st.tokens,
                "tokens_per_s": round(n_tok / dt, 1),
                "elapsed_s": round(st.seconds, 2),
                "threads": torch.get_num_threads(),
            }
            if step % eval_every == 0 or step == self.total_steps:
                self._where = f"evaluating dev loss (step {step})"
                dl = self.dev_loss()
                self._where = f"training (step {step} of {self.total_steps})"
                if dl is not None:
                    row["dev_loss"] = round(dl, 5)
                    st.dev_loss = dl
                    self._early_stop(st, dl, step)
            self._log(row)
            if self.progress:
                rate = run_tokens / max(time.perf_counter() - t_run, 1e-9)
                left = (self.total_steps - step) * (st.seconds / max(step, 1))
                self.progress(
                    {
                        **row,
                        "total_steps": self.total_steps,
                        "eta_s": left,
                        "avg_tokens_per_s": rate,
                    }
                )
            if step % cfg.checkpoint_every == 0 and step < self.total_steps:
                self._checkpoint(step, {"state": st.to_dict()})
        return self._finish(ck, step, st, cache_s)

    def _start(self) -> tuple[dict[str, Any] | None, int, FitState, float]:
        """Resume from the last checkpoint (or start fresh), cache the frozen layers, measure
        the untuned dev loss: ``(checkpoint, step, state, caching seconds)``."""
        ck = self._resume()
        step = ck["step"] if ck else 0
        st = FitState.from_dict(ck["state"]) if ck else FitState()
        if ck:
            self._trim_log(step)
        elif self.rank == 0 and self.log_path.exists():
            self.log_path.unlink()

        t_cache = time.perf_counter()
        if self.cache_frozen and step < self.total_steps:
            self._where = "caching the frozen layers' outputs"
            self.build_cache("train", self.train)
            if self.dev:
                self.build_cache("dev", self.dev)
        cache_s = time.perf_counter() - t_cache
        if not st.initial_measured:
            # The untuned starting point, so a report can show the dev loss falling from it
            # (kept in the checkpointed state: a resumed run reports the same value).
            self._where = "evaluating the dev loss before training"
            st.initial_dev_loss = self.dev_loss() if step == 0 else None
            st.initial_measured = True

        return ck, step, st, cache_s

    def _optimizer_step(self, stream) -> tuple[float, int, float, Any, int]:
        """One optimizer step over ``micro_per_step`` micro-batches (this rank's share):
        ``(loss sum, tokens, learning rate, the last micro-batch, loss tokens)`` over all ranks."""
        cfg = self.cfg
        self.opt.zero_grad(set_to_none=True)
        micro = [next(stream) for _ in range(self.micro_per_step)]
        mine = [m for m in micro if m[0] % self.world == self.rank]
        n_loss = sum(sum(len(self.train[i].pos) for i in m[2]) for m in micro)
        loss_sum, tokens = 0.0, 0
        for _, _epoch, idx in mine:
            loss, b = self._loss("train", self.train, idx)
            self.strategy.backward(loss / n_loss, self.scaler)
            loss_sum += loss.item()
            tokens += b.n_tokens
        stats = torch.tensor([loss_sum, tokens], dtype=torch.float64, device=self.device)
        self.strategy.reduce(self.params, stats)
        self.scaler.unscale_(self.opt)  # no-op unless fp16; clipping needs true gradients
        if cfg.max_grad_norm:
            self.strategy.clip(self.model, self.params, cfg.max_grad_norm)
        lr = self.sched.get_last_lr()[0]
        self.scaler.step(self.opt)  # = opt.step(), except fp16 steps with inf/nan are skipped
        self.scaler.update()
        self.sched.step()
        return float(stats[0]), int(stats[1]), lr, micro[-1], n_loss

    def _finish(self, ck: dict[str, Any] | None, step: int, st: FitState,
                cache_s: float) -> dict[str, Any]:  # fmt: skip
        """Restore the best weights where early stopping saw them, checkpoint, summarise."""
        restored = None
        if st.best_state is not None and st.best_step not in (None, step):
            # With early stopping configured, the run ends on the weights of its best dev loss
            # (as transformers' load_best_model_at_end), whether it stopped early or ran to the
            # end with a later rise in dev loss (overfitting a small set).
            self._load_trainable(st.best_state)
            restored = st.best_step
        if ck is None or ck["step"] != step:
            self._checkpoint(step, {"state": st.to_dict()})
        return {
            "steps": step,
            "total_steps": self.total_steps,
            "epochs": round(step * self.micro_per_step / self.n_batches_epoch, 3),
            "final_loss": float(np.mean(st.losses[-10:])) if st.losses else None,
            "initial_dev_loss": st.initial_dev_loss,
            "final_dev_loss": st.dev_loss,
            "best_dev_loss": st.best,
            "stopped_early": st.stopped_early,
            "restored_best_step": restored,
            "trained_tokens": st.tokens,
            "seconds": round(st.seconds, 2),
            "tokens_per_s": round(st.tokens / max(st.seconds, 1e-9), 1),
            "cache_seconds": round(cache_s, 2),
            "resumed_from_step": ck["step"] if ck else None,
            "world_size": self.world,
            "weights_sha1": self.weights_digest(),
        }

    def export_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full weights to save, gathered from the shards under FSDP (call on every rank; rank 0
        gets them). None where the model object holds full weights itself (native, DDP, ZeRO-2):
        then ``model.save_pretrained`` needs nothing more."""
        return self.strategy.export_state_dict(self.model)

    def weights_digest(self) -> str:
        """sha1 over the trainable weights (ranks of a DDP run must agree bit for bit)."""
        h = hashlib.sha1()
        for name, t in sorted(self._trainable_state().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _early_stop(self, st: FitState, dl: float, step: int) -> None:
        es = self.cfg.early_stopping
        if st.best is None or dl < st.best - (es.min_delta if es else 0.0):
            st.best, st.bad_evals, st.best_step = dl, 0, step
            if es and self.strategy.keeps_best_state:
                st.best_state = self._trainable_state()
        elif es:
            st.bad_evals += 1
            if st.bad_evals >= es.patience:
                st.stopped_early = True
