"""Router evaluation in the terms of the RouteLLM paper (Ong et al. 2024).

A router gives each prompt a score (here: the probability that the cheap tier is good enough);
sending the k lowest-scored prompts to the strong tier, for k = 0..n, traces the
**cost–quality curve**. With ``q_w``/``q_s`` the quality of always-cheap/always-strong:

- PGR(k) = (quality(k) − q_w) / (q_s − q_w): the share of the performance gap recovered.
- **APGR**: the area under PGR over the share of strong calls (0..1). A random router scores
  0.5 in expectation; the per-question oracle scores more than 1 when the cheap tier is
  sometimes right where the strong one is wrong.
- **CPT(x%)**: the smallest share of strong calls whose PGR reaches x%.

Tied scores are treated as a random order within the tie (the curve is interpolated linearly
across a tied block), so a router that scores many prompts the same (e.g. prompt length) is
not credited with a lucky tie order.
"""

from __future__ import annotations

import numpy as np

from zimo.errors import DataError


def routing_curve(scores: np.ndarray, q_cheap: np.ndarray, q_strong: np.ndarray) -> dict:
    """Curve of (share of strong calls, quality, PGR) when escalating the lowest scores first.

    Returns arrays of length n+1: ``calls`` (k/n), ``quality`` and ``pgr``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    q_cheap = np.asarray(q_cheap, dtype=np.float64)
    q_strong = np.asarray(q_strong, dtype=np.float64)
    n = len(scores)
    if n == 0 or q_cheap.shape != (n,) or q_strong.shape != (n,):
        raise DataError("routing_curve needs scores and per-tier quality of the same length > 0")
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    gain = (q_strong - q_cheap)[order]
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    # Replace the within-tie cumulative gains by a straight line between block ends.
    bounds = np.flatnonzero(np.diff(s) != 0) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n]])
    for a, b in zip(starts, ends, strict=True):
        if b - a > 1:
            cum[a : b + 1] = np.linspace(cum[a], cum[b], b - a + 1)
    base = q_cheap.mean()
    quality = base + cum / n
    qs = q_strong.mean()
    gap = qs - base
    pgr = (quality - base) / gap if abs(gap) > 1e-12 else np.full(n + 1, np.nan)
    return {"calls": np.arange(n + 1) / n, "quality": quality, "pgr": pgr, "gap": float(gap)}


def apgr(curve: dict) -> float:
    """Area under PGR over the share of strong calls."""
    y, x = curve["pgr"], curve["calls"]
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def cpt(curve: dict, target: float) -> float:
    """Smallest share of strong calls with PGR ≥ ``target`` (1.0 if never reached)."""
    hit = np.flatnonzero(curve["pgr"] >= target - 1e-12)
    return float(curve["calls"][hit[0]]) if len(hit) else 1.0


def evaluate_scores(scores: np.ndarray, q_cheap: np.ndarray, q_strong: np.ndarray) -> dict:
    """APGR, CPT(50%), CPT(80%) and the end points for one router's scores."""
    c = routing_curve(scores, q_cheap, q_strong)
    return {
        "apgr": apgr(c),
        "cpt50": cpt(c, 0.5),
        "cpt80": cpt(c, 0.8),
        "quality_cheap": float(np.mean(q_cheap)),
        "quality_strong": float(np.mean(q_strong)),
        "gap": c["gap"],
    }


def oracle_scores(q_cheap: np.ndarray, q_strong: np.ndarray) -> np.ndarray:
    """Scores of the per-question oracle: escalate exactly where the strong tier is better."""
    return np.asarray(q_cheap, dtype=np.float64) - np.asarray(q_strong, dtype=np.float64)


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """A random router (one draw; its expected APGR is 0.5)."""
    return np.random.default_rng(seed).random(n)


def random_expected(q_cheap: np.ndarray, q_strong: np.ndarray) -> dict:
    """The random router's expected metrics: one tie over all prompts gives the mean curve."""
    return evaluate_scores(np.zeros(len(q_cheap)), q_cheap, q_strong)


def assignment_metrics(
    assign: np.ndarray, quality: np.ndarray, costs: np.ndarray | None = None
) -> dict:
    """Quality, cost and per-tier shares of one concrete assignment of prompts to tiers.

    ``quality`` and ``costs`` are ``(n, tiers)``; ``assign`` holds tier indices.
    """
    assign = np.asarray(assign, dtype=np.int64)
    n, t = quality.shape
    rows = np.arange(n)
    q = quality[rows, assign]
    out = {
        "quality": float(q.mean()),
        "quality_ratio": float(q.mean() / max(quality[:, -1].mean(), 1e-12)),
        "share": [float(np.mean(assign == j)) for j in range(t)],
        "beyond_cheapest": float(np.mean(assign > 0)),
    }
    if costs is not None:
        out["cost_per_1k"] = float(costs[rows, assign].mean() * 1000)
    return out
