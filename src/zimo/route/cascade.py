"""Post-call cascades: answer with the cheapest tier, escalate while it is unsure.

Each tier but the last has a confidence threshold; a request goes to tier 0, and moves on to
the next tier whenever the answer's confidence is below that tier's threshold. Confidence is
computed from what the tier returned:

- label tasks: the label-probability ``margin`` (top-1 minus top-2) or ``max_prob``;
- generation: ``mean_logprob`` of the answer tokens, or ``neg_entropy`` over the top-k
  alternatives per token;
- ``agreement`` of two samples (1 when they agree, 0 otherwise), as an option.

Thresholds are calibrated on a dev split to reach a quality target (a share of the best single
tier's quality) at the lowest expected cost; a cascade pays for every tier it tried.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

from zimo.errors import ZimoError
from zimo.fileio import write_text_atomic
from zimo.route.calibrate import TargetUnreachable

# -- confidence measures ---------------------------------------------------------------------


def label_margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 label probability per row of ``(n, labels)``."""
    p = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    return p[:, -1] - p[:, -2]


def max_prob(probs: np.ndarray) -> np.ndarray:
    """Top label probability per row."""
    return np.asarray(probs, dtype=np.float64).max(axis=1)


def mean_logprob(token_logprobs: Sequence[Sequence[float]]) -> np.ndarray:
    """Mean log-probability of the generated tokens of each answer (−inf for empty answers)."""
    return np.array([np.mean(lp) if len(lp) else -np.inf for lp in token_logprobs], dtype=float)


def neg_entropy(top_logprobs: Sequence[np.ndarray]) -> np.ndarray:
    """Minus the mean per-token entropy, from each token's top-k log-probs (renormalised)."""
    out = []
    for lp in top_logprobs:
        lp = np.atleast_2d(np.asarray(lp, dtype=np.float64))
        if lp.size == 0:
            out.append(-np.inf)
            continue
        p = np.exp(lp - lp.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        out.append(float(np.mean(np.sum(p * np.log(np.clip(p, 1e-12, 1)), axis=1))))
    return np.array(out)


def agreement(first: Sequence[str], second: Sequence[str]) -> np.ndarray:
    """1.0 where two samples give the same answer (case and spacing ignored), else 0.0."""

    def norm(s: str) -> str:
        return " ".join(str(s).lower().split())

    return np.array([float(norm(a) == norm(b)) for a, b in zip(first, second, strict=True)])


CONFIDENCE = {"margin": label_margin, "max_prob": max_prob}


# -- the cascade ------------------------------------------------------------------------------


@dataclass
class Cascade:
    """Tiers cheapest first; ``thresholds[i]`` is tier i's minimum confidence to answer."""

    tiers: list[str]
    thresholds: list[float]
    confidence: str = "margin"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.tiers) - 1:
            raise ZimoError(
                f"a cascade of {len(self.tiers)} tiers needs {len(self.tiers) - 1} thresholds, "
                f"got {len(self.thresholds)}"
            )

    def accept(self, tier: int | str, confidence: float) -> bool:
        """Whether tier ``tier``'s answer with ``confidence`` is final (the last tier always is)."""
        i = self._index(tier)
        return i == len(self.tiers) - 1 or confidence >= self.thresholds[i]

    def _index(self, tier: int | str) -> int:
        if isinstance(tier, str):
            if tier not in self.tiers:
                raise ZimoError(f"unknown tier {tier!r}", f"the cascade has {self.tiers}")
            return self.tiers.index(tier)
        if not 0 <= tier < len(self.tiers):
            raise ZimoError(f"tier index {tier} out of range for {self.tiers}")
        return int(tier)

    def answered_by(self, conf: np.ndarray) -> np.ndarray:
        """Tier index that gives the final answer, from ``(n, tiers - 1)`` confidences."""
        return _answered_by(np.atleast_2d(conf), np.asarray(self.thresholds, dtype=float))

    def save(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        write_text_atomic(p, json.dumps(asdict(self), indent=2, default=float))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cascade:
        p = Path(path)
        if not p.exists():
            raise ZimoError(f"no cascade at {p}", "calibrate one with calibrate_cascade()")
        return cls(**json.loads(p.read_text(encoding="utf-8")))


def _answered_by(conf: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ok = conf >= thresholds[None, :]
    return np.where(ok.any(1), ok.argmax(1), conf.shape[1]).astype(np.int64)


def cascade_metrics(answered: np.ndarray, quality: np.ndarray, costs: np.ndarray) -> dict:
    """Quality, expected cost (every tier tried is paid) and shares of a cascade's run."""
    n, t = quality.shape
    rows = np.arange(n)
    paid = np.cumsum(costs, axis=1)[rows, answered]
    best = np.nanmax(np.nanmean(quality, axis=0))
    q = quality[rows, answered].mean()
    return {
        "quality": float(q),
        "quality_vs_best_tier": float(q / best) if best > 0 else float("nan"),
        "cost_per_1k": float(paid.mean() * 1000),
        "share": [float(np.mean(answered == j)) for j in range(t)],
        "beyond_cheapest": float(np.mean(answered > 0)),
    }


def _candidates(conf: np.ndarray, missing: np.ndarray, grid: int) -> list[np.ndarray]:
    """Each non-final tier's threshold candidates: quantiles of its confidence where it ran,
    and ±inf (answer everything / nothing)."""
    return [
        np.unique(
            np.concatenate(
                [[-np.inf, np.inf], np.quantile(conf[~missing[:, i], i], np.linspace(0, 1, grid))]
            )
        )
        for i in range(conf.shape[1])
    ]


def _wilson_lower(k: np.ndarray, m: np.ndarray, z: float) -> np.ndarray:
    """One-sided Wilson lower bound of a success rate from ``k`` successes in ``m`` rows (0 where
    ``m`` is 0; such a tier answers nothing, so its bound is weighted by 0)."""
    m1 = np.maximum(m, 1.0)
    p = np.clip(k / m1, 0.0, 1.0)
    z2 = z * z
    centre = p + z2 / (2 * m1)
    spread = z * np.sqrt(p * (1 - p) / m1 + z2 / (4 * m1 * m1))
    return np.where(m > 0, (centre - spread) / (1 + z2 / m1), 0.0)


def _bounded_quality(conf: np.ndarray, quality: np.ndarray, cum: np.ndarray, best_tier: int,
                     subsets: list[np.ndarray], confidence_level: float):  # fmt: skip
    """``evaluate(thresholds) -> (quality ratio, cost)``: the sum over tiers of the share each
    answers times a lower bound of its quality there, as a share of the best tier's, on the
    worse of the row subsets; and the mean cost paid."""
    n, t = quality.shape
    rows = np.arange(n)
    z = NormalDist().inv_cdf(confidence_level)
    exact = np.arange(t) == best_tier  # the reference's rows: compared with itself, no bound

    def evaluate(th: np.ndarray) -> tuple[float, float]:
        a = _answered_by(conf, th)
        # Each tier's bound rests on all the rows it answers (a tier not run on a row never
        # answers it); the subsets differ in how many rows reach each tier, not in what a tier
        # is known to be worth, so the bound of a tier measured on many rows is not widened
        # to the few complete ones.
        k = np.bincount(a, weights=quality[rows, a], minlength=t)
        lower = _wilson_lower(k, np.bincount(a, minlength=t).astype(np.float64), z)
        ratios = []
        for sub in subsets:
            best = quality[sub, best_tier].mean()
            m = np.bincount(a[sub], minlength=t).astype(np.float64)
            own = quality[sub, best_tier][a[sub] == best_tier].sum()
            q = (np.where(exact, 0.0, m * lower).sum() + own) / len(sub)
            ratios.append(q / best if best > 0 else 0.0)
        return min(ratios), cum[rows, a].mean()

    return evaluate


def calibrate_cascade(
    conf: np.ndarray,
    quality: np.ndarray,
    costs: np.ndarray | Sequence[float],
    tiers: Sequence[str],
    *,
    quality_target: float = 0.995,
    confidence: str = "margin",
    grid: int = 101,
    confidence_level: float = 0.90,
) -> Cascade:
    """Thresholds reaching ``quality_target`` × the best single tier's quality most cheaply.

    ``conf`` is ``(n, tiers - 1)`` (confidence of each non-final tier's answer), ``quality``
    ``(n, tiers)`` (1/0 correctness or a score), ``costs`` per tier (a vector) or per prompt and
    tier. Exhaustive over a quantile grid for up to three tiers; coordinate descent beyond.

    ``quality`` may be NaN where a non-final tier was not run on a calibration row (e.g. rows
    added only to calibrate the cheapest tier's threshold on more data): that tier then never
    answers such a row (its confidence counts as −inf). The final tier must be measured on
    every row; the target is a share of the best tier among those measured on every row. Rows
    a tier did not run on escalate past it and tell nothing about its threshold, so the target
    must also hold on the rows where every tier ran.

    ``confidence_level``: each tier is credited, on the rows it answers, with a one-sided
    Wilson lower confidence bound (90% by default) of its quality there, not with the mean
    it was seen to reach; the reference tier's own rows count as measured. A threshold is
    accepted only if the target holds on these bounds. The bound widens as a tier answers
    fewer rows, so a tier seen on a handful of rows must escalate more, not less: the mean
    over a few rows says little (a LoRA tier judged on the few dev rows past the classical
    tier had its threshold lowered round after round and then answered a live stream 92%
    right). With many rows per tier the bound sits close to the mean, and the cascade changes
    little. The level is per tier, not a joint guarantee over tiers; it was fixed before the
    stream results it is checked on. For scores rather than 0/1 correctness the Wilson bound
    of their mean is an approximation.
    """
    conf = np.array(np.atleast_2d(conf), dtype=np.float64)  # a copy: NaN rows are masked below
    quality = np.asarray(quality, dtype=np.float64)
    n, t = quality.shape
    if conf.shape != (n, t - 1):
        raise ZimoError(f"confidences {conf.shape} do not match {n} prompts x {t - 1} tiers")
    missing = np.isnan(quality)
    if missing[:, -1].any():
        raise ZimoError("the final tier's quality must be known on every calibration row")
    if missing[:, :-1].all(0).any():
        raise ZimoError("a tier's quality is unknown on every calibration row")
    conf[missing[:, :-1]] = -np.inf  # a tier not run on a row never answers it
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim == 1:
        costs = np.broadcast_to(costs, (n, t))
    cands = _candidates(conf, missing, grid)
    # The target is a share of the best tier's quality, so that quality must be known on every
    # row: the reference is the best of the tiers that ran on all rows (the final tier always
    # did). A tier run on a few rows only (a language-model tier answers the dev rows alone) can
    # beat the final tier there by chance; it was taken as the reference and the calibration
    # stopped with an error, which broke a flywheel round.
    measured = np.nanmean(quality, axis=0)
    best_tier = int(np.argmax(np.where(missing.any(0), -np.inf, measured)))
    rows = np.arange(n)
    cum = np.cumsum(costs, axis=1)
    quality = np.where(missing, 0.0, quality)  # never chosen: those rows' confidence is −inf
    # Rows where every tier ran: on the others a tier that was not run escalates to the next,
    # which is usually better, so the quality measured over all rows flatters that tier (a
    # LoRA tier measured on the dev rows alone answered 5% of live traffic at 75% accuracy
    # while the all-rows estimate saw 99%). Its thresholds must hold on the complete rows too.
    complete = ~missing.any(1)
    subsets = [rows] if complete.all() else [rows, rows[complete]]

    if not 0.5 <= confidence_level < 1:
        raise ZimoError(f"confidence_level {confidence_level} must be in [0.5, 1)")
    evaluate = _bounded_quality(conf, quality, cum, best_tier, subsets, confidence_level)

    feasible: list[tuple[float, float, tuple]] = []
    best_seen = (-1.0, np.inf, None)
    if t - 1 <= 2:
        for th in itertools.product(*cands):
            q, c = evaluate(np.array(th))
            if q >= quality_target - 1e-12:
                feasible.append((c, -q, th))
            if (q, -c) > (best_seen[0], -best_seen[1]):
                best_seen = (q, c, th)
    else:  # coordinate descent: tune one threshold at a time, a few sweeps
        th = np.array([np.inf] * (t - 1))
        for _ in range(4):
            for i in range(t - 1):
                for v in cands[i]:
                    trial = th.copy()
                    trial[i] = v
                    q, c = evaluate(trial)
                    if q >= quality_target - 1e-12:
                        feasible.append((c, -q, tuple(trial)))
                    if (q, -c) > (best_seen[0], -best_seen[1]):
                        best_seen = (q, c, tuple(trial))
                if feasible:
                    th = np.array(min(feasible)[2])
    if not feasible:
        raise TargetUnreachable(
            f"cascade target {quality_target:g} of the best tier's quality cannot be met: the "
            f"best reachable is {best_seen[0]:.4f} at cost {best_seen[1] * 1000:.4g} "
            "per 1k requests",
            f"lower the target to at most {best_seen[0]:.4f}",
            {"quality_ratio": best_seen[0], "cost_per_1k": best_seen[1] * 1000},
        )
    c, negq, th = min(feasible)
    a = _answered_by(conf, np.array(th))
    meta = {
        "dev": cascade_metrics(a, quality, costs),
        "quality_target": quality_target,
        "confidence_level": confidence_level,
    }
    return Cascade(list(tiers), [float(x) for x in th], confidence, meta)
