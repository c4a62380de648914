"""What the label and chat trainers share around the loop: build the fitter (base, LoRA/full,
precision chosen by measurement, frozen-layer cache), and save the trained weights.

Kept in one place so a change of method or engine (QLoRA, FSDP) is handled once for both tasks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zimo.train.batches import Example
from zimo.train.config import TrainConfig
from zimo.train.loop import CACHE_BUDGET, Fitter, ProgressFn
from zimo.train.setup import atomic_dir, cast_frozen_bf16, choose_bf16, prepare_model

ADAPTER_METHODS = ("lora", "qlora")


def is_adapter(cfg: TrainConfig) -> bool:
    """True when training writes a PEFT adapter (``adapter/``), not full weights (``model/``)."""
    return cfg.method in ADAPTER_METHODS


def make_fitter(
    cfg: TrainConfig,
    base_dir: Path,
    train: list[Example],
    dev: list[Example],
    out_dir: Path,
    pad_id: int,
    *,
    progress: ProgressFn | None,
    run_key: str,
    init_adapter: Path | None = None,
) -> tuple[Fitter, Any, dict[str, Any]]:
    """The model made trainable and its :class:`Fitter`, with bf16 and the frozen-layer cache
    decided here. Returns ``(fitter, model, info)``; ``info`` goes into the training summary.
    ``init_adapter``: LoRA weights to start from instead of the fresh init (a warm start)."""
    model, parts, first, minfo = prepare_model(cfg, base_dir)
    if init_adapter is not None:
        from zimo.train.warm_start import load_adapter_weights

        load_adapter_weights(model, init_adapter)
    fitter = Fitter(
        model, parts, first, train, dev, cfg, out_dir, pad_id,
        bf16=False, cache_frozen=False, progress=progress, run_key=run_key,
    )  # fmt: skip
    bf16, binfo = choose_bf16(cfg, lambda flag: time_step(fitter, flag))
    if bf16 and cfg.method == "lora":
        # Frozen base stored in bf16 (no per-step casts); full fine-tuning keeps fp32 masters,
        # and a 4-bit QLoRA base has nothing to cast.
        cast_frozen_bf16(model)
    fitter.bf16 = bf16
    fitter.cache_frozen = want_cache(cfg, train + dev, parts, bf16) and bool(fitter.lower)
    attention = fitter.choose_attention()
    info = {
        "bf16": bf16,
        **binfo,
        **(attention or {}),
        "cache_frozen": fitter.cache_frozen,
        "shared_prefix_tokens": fitter.prefix_len,
        **minfo,
    }
    return fitter, model, info


def time_step(fitter: Fitter, bf16: bool) -> float:
    """Seconds for one forward+backward on a typical batch (weights untouched)."""
    ex = fitter.train
    order = np.argsort([e.n_tokens for e in ex])
    mid = len(order) // 2
    idx = order[mid : mid + fitter.cfg.batch_size].tolist()
    fitter.bf16 = bf16
    fitter.choose_attention()  # each precision timed with its own fastest attention kernel
    t = time.perf_counter()
    loss, _ = fitter._loss("train", ex, idx)
    loss.backward()
    dt = time.perf_counter() - t
    fitter.model.zero_grad(set_to_none=True)
    fitter.bf16 = False
    return dt


def want_cache(cfg: TrainConfig, examples: list[Example], parts, bf16: bool) -> bool:
    """Cache frozen lower-layer outputs when rows are revisited (>1 epoch) and it fits memory."""
    if cfg.cache_frozen is not True and cfg.cache_frozen is not False:
        hidden = parts.body.config.hidden_size
        need = sum(e.n_tokens for e in examples) * hidden * (2 if bf16 else 4)
        return cfg.epochs > 1 and need <= CACHE_BUDGET
    return bool(cfg.cache_frozen)


def save_weights(fitter: Fitter, model, tok, cfg: TrainConfig, out_dir: Path) -> None:
    """Write ``adapter/`` (LoRA, QLoRA) or ``model/`` (full, safetensors) with the tokenizer,
    atomically. Call on every rank: under FSDP the full weights are gathered from the shards
    first; only rank 0 writes."""
    state = fitter.export_state_dict()
    if fitter.rank != 0:
        return
    extra = {} if state is None else {"state_dict": state}
    tmp, commit = atomic_dir(out_dir / ("adapter" if is_adapter(cfg) else "model"))
    if is_adapter(cfg):
        model.save_pretrained(str(tmp), **extra)
    else:
        # Restore fp32 weights' dtype for saving (frozen parts may have been cast to bf16).
        model.to(torch.float32).save_pretrained(str(tmp), safe_serialization=True, **extra)
    tok.save_pretrained(str(tmp))
    commit()
