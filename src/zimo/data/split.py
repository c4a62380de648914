"""Seeded, stratified train/dev/test split."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sklearn.model_selection import train_test_split


def split_records(
    records: list[dict[str, Any]],
    *,
    dev: float,
    test: float,
    seed: int,
    stratify: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Split into train/dev/test. Stratifies on ``label`` when every label has enough rows,
    so the class mix of each split matches the whole (falls back to a plain shuffle)."""
    n = len(records)
    labels = [r.get("label") for r in records]
    counts = Counter(labels)
    can_stratify = stratify and None not in counts and min(counts.values()) >= 3 and n >= 10
    idx = list(range(n))
    strat = labels if can_stratify else None
    n_test = max(1, round(n * test))
    rest, test_idx = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
    dev_idx: list[int] = []
    if dev > 0:
        n_dev = max(1, round(n * dev))
        strat_rest = [labels[i] for i in rest] if can_stratify else None
        rest, dev_idx = train_test_split(
            rest, test_size=n_dev, random_state=seed + 1, stratify=strat_rest
        )
    return {
        "train": [records[i] for i in sorted(rest)],
        "dev": [records[i] for i in sorted(dev_idx)],
        "test": [records[i] for i in sorted(test_idx)],
    }
