"""The gradient-boosted member (``gbm``) and its place in the default ensemble router."""

from __future__ import annotations

import numpy as np
import pytest

from route_fixtures import fit_small_router
from zimo.route.config import RouterConfig
from zimo.route.metrics import evaluate_scores
from zimo.route.scorers import (
    ENSEMBLE_MEMBERS,
    EnsembleScorer,
    GainScorer,
    GBMScorer,
    PromptFeatures,
    make_scorer,
)


def _interaction(n: int = 2400, seed: int = 0):
    """The cheap tier fails where two statistics are *both* high (a long prompt with numeric
    options, say) and nowhere else; each alone says nothing on average. A sum of the columns
    (the linear members) cannot rank that; trees can. Prompt vectors are noise."""
    rng = np.random.default_rng(seed)
    surface = rng.normal(size=(n, 11))
    form = rng.normal(size=(n, 15))
    both = (surface[:, 0] > 0) == (form[:, 4] > 0)
    cheap = (rng.random(n) < np.where(both, 0.25, 0.9)).astype(np.int64)
    strong = (rng.random(n) < 0.95).astype(np.int64)
    emb = rng.normal(size=(n, 64)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    groups = np.repeat(np.arange(12), n // 12)
    return PromptFeatures(surface, emb, groups, form), np.column_stack([cheap, strong])


def _apgr(scores, y) -> float:
    return evaluate_scores(scores, y[:, 0].astype(float), y[:, 1].astype(float))["apgr"]


def test_gbm_learns_an_interaction_the_linear_members_miss():
    f, y = _interaction()
    ft, yt = _interaction(seed=1)
    gbm = make_scorer("gbm", "gain").fit(f, y)
    assert isinstance(gbm, GainScorer) and isinstance(gbm.cheap, GBMScorer)
    got = _apgr(gbm.predict(ft), yt)
    linear = _apgr(make_scorer("form", "gain").fit(f, y).predict(ft), yt)
    assert got > 0.65, got  # ~0.70 measured; random 0.50
    assert got > linear + 0.12, (got, linear)  # the linear form router: ~0.49
    # Fixed seed: the same data gives the same trees.
    again = GBMScorer().fit(f, y[:, 0]).predict(ft)
    assert np.array_equal(again, gbm.cheap.predict(ft))


def test_gbm_needs_form_statistics_and_prompt_vectors():
    f, y = _interaction(n=240)
    with pytest.raises(ValueError, match="form"):
        GBMScorer().fit(PromptFeatures(f.surface, f.emb), y[:, 0])
    with pytest.raises(ValueError, match="emb"):
        GBMScorer().fit(PromptFeatures(f.surface, None, None, f.form), y[:, 0])
    # Fewer prompts than principal components: it keeps what the data have.
    tiny = f.subset(np.arange(10))
    s = GBMScorer().fit(tiny, np.array([0, 1] * 5)).predict(tiny)
    assert s.shape == (10,) and np.isfinite(s).all()


def test_default_ensemble_carries_the_gbm_member():
    cfg = RouterConfig()
    assert cfg.kind == "ensemble"
    ens = make_scorer(cfg.kind, cfg.label)
    assert isinstance(ens, EnsembleScorer) and "gbm" in ENSEMBLE_MEMBERS
    kinds = [m.cheap.kind for m in ens.members]
    assert kinds == list(ENSEMBLE_MEMBERS)
    # The member counts in the combination: on the interaction data the ensemble with it ranks
    # above the same ensemble without it.
    f, y = _interaction(n=1200)
    ft, yt = _interaction(n=1200, seed=1)
    with_gbm = _apgr(ens.fit(f, y).predict(ft), yt)
    without = EnsembleScorer([m for m in make_scorer("ensemble").members if m.base != "gbm"])
    assert with_gbm > _apgr(without.fit(f, y).predict(ft), yt) + 0.05


def test_default_router_fits_saves_loads_and_decides_with_gbm(tmp_path):
    """The default route config (no kind given) through fit_router, save, load and decide."""
    from zimo.route.router import Router

    out, router = fit_small_router(tmp_path, {"folds": 3, "embedder": "minilm"}, tmp_path / "r")
    assert router.meta["kind"] == "ensemble"
    gbm = [m for m in router.scorers[0].members if m.base == "gbm"]
    assert len(gbm) == 1 and hasattr(gbm[0].cheap, "model")  # fitted, not just listed
    loaded = Router.load(tmp_path / "r", embed_cache_path=tmp_path / "e.sqlite")
    prompts = out.prompts[:5]
    assert np.allclose(loaded.scores(prompts), router.scores(prompts))
    tier, score = loaded.decide(prompts[0])
    assert tier in ("weak", "strong") and 0 <= score <= 1
