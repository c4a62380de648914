"""Atomic training checkpoints: write to a temp file, fsync, rename; keep the last two.

A checkpoint holds everything needed to continue bit-for-bit: trainable weights, optimizer and
scheduler state, the step (which fixes the data order, a pure function of seed and epoch), RNG
states, early-stopping state and counters. A run killed with ``kill -9`` mid-write leaves only
a ``.tmp`` file, which is ignored and removed.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as ``ckpt_dir/step-XXXXXXXX.pt`` atomically; prune older ones."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:08d}.pt"
    tmp = ckpt_dir / f".{final.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def load_latest(ckpt_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint (a corrupt newest one falls back to the previous)."""
    for stale in ckpt_dir.glob(".step-*.tmp") if ckpt_dir.is_dir() else []:
        stale.unlink(missing_ok=True)
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # torn or foreign file: try the one before
            continue
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
