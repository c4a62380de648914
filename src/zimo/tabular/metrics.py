"""Metrics with bootstrap confidence intervals for analytic (tabular / text) sub-models.

Regression, classification and prediction-interval numbers for the analytic report and the
build's ``metrics.json``. Every headline number carries a 95% percentile-bootstrap CI over test
rows, computed the way the rest of Zimo does it (:mod:`zimo.eval.bootstrap`): all metrics of
one system share the same seeded resamples, so a rerun gives the same intervals and two
systems scored with the same seed are resampled identically.

Regression metrics are all functions of per-row sums (absolute error, squared error, centred
target and its square, APE, within-tolerance), so the resamples are evaluated as row-count
weighted sums (:func:`zimo.eval.bootstrap.resampled_sums`) instead of gathering an
``(n_boot, n)`` float matrix per metric: the same resample indices as
:func:`zimo.eval.bootstrap.resample_indices` with the same seed, in bounded memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import log_loss

from zimo.eval.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    resampled_sums,
)
from zimo.eval.metrics import label_metrics_from_proba

REGRESSION_METHODS = {
    "mae": "mean absolute error over test rows; percentile bootstrap CI",
    "rmse": "root mean squared error over test rows; percentile bootstrap CI",
    "r2": "coefficient of determination 1 − SSE/SST (SST around the test mean); "
    "percentile bootstrap CI",
    "mape": "mean absolute percentage error |y − ŷ| / |y| as a fraction, over rows whose true "
    "value is not 0; percentile bootstrap CI",
    "within_tol": "share of test rows with |y − ŷ| ≤ tolerance; percentile bootstrap CI",
}


def _interval(samples: np.ndarray, confidence: float) -> list[float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return [float("nan"), float("nan")]
    alpha = 1.0 - confidence
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def _regression_from_sums(s: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Metrics from summed per-row statistics; ``s`` is ``(B, 7)`` (one row per resample)."""
    abs_err, sq_err, yc, yc2, ape, nonzero, within = (s[:, i] for i in range(7))
    sst = yc2 - yc**2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sq_err / np.where(sst > 0, sst, 1.0), np.nan)
        mape = np.where(nonzero > 0, ape / np.where(nonzero > 0, nonzero, 1.0), np.nan)
    return {
        "mae": abs_err / n,
        "rmse": np.sqrt(sq_err / n),
        "r2": r2,
        "mape": mape,
        "within_tol": within / n,
    }


def regression_metrics(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    *,
    tolerance: float = 5.0,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """MAE, RMSE, R², MAPE and the share within ``±tolerance``, each with a bootstrap CI.

    MAPE is a fraction (0.12 = 12%) and skips rows whose true value is 0, where it is
    undefined; ``mape_rows`` says how many rows it used. R² is NaN when the true values are
    constant. ``ci`` maps each metric to ``[low, high]``; ``methods`` says how each was computed.
    """
    yt = np.asarray(y_true, dtype=np.float64).ravel()
    yp = np.asarray(y_pred, dtype=np.float64).ravel()
    n = yt.size
    if n == 0:
        raise ValueError("no test rows to score")
    if yp.size != n:
        raise ValueError(f"{yp.size} predictions for {n} test rows")
    if not (np.isfinite(yt).all() and np.isfinite(yp).all()):
        raise ValueError("regression metrics need finite true values and predictions")
    err = yp - yt
    # Centring on the full-sample mean keeps Σy² − (Σy)²/n numerically stable for targets with
    # a large offset (timestamps, prices); SST is invariant to the shift.
    yc = yt - yt.mean()
    nonzero = yt != 0
    ape = np.zeros(n)
    ape[nonzero] = np.abs(err[nonzero]) / np.abs(yt[nonzero])
    stats = np.stack(
        [
            np.abs(err),
            err**2,
            yc,
            yc**2,
            ape,
            nonzero.astype(np.float64),
            (np.abs(err) <= tolerance).astype(np.float64),
        ],
        axis=1,
    )
    point = _regression_from_sums(stats.sum(axis=0)[None, :], n)
    boot = _regression_from_sums(resampled_sums(stats, n_boot, seed), n)
    out: dict[str, Any] = {"n": n}
    for k, v in point.items():
        out[k] = float(v[0])
    out["tolerance"] = float(tolerance)
    out["mape_rows"] = int(nonzero.sum())
    out["ci"] = {k: _interval(v, confidence) for k, v in boot.items()}
    out["n_boot"] = n_boot
    out["confidence"] = confidence
    out["methods"] = dict(REGRESSION_METHODS)
    out["methods"]["within_tol"] = (
        f"share of test rows with |y − ŷ| ≤ {tolerance:g}; percentile bootstrap CI"
    )
    return out


def classification_metrics(
    y_true_codes: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1, log loss and ECE from class probabilities.

    The prediction is the argmax of ``proba`` (shape ``(n, k)``, columns in ``classes``
    order). Accuracy, macro-F1 and ECE come with ``[low, high]`` CIs under ``ci`` (from
    :func:`zimo.eval.metrics.label_metrics_from_proba`, so they match the label reports);
    ``confusion`` has rows = true class, columns = predicted class.
    """
    y = np.asarray(y_true_codes, dtype=np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64)
    names = [str(c) for c in classes]
    k = len(names)
    if p.ndim != 2 or p.shape != (y.size, k):
        raise ValueError(f"proba must have shape ({y.size}, {k}), got {p.shape}")
    if y.size == 0:
        raise ValueError("no test rows to score")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"class codes must lie in 0..{k - 1}")
    r = label_metrics_from_proba(
        y.tolist(), p, names, n_boot=n_boot, seed=seed, confidence=confidence
    )
    ci = {
        key: [r["ci"][key]["low"], r["ci"][key]["high"]] for key in ("accuracy", "macro_f1", "ece")
    }
    return {
        "n": int(y.size),
        "accuracy": r["accuracy"],
        "macro_f1": r["macro_f1"],
        "per_class_f1": r["per_class_f1"],
        "log_loss": float(log_loss(y, p, labels=list(range(k)))),
        "ece": r["ece"],
        "ci": ci,
        "confusion": {"labels": names, "matrix": r["confusion"]},
        "n_boot": n_boot,
        "confidence": confidence,
        "methods": {
            "accuracy": r["ci"]["accuracy"]["method"],
            "macro_f1": r["ci"]["macro_f1"]["method"],
            "ece": r["ci"]["ece"]["method"],
        },
    }


def interval_coverage(
    y_true: Sequence[float] | np.ndarray,
    lo: Sequence[float] | np.ndarray,
    hi: Sequence[float] | np.ndarray,
) -> dict[str, Any]:
    """Share of true values inside ``[lo, hi]`` (bounds included) and the mean interval width."""
    yt = np.asarray(y_true, dtype=np.float64).ravel()
    a = np.asarray(lo, dtype=np.float64).ravel()
    b = np.asarray(hi, dtype=np.float64).ravel()
    if not (yt.size == a.size == b.size) or yt.size == 0:
        raise ValueError("interval coverage needs one non-empty [lo, hi] per true value")
    inside = (yt >= a) & (yt <= b)
    return {
        "n": int(yt.size),
        "coverage": float(inside.mean()),
        "below": float((yt < a).mean()),
        "above": float((yt > b).mean()),
        "mean_width": float((b - a).mean()),
    }
