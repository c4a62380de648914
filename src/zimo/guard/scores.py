"""Zero-shot machine-text scores from per-token statistics. Higher = more likely machine-written.

- ``loglik``: mean log p(x_t). Machine text is likely under a language model.
- ``logrank``: minus the mean log-rank (GLTR / DetectGPT baseline). Robust to rare tokens.
- ``entropy``: minus the mean predictive entropy (machine text sits in low-entropy contexts).
- ``fast_detectgpt``: analytic conditional probability curvature (Bao et al. 2023), the same
  model as sampler and scorer: (sum_t log p(x_t) - sum_t mu_t) / sqrt(sum_t var_t).
- ``binoculars``: minus log-perplexity over cross-perplexity (Hans et al. 2024). With one model
  (no two embedded models share a tokenizer) the cross-perplexity is the model's own entropy.
- ``lrr``: log-likelihood / log-rank ratio (DetectLLM, Su et al. 2023).
- ``combined``: a small logistic model over length-free per-document statistics, fitted on a dev
  split with the weights stored in the calibration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from zimo.guard.lm_stats import TokenStats

# Token statistics each score needs (so the forward pass computes nothing else).
SCORE_NEEDS: dict[str, tuple[str, ...]] = {
    "loglik": ("logp",),
    "logrank": ("logrank",),
    "entropy": ("mu",),
    "fast_detectgpt": ("logp", "mu", "var"),
    "binoculars": ("logp", "mu"),
    "lrr": ("logp", "logrank"),
}
SIMPLE_SCORES = tuple(SCORE_NEEDS)

# Features of the combined score: per-token means, quantiles and spreads, never the raw length,
# so that the model cannot learn "short = human" from one dev set. Rank statistics and the
# curvature are what survive paraphrase best; the rare-token rate and the 90th-percentile rank
# capture that human text has occasional surprising tokens (names, typos, slang) while model
# text has almost none; the spread of windowed surprisal is "burstiness".
FEATURES = (
    "logrank",
    "fdg_rate",
    "logrank_q90",
    "rare_rank_frac",
    "window_surprisal_std",
)
FEATURE_NEEDS = ("logp", "logrank", "mu", "var")
_WINDOW = 16  # tokens per window for burstiness (roughly a short clause in Chinese)
_RARE_RANK = 100  # a token outside the model's top 100 counts as rare


def needs_for(score: str) -> tuple[str, ...]:
    """Token statistics required by ``score``."""
    if score == "combined":
        return FEATURE_NEEDS
    try:
        return SCORE_NEEDS[score]
    except KeyError:
        raise ValueError(f"unknown score {score!r}") from None


def simple_score(name: str, s: TokenStats) -> float:
    """One zero-shot score for one document (NaN for an empty document)."""
    if s.n_tokens == 0:
        return math.nan
    if name == "loglik":
        return float(s.logp.mean())
    if name == "logrank":
        return -float(s.logrank.mean())
    if name == "entropy":
        return float(s.mu.mean())  # mu = -entropy
    if name == "fast_detectgpt":
        return float((s.logp.sum() - s.mu.sum()) / math.sqrt(max(float(s.var.sum()), 1e-9)))
    if name == "binoculars":
        # log PPL / log X-PPL with X-PPL = exp(entropy) for a single model; low = machine.
        return -float(-s.logp.mean() / max(-float(s.mu.mean()), 1e-6))
    if name == "lrr":
        # |mean log p| / mean log-rank: large for machine text (likely, yet not all top-1).
        return float(-s.logp.mean() / max(float(s.logrank.mean()), 1e-6))
    raise ValueError(f"unknown score {name!r}")


def features(s: TokenStats) -> np.ndarray:
    """Length-free statistics of one document for the combined score (see ``FEATURES``)."""
    if s.n_tokens == 0:
        return np.full(len(FEATURES), np.nan)
    surprisal = -s.logp.astype(np.float64)
    n = len(surprisal)
    w = max(1, n // _WINDOW)
    windows = surprisal[: w * _WINDOW].reshape(w, -1).mean(1) if n >= _WINDOW else surprisal
    return np.array(
        [
            -s.logrank.mean(),
            (s.logp - s.mu).mean() / math.sqrt(max(float(s.var.mean()), 1e-9)),
            -np.quantile(s.logrank, 0.9),
            -(s.logrank >= math.log1p(_RARE_RANK)).mean(),
            windows.std() if len(windows) > 1 else 0.0,
        ],
        dtype=np.float64,
    )


def feature_matrix(stats: Sequence[TokenStats]) -> np.ndarray:
    return np.stack([features(s) for s in stats]) if stats else np.zeros((0, len(FEATURES)))


def combined_scores(X: np.ndarray, model: dict) -> np.ndarray:
    """Apply a stored logistic model ``{"mean","scale","coef","intercept"}`` (log-odds out)."""
    mean, scale = np.asarray(model["mean"]), np.asarray(model["scale"])
    z = (X - mean) / scale
    out = z @ np.asarray(model["coef"]) + float(model["intercept"])
    return np.where(np.isnan(X).any(1), np.nan, out)


def fit_combined(X: np.ndarray, y: np.ndarray, C: float = 1.0) -> dict:
    """Fit the combined score's logistic model (standardised features, L2)."""
    from sklearn.linear_model import LogisticRegression

    ok = ~np.isnan(X).any(1)
    X, y = X[ok], y[ok]
    mean, scale = X.mean(0), X.std(0) + 1e-9
    clf = LogisticRegression(C=C, max_iter=2000).fit((X - mean) / scale, y)
    return {
        "features": list(FEATURES),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": clf.coef_[0].tolist(),
        "intercept": float(clf.intercept_[0]),
        "C": C,
    }


def out_of_fold_combined(
    X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, C: float = 1.0
) -> np.ndarray:
    """Cross-validated combined scores: each document scored by a model not fitted on it."""
    from sklearn.model_selection import StratifiedKFold

    out = np.full(len(y), np.nan)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        out[test] = combined_scores(X[test], fit_combined(X[train], y[train], C))
    return out
