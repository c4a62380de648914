"""Fit a detector calibration on a labelled dev split (label 1 = machine-written, 0 = human)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zimo.errors import DataError
from zimo.guard.calibration import build_calibration, save_calibration
from zimo.guard.lm_stats import TokenStats
from zimo.guard.scores import (
    FEATURES,
    SIMPLE_SCORES,
    feature_matrix,
    fit_combined,
    out_of_fold_combined,
    simple_score,
)


def calibrate_from_stats(
    stats: Sequence[TokenStats],
    labels: Sequence[int],
    *,
    model: str,
    token_budget: int,
    min_tokens: int,
    target_fpr: float,
    source: dict | None = None,
    style_adapter: str | None = None,
    hidden_head: bool = False,
) -> dict:
    """Calibration of every simple score plus the combined score from per-token stats.

    The combined model is fitted on the documents with at least ``min_tokens`` tokens (the only
    ones the detector flags). Its threshold is set on the same documents' out-of-fold scores
    (5 folds), not on the scores of the model fitted on them: in-sample, human documents score
    lower than new human text will, so the false-positive rate would be above the target.

    ``hidden_head``: the combined score adds a second model on the scorer's pooled hidden state
    (the stats must come from ``pool_hidden=True``; see :func:`zimo.guard.scores.fit_combined`).
    """
    y = np.asarray(labels, dtype=int)
    n_tok = np.array([s.n_tokens for s in stats])
    scores = {name: np.array([simple_score(name, s) for s in stats]) for name in SIMPLE_SCORES}
    X = feature_matrix(stats, FEATURES, hidden_head)
    keep = n_tok >= min_tokens
    if len(set(y[keep])) < 2:
        raise DataError(
            f"the dev split needs human (0) and machine (1) texts of >= {min_tokens} tokens",
            "add labelled examples of both kinds",
        )
    comb_model = fit_combined(X[keep], y[keep], head=hidden_head)
    scores["combined"] = np.full(len(y), np.nan)
    scores["combined"][keep] = out_of_fold_combined(X[keep], y[keep], head=hidden_head)
    return build_calibration(
        scores,
        y,
        n_tok,
        model=model,
        token_budget=token_budget,
        min_tokens=min_tokens,
        target_fpr=target_fpr,
        combined_model=comb_model,
        source=source,
        style_adapter=style_adapter,
    )


def read_labelled(path: Path) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels from a JSONL or Parquet file with ``text`` and ``label``."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        from zimo.guard.score_file import read_jsonl

        rows, _ = read_jsonl(path)
    texts, labels = [], []
    for r in rows:
        if isinstance(r.get("text"), str) and str(r.get("label")) in ("0", "1"):
            texts.append(r["text"])
            labels.append(int(r["label"]))
    if not texts:
        raise DataError(f"{path} has no rows with `text` and `label` 0/1", "label 1 = machine")
    return texts, labels


def calibrate_file(
    dev: Path,
    output: Path,
    model: str = "gecko-zh",
    target_fpr: float = 0.01,
    token_budget: int = 256,
    min_tokens: int = 48,
    style_adapter: str = "auto",
    hidden_head: bool = False,
) -> dict:
    """Score a labelled dev file and write its calibration JSON to ``output`` (the scorer with
    ``style_adapter`` merged in, recorded in the calibration; ``hidden_head``: see
    :func:`calibrate_from_stats`)."""
    from zimo.guard.config import GuardConfig
    from zimo.guard.detect import Detector
    from zimo.guard.scores import FEATURE_NEEDS

    texts, labels = read_labelled(dev)
    det = Detector(
        GuardConfig(
            model=model,
            token_budget=token_budget,
            min_tokens=min_tokens,
            style_adapter=style_adapter,
        )
    )
    stats = det.token_stats(texts, model, need=FEATURE_NEEDS, pool_hidden=hidden_head)
    digest = hashlib.sha1(Path(dev).read_bytes()).hexdigest()[:12]
    cal = calibrate_from_stats(
        stats,
        labels,
        model=model,
        token_budget=token_budget,
        min_tokens=min_tokens,
        target_fpr=target_fpr,
        source={
            "dev": Path(dev).name,
            "sha1": digest,
            "n": len(texts),
            "bf16": det.uses_bf16(model),
        },
        style_adapter=det.style_id(model),
        hidden_head=hidden_head,
    )
    save_calibration(cal, output)
    return cal
