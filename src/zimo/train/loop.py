"""The training loop shared by label and chat tasks (one readable ``fit``, litgpt style).

Inputs are pre-tokenised :class:`Example` rows: token ids plus the positions whose *next*
token is trained (label answer tokens, or assistant turns). Per step:

1. the frozen lower layers run without autograd (or their output comes from a cache built once,
   when it fits in memory and more than one epoch is trained);
2. the upper (trainable) layers run with autograd on length-bucketed, right-padded batches;
3. the LM head runs only at the loss positions; cross-entropy; AdamW on fp32 trainable weights.

Checkpoints (atomic) every ``checkpoint_every`` steps and at the end; a rerun resumes from the
newest. Under ``torchrun`` (``torch.distributed`` initialised) each rank takes its share of the
batches and gradients are all-reduced before the step (DDP semantics without the wrapper, which
would not see our split forward).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zimo.train.checkpoint import load_latest, rng_state, save_checkpoint, set_rng_state
from zimo.train.config import TrainConfig
from zimo.train.split import DecoderParts, head_logits, run_layers

ProgressFn = Callable[[dict[str, Any]], None]

# Budget for the cache of frozen lower-layer outputs (bytes); above it we recompute each step.
CACHE_BUDGET = int(os.environ.get("ZIMO_TRAIN_CACHE_BYTES", 2 * 1024**3))


@dataclass
class Example:
    """One training row: ``ids`` and the positions whose next token is ``targets[i]``."""

    ids: list[int]
    pos: list[int]
    targets: list[int]
    group: int = 0  # label index for label tasks: batches mix groups (see epoch_batches)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def epoch_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    bucketing: bool,
    groups: Sequence[int] | None = None,
) -> list[list[int]]:
    """The batches of one epoch: a pure function of (seed, epoch), so a resume replays it.

    Bucketing groups rows of similar length so padding costs little. Rows are first cut into
    random pools of 16 batches; inside a pool each group (label) is sorted by length and dealt
    out in parallel, so batch *i* holds the i-th shortest slice of every label. A plain length
    sort would make batches label-homogeneous whenever length correlates with the label (spam
    SMS are longer than ham), and training then swings between "all ham" and "all spam".
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(lengths)
    order = rng.permutation(n)
    if not bucketing:
        chunks = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
        return [chunks[i] for i in rng.permutation(len(chunks))]
    lens = np.asarray(lengths)
    grp = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
    pool = batch_size * 16
    chunks = []
    for p in np.split(order, range(pool, n, pool)):
        nb = max(1, math.ceil(len(p) / batch_size))
        parts: list[list[int]] = [[] for _ in range(nb)]
        for g in np.unique(grp[p]):
            rows = p[grp[p] == g]
            rows = rows[np.argsort(lens[rows], kind="stable")]
            for b, piece in enumerate(np.array_split(rows, nb)):
                parts[b] += piece.tolist()
        chunks += [c for c in parts if c]
    return [chunks[i] for i in rng.permutation(len(chunks))]


class _Batch:
    """Right-padded ids, mask, positions and the flat (row, col) loss index of a batch."""

    def __init__(self, rows: list[Example], pad_id: int):
        width = max(r.n_tokens for r in rows)
        self.ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(rows), width), dtype=torch.long)
        r_idx, c_idx, tgt = [], [], []
        for i, r in enumerate(rows):
            self.ids[i, : r.n_tokens] = torch.tensor(r.ids)
            self.mask[i, : r.n_tokens] = 1
            r_idx += [i] * len(r.pos)
            c_idx += r.pos
            tgt += r.targets
        self.pos = torch.arange(width).unsqueeze(0).expand(len(rows), width)
        self.rows, self.cols = torch.tensor(r_idx), torch.tensor(c_idx)
        self.targets = torch.tensor(tgt)
        self.n_tokens = int(self.mask.sum())
        self.n_loss = len(tgt)
        self.lengths = [r.n_tokens for r in rows]


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
        self.lower = list(range(first_trained))
        self.upper = list(range(first_trained, parts.n_layers))
        self.bf16, self.rank, self.world = bf16, *_dist()
        self.cache_frozen = cache_frozen and bool(self.lower)
        self._cache: dict[str, list[torch.Tensor]] = {}
        self.params = [p for p in model.parameters() if p.requires_grad]
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
    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def _lower_hidden(self, b: _Batch) -> torch.Tensor | None:
        if not self.lower:
            return None
        with torch.no_grad(), self._autocast():
            return run_layers(
                self.parts,
                self.lower,
                input_ids=b.ids,
                attention_mask=b.mask,
                position_ids=b.pos,
                final_norm=False,
            )

    def _cached_hidden(self, split: str, idx: list[int], b: _Batch) -> torch.Tensor:
        rows = [self._cache[split][i] for i in idx]
        h = torch.zeros((len(rows), b.ids.shape[1], rows[0].shape[-1]), dtype=rows[0].dtype)
        for i, r in enumerate(rows):
            h[i, : r.shape[0]] = r
        return h

    def build_cache(self, split: str, examples: list[Example]) -> None:
        """Run the frozen lower layers once over ``examples`` and keep their outputs."""
        out: list[torch.Tensor | None] = [None] * len(examples)
        order = np.argsort([e.n_tokens for e in examples], kind="stable")
        bs = max(8, self.cfg.batch_size * 2)
        for s in range(0, len(order), bs):
            idx = order[s : s + bs].tolist()
            b = _Batch([examples[i] for i in idx], self.pad_id)
            h = self._lower_hidden(b)
            for j, i in enumerate(idx):
                out[i] = h[j, : b.lengths[j]].clone()
        self._cache[split] = out  # type: ignore[assignment]

    def _loss(
        self, split: str, examples: list[Example], idx: list[int]
    ) -> tuple[torch.Tensor, _Batch]:
        b = _Batch([examples[i] for i in idx], self.pad_id)
        with self._autocast():
            if split in self._cache:
                h_in = self._cached_hidden(split, idx, b)
            else:
                h_in = self._lower_hidden(b)
            h = run_layers(
                self.parts,
                self.upper,
                input_ids=b.ids if h_in is None else None,
                hidden=h_in,
                attention_mask=b.mask,
                position_ids=b.pos,
                final_norm=True,
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
        mine = order[self.rank :: self.world]
        total = torch.zeros(2, dtype=torch.float64)
        bs = max(8, self.cfg.batch_size * 2)
        for s in range(0, len(mine), bs):
            loss, b = self._loss("dev", self.dev, mine[s : s + bs].tolist())
            total += torch.tensor([loss.item(), b.n_loss], dtype=torch.float64)
        if self.world > 1:
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
        if self.rank == 0:
            save_checkpoint(
                self.ckpt_dir,
                step,
                {
                    "run_key": self.run_key,
                    "step": step,
                    "trainable": self._trainable_state(),
                    "optimizer": self.opt.state_dict(),
                    "scheduler": self.sched.state_dict(),
                    "rng": rng_state(),
                    **st,
                },
            )
        if self.world > 1:
            torch.distributed.barrier()

    def _resume(self) -> dict[str, Any] | None:
        ck = load_latest(self.ckpt_dir)
        if ck is None or ck.get("run_key") != self.run_key:
            return None  # none, or written by a run with other settings: start over
        self._load_trainable(ck["trainable"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
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
    def _micro_batches(self, start_micro: int):
        """Yield ``(global_micro_index, epoch, batch_indices)`` from ``start_micro`` on."""
        k = start_micro
        while True:
            epoch, i = divmod(k, self.n_batches_epoch)
            batches = epoch_batches(
                [e.n_tokens for e in self.train],
                self.cfg.batch_size,
                self.cfg.seed,
                epoch,
                self.cfg.bucketing,
                [e.group for e in self.train],
            )
            for j in range(i, len(batches)):
                yield k, epoch, batches[j]
                k += 1

    def fit(self) -> dict[str, Any]:
        """Train to ``total_steps`` (or early stop), resuming from a checkpoint if one exists."""
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ck = self._resume()
        step = ck["step"] if ck else 0
        st = (
            ck["state"]
            if ck
            else {
                "tokens": 0,
                "seconds": 0.0,
                "losses": [],
                "best": None,
                "bad_evals": 0,
                "best_state": None,
                "stopped_early": False,
                "dev_loss": None,
            }
        )
        if ck:
            self._trim_log(step)
        elif self.rank == 0 and self.log_path.exists():
            self.log_path.unlink()

        t_cache = time.perf_counter()
        if self.cache_frozen and step < self.total_steps:
            self.build_cache("train", self.train)
            if self.dev:
                self.build_cache("dev", self.dev)
        cache_s = time.perf_counter() - t_cache

        self.model.train()
        eval_every = cfg.eval_every or max(1, self.steps_per_epoch // 2)
        stream = self._micro_batches(step * self.micro_per_step)
        t_run = time.perf_counter()
        run_tokens = 0
        while step < self.total_steps and not st["stopped_early"]:
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            micro = [next(stream) for _ in range(self.micro_per_step)]
            mine = [m for m in micro if m[0] % self.world == self.rank]
            n_loss = sum(sum(len(self.train[i].pos) for i in m[2]) for m in micro)
            loss_sum, tokens = 0.0, 0
            for _, _epoch, idx in mine:
                loss, b = self._loss("train", self.train, idx)
                (loss / n_loss).backward()
                loss_sum += loss.item()
                tokens += b.n_tokens
            stats = torch.tensor([loss_sum, tokens], dtype=torch.float64)
            if self.world > 1:
                for p in self.params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    torch.distributed.all_reduce(p.grad)
                torch.distributed.all_reduce(stats)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            lr = self.sched.get_last_lr()[0]
            self.opt.step()
            self.sched.step()
            step += 1
            dt = time.perf_counter() - t0
            loss_v = float(stats[0]) / max(n_loss, 1)
            st["tokens"] += int(stats[1])
            st["seconds"] += dt
            run_tokens += int(stats[1])
            st["losses"] = (st["losses"] + [loss_v])[-20:]
            row = {
                "step": step,
                "epoch": round(micro[-1][0] / self.n_batches_epoch, 3),
                "loss": round(loss_v, 5),
                "lr": lr,
                "tokens": st["tokens"],
                "tokens_per_s": round(int(stats[1]) / dt, 1),
                "elapsed_s": round(st["seconds"], 2),
            }
            if step % eval_every == 0 or step == self.total_steps:
                dl = self.dev_loss()
                if dl is not None:
                    row["dev_loss"] = round(dl, 5)
                    st["dev_loss"] = dl
                    self._early_stop(st, dl)
            self._log(row)
            if self.progress:
                rate = run_tokens / max(time.perf_counter() - t_run, 1e-9)
                left = (self.total_steps - step) * (st["seconds"] / max(step, 1))
                self.progress(
                    {
                        **row,
                        "total_steps": self.total_steps,
                        "eta_s": left,
                        "avg_tokens_per_s": rate,
                    }
                )
            if step % cfg.checkpoint_every == 0 and step < self.total_steps:
                self._checkpoint(step, {"state": st})
        if st["stopped_early"] and st["best_state"] is not None:
            self._load_trainable(st["best_state"])
        if ck is None or ck["step"] != step:
            self._checkpoint(step, {"state": st})
        return {
            "steps": step,
            "total_steps": self.total_steps,
            "epochs": round(step * self.micro_per_step / self.n_batches_epoch, 3),
            "final_loss": float(np.mean(st["losses"][-10:])) if st["losses"] else None,
            "final_dev_loss": st["dev_loss"],
            "best_dev_loss": st["best"],
            "stopped_early": st["stopped_early"],
            "trained_tokens": st["tokens"],
            "seconds": round(st["seconds"], 2),
            "tokens_per_s": round(st["tokens"] / max(st["seconds"], 1e-9), 1),
            "cache_seconds": round(cache_s, 2),
            "resumed_from_step": ck["step"] if ck else None,
            "world_size": self.world,
            "weights_sha1": self.weights_digest(),
        }

    def weights_digest(self) -> str:
        """sha1 over the trainable weights (ranks of a DDP run must agree bit for bit)."""
        h = hashlib.sha1()
        for name, t in sorted(self._trainable_state().items()):
            h.update(name.encode())
            h.update(t.detach().float().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _early_stop(self, st: dict[str, Any], dl: float) -> None:
        es = self.cfg.early_stopping
        if st["best"] is None or dl < st["best"] - (es.min_delta if es else 0.0):
            st["best"], st["bad_evals"] = dl, 0
            if es:
                st["best_state"] = self._trainable_state()
        elif es:
            st["bad_evals"] += 1
            if st["bad_evals"] >= es.patience:
                st["stopped_early"] = True
