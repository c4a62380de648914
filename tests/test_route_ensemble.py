"""The ensemble router: cross-fitted standardisation and stacked (non-negative) weights."""

from __future__ import annotations

import numpy as np
import pytest

from zimo.route.metrics import evaluate_scores
from zimo.route.scorers import (
    EnsembleScorer,
    GainScorer,
    PromptFeatures,
    ensemble_member,
    make_scorer,
)


def _synthetic(n: int = 1200, groups: int = 12, seed: int = 0):
    """Prompts whose first surface feature drives both tiers' correctness; random embeddings.

    The cheap tier is right when that feature is low, the strong one almost always: the
    length-like member is informative, a kNN over random unit vectors is noise.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    surface = np.column_stack([x, rng.normal(size=(n, 10))])
    emb = rng.normal(size=(n, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cheap = (rng.random(n) < 1 / (1 + np.exp(2.5 * x))).astype(np.int64)
    strong = (rng.random(n) < 0.9).astype(np.int64)
    g = np.repeat(np.arange(groups), n // groups)
    return PromptFeatures(surface, emb, g), np.column_stack([cheap, strong])


def _members(k: int = 10):
    return [make_scorer("length", "gain"), make_scorer("knn", "gain", knn_k=k)]


def _topical(n: int = 1200, groups: int = 12, seed: int = 0):
    """Prompts whose embedding says their topic (group) and whose topic sets the cheap tier's
    accuracy: the situation where in-sample kNN scores look far more certain than they are
    on a topic never seen (their own topic's prompts are the neighbours)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    # Orthogonal topic directions: other topics are equally far, so an unseen topic's
    # neighbours carry no information about it (its cross-fitted kNN score is near the prior).
    centres = 3.0 * np.eye(groups, 384)
    emb = (centres[g] + 0.3 * rng.normal(size=(n, 384))).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rate = np.linspace(0.15, 0.85, groups)[g]
    cheap = (rng.random(n) < rate).astype(np.int64)
    strong = (rng.random(n) < 0.9).astype(np.int64)
    surface = rng.normal(size=(n, 11))
    return PromptFeatures(surface, emb, g), np.column_stack([cheap, strong])


def test_in_sample_spread_overstates_a_knn_member():
    f, y = _topical()
    cross = EnsembleScorer(_members(50)).fit(f, y)
    inner = EnsembleScorer(_members(50), calibration="in_sample").fit(f, y)
    # kNN in-sample finds each prompt itself and its own topic among its neighbours: a far
    # wider spread than on topics it never saw, which the cross-fitted statistics measure.
    assert inner.stats[1][1] > 1.5 * cross.stats[1][1], (inner.stats, cross.stats)


def test_stacking_drops_a_noise_member_and_ranks_like_the_signal():
    f, y = _synthetic()
    ens = EnsembleScorer(_members(), weights="stacked").fit(f, y)
    assert ens.w.min() >= 0 and ens.w.sum() == pytest.approx(1.0)
    assert ens.w[0] > 0.8, ens.w  # the informative member carries the weight

    test, yt = _synthetic(seed=1)
    stacked = ens.predict(test)
    assert ((0 < stacked) & (stacked < 1)).all()
    equal = EnsembleScorer(_members(), weights="equal").fit(f, y).predict(test)
    alone = make_scorer("length", "gain").fit(f, y).predict(test)
    m = {
        k: evaluate_scores(s, yt[:, 0].astype(float), yt[:, 1].astype(float))["apgr"]
        for k, s in (("stacked", stacked), ("equal", equal), ("alone", alone))
    }
    assert m["stacked"] > m["equal"] + 0.02, m  # the noise member no longer dilutes the signal
    assert m["stacked"] == pytest.approx(m["alone"], abs=0.03), m


def test_ensemble_without_groups_or_with_tiny_data_still_fits():
    f, y = _synthetic(n=240)
    nogroups = PromptFeatures(f.surface, f.emb, None)
    s = EnsembleScorer(_members()).fit(nogroups, y).predict(nogroups)
    assert s.shape == (240,) and np.isfinite(s).all()
    tiny = f.subset(np.arange(6))
    s = EnsembleScorer(_members()).fit(tiny, y[:6]).predict(tiny)
    assert np.isfinite(s).all()


def test_ensemble_options_are_validated():
    with pytest.raises(ValueError):
        EnsembleScorer(_members(), weights="stacked", calibration="in_sample")
    with pytest.raises(ValueError):
        EnsembleScorer(_members(), weights="median")


def test_ensemble_length_member_estimates_the_gain_not_the_cheap_tier_alone():
    # The longest prompts defeat both tiers: escalating them gains nothing. The monotone
    # length router escalates them first; the ensemble's gain member does not.
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(size=n)
    cheap = (rng.random(n) < 1 / (1 + np.exp(3 * x))).astype(np.int64)
    strong = (rng.random(n) < 1 / (1 + np.exp(3 * (x - 1.0)))).astype(np.int64)
    surface = np.column_stack([x, rng.normal(size=(n, 10))])
    f, y = PromptFeatures(surface), np.column_stack([cheap, strong])
    tr, te = np.arange(0, n, 2), np.arange(1, n, 2)
    member = ensemble_member("length", "gain")
    assert isinstance(member, GainScorer)
    qc, qs = y[te, 0].astype(float), y[te, 1].astype(float)
    apgr = {
        name: evaluate_scores(s.fit(f.subset(tr), y[tr]).predict(f.subset(te)), qc, qs)["apgr"]
        for name, s in (("member", member), ("router", make_scorer("length", "gain")))
    }
    assert apgr["member"] > apgr["router"] + 0.05, apgr
