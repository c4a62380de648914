"""Small, fast training setups shared by the train tests (tiny data, top layers only)."""

from __future__ import annotations

from models_fixtures import SMS

LABELS = ["ham", "spam"]


def records(n: int = 16) -> list[dict]:
    rows = [{"text": t, "label": lab} for lab, t in SMS]
    return [
        dict(rows[i % len(rows)], text=rows[i % len(rows)]["text"] + f" #{i}") for i in range(n)
    ]


def tiny_cfg(**over):
    from zimo.train import TrainConfig

    base = {
        "lora": {"layers": 2, "r": 4, "alpha": 8},
        "max_steps": 6,
        "batch_size": 4,
        "max_length": 96,
        "lr": 1e-3,
        "checkpoint_every": 2,
        "max_dev_rows": 4,
        "threads": 1,
        "bf16": False,
        "cache_frozen": True,  # exercise the frozen-layer cache path (auto needs epochs > 1)
        "seed": 0,
    }
    base.update(over)
    return TrainConfig(**base)
