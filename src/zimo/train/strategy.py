"""How a training step is spread over processes: one process, ``torchrun`` ranks, or accelerate.

The loop (:mod:`zimo.train.loop`) is the same for all three; what differs is kept here:
how the loss is backpropagated, how gradients and step statistics are combined over ranks, how
gradients are clipped, what a checkpoint holds besides the loop's own state, and where the full
weights come from at the end.

- :class:`Plain`: one process. fp16 loss scaling when autocast runs in fp16.
- :class:`Ddp`: ``torchrun`` ranks, each with its share of the batches; gradients are
  all-reduced before the step. DDP semantics without ``DistributedDataParallel``, whose wrapper
  would not see the split forward (frozen lower layers, shared prefix).
- :class:`Accelerated`: ``accelerate launch`` with an FSDP or DeepSpeed config. The sharding
  wrapper must see the whole forward, so the model runs whole (no split, caches or shared
  prefix) and checkpoints add ``accelerator.save_state`` (sharded state).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from zimo.train.config import TrainConfig
from zimo.train.setup import cuda_mixed_precision, launcher_engine


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` outside ``torch.distributed``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Plain:
    """One process: the whole step happens here."""

    engine: str | None = None
    keeps_best_state = True  # early stopping can hold a copy of the best trainable weights
    shards_dev = False  # every rank evaluates every dev row

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.rank, self.world = rank, world

    @property
    def whole_model(self) -> bool:
        """True when the loss must come from the (wrapped) model's own forward."""
        return False

    def prepare(self, model, opt, cfg: TrainConfig, device: torch.device):
        return model, opt

    def backward(self, loss: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
        scaler.scale(loss).backward()  # scaling is a no-op unless autocast runs in fp16

    def reduce(self, params: list[torch.Tensor], stats: torch.Tensor) -> None:
        """Combine this rank's gradients and step statistics with the other ranks' (in place)."""

    def clip(self, model, params: list[torch.Tensor], max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def save_state(self, ckpt_dir: Path, step: int) -> str | None:
        """Extra state saved beside the step file; its name, or None when there is none."""
        return None

    def load_state(self, path: Path) -> bool:
        """Restore the extra state of a checkpoint; False when this run cannot use it."""
        return False  # written under FSDP/DeepSpeed; this run is not: start over

    def prune(self, ckpt_dir: Path) -> None:
        """Remove extra state no step file refers to any more."""

    def export_state_dict(self, model) -> dict[str, torch.Tensor] | None:
        """Full weights gathered from shards; None where the model object holds them itself."""
        return None


class Ddp(Plain):
    """``torchrun`` ranks: each takes its share of the batches; gradients are all-reduced."""

    shards_dev = True

    def reduce(self, params: list[torch.Tensor], stats: torch.Tensor) -> None:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
        torch.distributed.all_reduce(stats)


class Accelerated(Plain):
    """``accelerate launch`` (FSDP or DeepSpeed): the wrapped model runs whole."""

    def __init__(self, engine: str, rank: int = 0, world: int = 1) -> None:
        super().__init__(rank, world)
        self.engine = engine
        # FSDP keeps per-rank shards: a best-weights copy would mix them on resume.
        self.keeps_best_state = engine != "fsdp"
        self.acc: Any = None

    @property
    def whole_model(self) -> bool:
        return self.acc is not None

    def prepare(self, model, opt, cfg: TrainConfig, device: torch.device):
        """Wrap model and optimizer; FSDP/DeepSpeed settings come from the launcher."""
        from accelerate import Accelerator

        mp = cuda_mixed_precision(cfg) if device.type == "cuda" else "no"
        acc = Accelerator(mixed_precision=mp, cpu=device.type == "cpu")
        ds = acc.state.deepspeed_plugin
        if ds is not None:
            # The step shape is zimo.yaml's: DeepSpeed builds its engine from these values.
            ds.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
            ds.deepspeed_config["gradient_accumulation_steps"] = cfg.grad_accum
            ds.deepspeed_config["gradient_clipping"] = cfg.max_grad_norm or 0.0
        self._grad_accum = cfg.grad_accum
        # The scheduler stays the loop's: accelerate's wrapper would step it once per process.
        model, opt = acc.prepare(model, opt)
        self.acc = acc
        return model, opt

    def backward(self, loss: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
        # The loss is this rank's share of the global sum; the wrappers average gradients over
        # ranks (x world) and DeepSpeed's backward also divides by its accumulation steps.
        factor = self.world * (self._grad_accum if self.engine == "deepspeed" else 1)
        self.acc.backward(loss * factor)

    def reduce(self, params: list[torch.Tensor], stats: torch.Tensor) -> None:
        if self.world > 1:  # the wrappers reduce the gradients themselves
            torch.distributed.all_reduce(stats)

    def clip(self, model, params: list[torch.Tensor], max_norm: float) -> None:
        if self.engine != "deepspeed":  # (DeepSpeed clips inside its step)
            # accelerate matches the full parameter list to find the FSDP module.
            self.acc.clip_grad_norm_(model.parameters(), max_norm)

    def save_state(self, ckpt_dir: Path, step: int) -> str | None:
        """``accelerator.save_state`` (every rank writes its shard) into a temp dir, renamed
        into place by rank 0 once all ranks are done."""
        final = ckpt_dir / f"acc-step-{step:08d}"
        tmp = ckpt_dir / f".acc-step-{step:08d}.tmp"
        if self.rank == 0:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        self.barrier()
        self.acc.save_state(str(tmp))
        self.barrier()
        if self.rank == 0:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        return final.name

    def load_state(self, path: Path) -> bool:
        self.acc.load_state(str(path))
        return True

    def prune(self, ckpt_dir: Path) -> None:
        if self.rank != 0 or not ckpt_dir.is_dir():
            return
        keep = {f"acc-step-{p.name[5:13]}" for p in ckpt_dir.glob("step-*.pt")}
        for d in ckpt_dir.glob("acc-step-*"):
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)

    def export_state_dict(self, model) -> dict[str, torch.Tensor] | None:
        if self.acc is None or self.engine != "fsdp":  # ZeRO-2 leaves full weights in the model
            return None
        return self.acc.get_state_dict(model)


def choose_strategy() -> Plain:
    """The strategy the launcher asked for: accelerate's engine, torchrun's ranks, or one process."""
    rank, world = dist_rank_world()
    engine = launcher_engine()
    if engine:
        return Accelerated(engine, rank, world)
    return Ddp(rank, world) if world > 1 else Plain(rank, world)
