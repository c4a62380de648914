"""Percentile bootstrap confidence intervals, seeded and vectorised with numpy.

Every headline number in a Zimo report carries a CI from here. The recipe is the plain
percentile bootstrap (Efron & Tibshirani 1993, ch. 13): draw ``n_boot`` resamples of the test
items with replacement, recompute the statistic on each, and take the ``alpha/2`` and
``1 - alpha/2`` quantiles. Resample indices come from one seeded generator, so a rerun gives
the same interval, and *paired* comparisons reuse the same indices for both systems (the
items are shared, so the difference's CI is much tighter than two independent CIs suggest).

Statistics are computed for all resamples at once: callers pass per-item sufficient
statistics (e.g. a correct/incorrect vector, chrF n-gram counts) and a function that turns
resampled sums into the statistic, so 1,000 resamples of 10,000 items take milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
# Resample in chunks so (n_boot × n_items) index matrices stay below ~64 MB of int64.
_MAX_CELLS = 8_000_000


@dataclass(frozen=True)
class CI:
    """A point estimate with a percentile-bootstrap interval.

    ``method`` is a short human sentence for the report's "how computed" footnotes.
    """

    value: float
    low: float
    high: float
    n: int
    n_boot: int
    confidence: float
    method: str = "percentile bootstrap over test items"

    def to_dict(self) -> dict:
        return asdict(self)

    def overlaps(self, other: CI) -> bool:
        """True when the two intervals share any point."""
        return not (self.low > other.high or other.low > self.high)

    def scaled(self, factor: float) -> CI:
        """The same interval with every number multiplied by ``factor`` (e.g. 100 for %)."""
        lo, hi = sorted((self.low * factor, self.high * factor))
        return CI(self.value * factor, lo, hi, self.n, self.n_boot, self.confidence, self.method)


def resample_indices(n: int, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``(n_boot, n)`` matrix of item indices drawn with replacement, reproducible by ``seed``."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int64)


def _chunks(n: int, n_boot: int, seed: int):
    """Yield index matrices covering ``n_boot`` resamples, chunked to bound memory.

    The whole matrix comes from one generator in order, so chunking does not change results.
    """
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_CELLS // max(1, n))
    done = 0
    while done < n_boot:
        k = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(k, n), dtype=np.int64)
        done += k


def resampled_sums(stats: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Sum per-item statistics over each resample.

    ``stats`` has shape ``(n,)`` or ``(n, k)``; the result has shape ``(n_boot,)`` or
    ``(n_boot, k)``. Summing (not averaging) lets ratio statistics such as corpus chrF or
    micro-F1 be computed from resampled totals exactly as from the full sample.
    """
    stats = np.asarray(stats, dtype=np.float64)
    squeeze = stats.ndim == 1
    if squeeze:
        stats = stats[:, None]
    n = stats.shape[0]
    out = []
    for idx in _chunks(n, n_boot, seed):
        # Counting how often each item is drawn turns the gather-and-sum into one matmul.
        k = idx.shape[0]
        flat = (np.arange(k)[:, None] * n + idx).ravel()
        counts = np.bincount(flat, minlength=k * n).reshape(k, n).astype(np.float64)
        out.append(counts @ stats)
    sums = np.concatenate(out, axis=0)
    return sums[:, 0] if squeeze else sums


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def ci_from_sums(
    stats: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    method: str = "percentile bootstrap over test items",
) -> CI:
    """CI of ``statistic(sums)`` where ``sums`` are column totals of per-item ``stats``.

    ``statistic`` must accept a ``(k,)`` vector (the full-sample totals) and a ``(B, k)``
    matrix (one row per resample) and return a scalar / ``(B,)`` vector.
    """
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    n = stats.shape[0]
    if n == 0:
        raise ValueError("cannot compute a confidence interval on zero items")
    value = float(np.asarray(statistic(stats.sum(axis=0)[None, :]))[0])
    boot = np.asarray(statistic(resampled_sums(stats, n_boot, seed)))
    lo, hi = _interval(boot, confidence)
    return CI(value, lo, hi, n, n_boot, confidence, method)


def bootstrap_mean(
    values,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    method: str = "mean over test items; percentile bootstrap CI",
) -> CI:
    """CI of the mean of per-item ``values`` (accuracy from 0/1, mean ROUGE-L, mean cost…)."""
    v = np.asarray(values, dtype=np.float64)
    return ci_from_sums(
        v,
        lambda s: s[:, 0] / len(v),
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
        method=method,
    )


def bootstrap_quantile(
    values,
    q: float,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    method: str | None = None,
) -> CI:
    """CI of the ``q``-quantile (e.g. 0.95 for p95 latency) of per-item ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("cannot compute a confidence interval on zero items")
    boots = []
    for idx in _chunks(v.size, n_boot, seed):
        boots.append(np.quantile(v[idx], q, axis=1))
    lo, hi = _interval(np.concatenate(boots), confidence)
    desc = method or f"p{round(q * 100)} over test items; percentile bootstrap CI"
    return CI(float(np.quantile(v, q)), lo, hi, int(v.size), n_boot, confidence, desc)


def paired_difference(
    a_stats: np.ndarray,
    b_stats: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict:
    """Paired bootstrap of ``stat(A) - stat(B)`` on the same test items.

    ``a_stats`` / ``b_stats`` are per-item statistics of two systems on the same items (same
    order). ``statistic`` maps resampled totals to the metric (default: the mean of a single
    column). Both systems are resampled with the *same* indices. Returns the difference's CI
    and ``p_not_better``: the share of resamples where A is not better than B (a one-sided
    bootstrap p-value; small means A reliably beats B).
    """
    a = np.asarray(a_stats, dtype=np.float64)
    b = np.asarray(b_stats, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired systems need the same items: {a.shape} vs {b.shape}")
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    n, k = a.shape
    if statistic is None:

        def statistic(s: np.ndarray) -> np.ndarray:
            return s[:, 0] / n

    both = np.concatenate([a, b], axis=1)
    full = both.sum(axis=0)[None, :]
    value = float(np.asarray(statistic(full[:, :k]))[0] - np.asarray(statistic(full[:, k:]))[0])
    sums = resampled_sums(both, n_boot, seed)
    diffs = np.asarray(statistic(sums[:, :k])) - np.asarray(statistic(sums[:, k:]))
    lo, hi = _interval(diffs, confidence)
    finite = diffs[np.isfinite(diffs)]
    p = float(np.mean(finite <= 0)) if finite.size else float("nan")
    ci = CI(value, lo, hi, n, n_boot, confidence, "paired percentile bootstrap (same resamples)")
    return {"diff": ci.to_dict(), "p_not_better": p}
