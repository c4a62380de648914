"""Thresholds that meet a target (quality share or budget), chosen on held-out scores.

A router sends a prompt to the cheapest tier ``i`` whose score (P(tier i is good enough)) is
at least the threshold ``t``, else to the strongest tier. Sweeping ``t`` gives the router's
cost–quality curve on held-out (cross-fitted) scores; the target picks a point on it:

- ``quality: q``: the cheapest point whose quality is ≥ q × the strongest tier's quality;
- ``max_cost: c``: the best-quality point whose cost per 1000 requests is ≤ c.

When no point qualifies, :class:`TargetUnreachable` says so and names the best reachable
point, instead of silently sending everything to the most expensive tier.
"""

from __future__ import annotations

import numpy as np

from zimo.errors import ZimoError


class TargetUnreachable(ZimoError):
    """The target cannot be met on the calibration data; ``best`` is the nearest point."""

    def __init__(self, message: str, hint: str, best: dict):
        super().__init__(message, hint)
        self.best = best


def assign_tiers(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Tier index per prompt: the first cheap tier with score ≥ threshold, else the last.

    ``scores`` is ``(n, tiers - 1)``: one column per non-strongest tier, cheapest first.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    ok = scores >= threshold
    first = np.where(ok.any(1), ok.argmax(1), scores.shape[1])
    return first.astype(np.int64)


def sweep(
    scores: np.ndarray, quality: np.ndarray, costs: np.ndarray, max_points: int = 400
) -> list[dict]:
    """The cost–quality points of every threshold (at most ``max_points``, from quantiles)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    flat = np.unique(scores)
    if len(flat) > max_points:
        flat = np.unique(np.quantile(flat, np.linspace(0, 1, max_points)))
    # Above every score: all prompts go to the strongest tier.
    candidates = np.concatenate([flat, [np.inf]])
    rows = np.arange(len(quality))
    q_strong = quality[:, -1].mean()
    points = []
    for t in candidates:
        a = assign_tiers(scores, t)
        chosen = quality[rows, a]
        q = chosen.mean()
        # Standard error of the paired difference to the strongest tier: zero when everything
        # goes to the strongest tier, growing with the share routed elsewhere.
        se = float(np.std(chosen - quality[:, -1]) / np.sqrt(len(chosen)))
        points.append(
            {
                "threshold": float(t),
                "quality": float(q),
                "quality_se": se,
                "quality_ratio": float(q / q_strong) if q_strong > 0 else float("nan"),
                "cost_per_1k": float(costs[rows, a].mean() * 1000),
                "share": [float(np.mean(a == j)) for j in range(quality.shape[1])],
            }
        )
    return points


def choose_threshold(
    scores: np.ndarray,
    quality: np.ndarray,
    costs: np.ndarray,
    *,
    quality_target: float | None = None,
    max_cost: float | None = None,
    slack_z: float = 1.0,
) -> dict:
    """The sweep point that meets the target most cheaply (quality) or best (budget).

    With a quality target, the held-out quality ratio must clear it by ``slack_z`` standard
    errors of its paired difference to the strongest tier, so a threshold tuned on a few
    hundred prompts does not fall short on the next few hundred (sending everything to the
    strongest tier has no such error, so a target ≤ 1 is always reachable).
    """
    points = sweep(scores, quality, costs)
    if quality_target is not None:
        q_s = max(float(quality[:, -1].mean()), 1e-12)

        def slack(p: dict) -> float:
            return slack_z * p["quality_se"] / q_s

        ok = [p for p in points if p["quality_ratio"] - slack(p) >= quality_target - 1e-12]
        if not ok:
            best = max(points, key=lambda p: (p["quality_ratio"], -p["cost_per_1k"]))
            raise TargetUnreachable(
                f"route target quality {quality_target:g} of the strongest tier cannot be met: "
                f"the best reachable is {best['quality_ratio']:.4f} at "
                f"{best['cost_per_1k']:.4g} per 1k requests",
                f"lower route.target.quality to at most {best['quality_ratio'] - slack(best):.3f}",
                best,
            )
        return min(ok, key=lambda p: (p["cost_per_1k"], -p["quality"]))
    if max_cost is not None:
        ok = [p for p in points if p["cost_per_1k"] <= max_cost + 1e-12]
        if not ok:
            best = min(points, key=lambda p: (p["cost_per_1k"], -p["quality"]))
            raise TargetUnreachable(
                f"route target max_cost {max_cost:g} per 1k requests cannot be met: the cheapest "
                f"reachable is {best['cost_per_1k']:.4g} (quality ratio "
                f"{best['quality_ratio']:.4f})",
                f"raise route.target.max_cost to at least {best['cost_per_1k']:.4g}",
                best,
            )
        return max(ok, key=lambda p: (p["quality"], -p["cost_per_1k"]))
    raise ZimoError("choose_threshold needs quality_target or max_cost")
