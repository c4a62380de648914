"""Calibrate a zero-shot score on human text alone: a threshold and a minimum trusted length.

Why human text only: a threshold for a false-positive rate needs only the human side, and a
fitted combination needs machine text of the kind the guard will meet. Where no such text may
be fitted on (English: no chat-model text under a licence that allows it), a fitted model
learns the generators it was fitted on, not the ones it meets; a zero-shot score
(:mod:`zimo.guard.scores`) has nothing to learn, so only where its threshold sits is fitted.

The threshold holds per source of human text, not just pooled: the guard meets text of
unknown genre, and formulaic genres (instructions' answers, definitions) are far more
predictable to a small LM than news or chat. A threshold at or below the target rate in every
source holds for any mix of them; a pooled one can be carried by the easy sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zimo.guard.calibration import _QUANTILES, threshold_for_fpr
from zimo.guard.lm_stats import TokenStats
from zimo.guard.scores import SIMPLE_SCORES, simple_score

# Candidate minimum lengths in scored tokens; 48 is also the guard's default floor.
MIN_TOKEN_CANDIDATES = (48, 64, 96, 128)
# Length bands (scored tokens) in which a minimum length is checked: a mean over fewer tokens
# spreads wider, so the shortest trusted texts are where false positives gather.
LENGTH_BANDS = (48, 64, 96, 128, 192)


def per_source_threshold(
    scores: np.ndarray, groups: Sequence[str], fpr: float
) -> tuple[float, dict[str, float]]:
    """The highest of each source's own threshold for ``fpr`` (and each source's). A source
    with fewer than 1/``fpr`` texts contributes its maximum: the most cautious reading."""
    s, g = np.asarray(scores, float), np.asarray(groups)
    per = {}
    for name in sorted(set(g.tolist())):
        h = s[(g == name) & ~np.isnan(s)]
        if h.size:
            per[name] = threshold_for_fpr(h, fpr)
    if not per:
        raise ValueError("no human scores to calibrate on")
    return max(per.values()), per


def _band_fpr_too_high(flagged: int, n: int, fpr: float, confidence: float = 0.95) -> bool:
    """More false positives than a true rate of ``fpr`` yields in ``confidence`` of samples of
    ``n`` texts (a band of 100 texts may show 2 at a true 1% by chance; 6 it would not)."""
    from scipy.stats import binom

    return bool(n > 0 and flagged > binom.ppf(confidence, n, fpr))


def choose_min_tokens(
    scores: np.ndarray,
    n_tokens: np.ndarray,
    groups: Sequence[str],
    fpr: float,
    candidates: Sequence[int] = MIN_TOKEN_CANDIDATES,
    bands: Sequence[int] = LENGTH_BANDS,
) -> tuple[int, list[dict]]:
    """The shortest candidate length whose threshold (set on human texts at least that long)
    shows no length band at or above it with an FPR beyond the binomial noise of ``fpr``; the
    longest candidate if none does. Returns it and the per-candidate check."""
    s, n, g = np.asarray(scores, float), np.asarray(n_tokens), np.asarray(groups)
    edges = [*bands, 10**9]
    checks = []
    for L in candidates:
        keep = n >= L
        if not keep.any():
            continue
        thr, _ = per_source_threshold(s[keep], g[keep], fpr)
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            if hi <= L:
                continue
            m = keep & (n >= max(lo, L)) & (n < hi)
            k = int((s[m] > thr).sum())
            rows.append(
                {
                    "tokens": f"{max(lo, L)}-{hi - 1}" if hi < 10**9 else f">={lo}",
                    "n": int(m.sum()),
                    "flagged": k,
                    "too_high": _band_fpr_too_high(k, int(m.sum()), fpr),
                }
            )
        checks.append({"min_tokens": L, "threshold": thr, "bands": rows})
        if not any(r["too_high"] for r in rows):
            return L, checks
    return int(candidates[-1]), checks


def calibrate_human_only(
    stats: Sequence[TokenStats],
    groups: Sequence[str],
    *,
    model: str,
    default_score: str,
    token_budget: int,
    target_fpr: float,
    min_tokens: int | None = None,
    source: dict | None = None,
    style_adapter: str | None = None,
) -> dict[str, Any]:
    """A calibration of every zero-shot score from human texts (``groups``: each text's source).

    ``default_score`` is what the guard flags with under ``score: auto``; its scores also
    choose the minimum trusted length (:func:`choose_min_tokens`) unless ``min_tokens`` is
    given. Thresholds: :func:`per_source_threshold` over the texts of at least that length."""
    g = np.asarray(groups)
    n_tok = np.array([s.n_tokens for s in stats])
    scores = {name: np.array([simple_score(name, s) for s in stats]) for name in SIMPLE_SCORES}
    if default_score not in scores:
        raise ValueError(f"{default_score!r} is not a zero-shot score ({list(scores)})")
    checks = None
    if min_tokens is None:
        min_tokens, checks = choose_min_tokens(scores[default_score], n_tok, g, target_fpr)
    keep = n_tok >= min_tokens
    out: dict[str, Any] = {
        "version": 1,
        "model": model,
        "style_adapter": style_adapter,
        "token_budget": token_budget,
        "min_tokens": int(min_tokens),
        "target_fpr": target_fpr,
        # What `score: auto` flags with for this model (calibrations without it: combined).
        "default_score": default_score,
        "fitted_on": "human text only",
        "threshold_rule": "the highest of each human source's own threshold for target_fpr",
        "source": source or {},
        "n_human": int(keep.sum()),
        "n_machine": 0,
        "human_by_source": {k: int((keep & (g == k)).sum()) for k in sorted(set(g.tolist()))},
        "min_tokens_check": checks,
        "scores": {},
    }
    for name, s in scores.items():
        m = keep & ~np.isnan(s)
        thr, per = per_source_threshold(s[m], g[m], target_fpr)
        out["scores"][name] = {
            "threshold": thr,
            "threshold_by_source": per,
            "human_quantiles": np.quantile(s[m], _QUANTILES).tolist(),
            "dev_tpr_at_target": None,  # no machine text was calibrated on
        }
    return out
