"""Routing signals meant to carry over to unseen subjects: the prompt's form, topic-removed
prompt vectors, and the embedded LM's confidence in its answer."""

from __future__ import annotations

import numpy as np
import pytest

from zimo.route.features import FORM_FEATURES, form_features
from zimo.route.lm_features import option_letters
from zimo.route.metrics import evaluate_scores
from zimo.route.scorers import PromptFeatures, TopicRemoved, build_features, make_scorer

COL = {k: i for i, k in enumerate(FORM_FEATURES)}


def test_form_features_read_the_form_not_the_topic():
    mc = "Which of the following is NOT a prime?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer:"
    stm = (
        "Statement 1 | Every group is abelian. Statement 2 | Z is a ring.\n"
        "A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:"
    )
    code = "x = 1\nwhile x < 5:\n    x += 2;\nWhat is x?\nA) 5\nB) 7\nAnswer:"
    f = form_features([mc, stm, code, "Write me a poem about the sea."])
    assert f.shape == (4, len(FORM_FEATURES))
    assert f[:, COL["n_options"]].tolist() == [4, 4, 2, 0]
    assert f[0, COL["negated"]] > 0 and f[1, COL["negated"]] == 0
    assert f[0, COL["which_following"]] == 1 and f[3, COL["which_following"]] == 0
    assert f[0, COL["numeric_options"]] == 1 and f[1, COL["numeric_options"]] == 0
    assert f[1, COL["statements"]] == 1 and f[1, COL["true_false_options"]] == 1
    assert f[2, COL["code_lines"]] > 0 and f[0, COL["code_lines"]] == 0
    # The same question about another subject has the same form.
    other = "Which of the following is NOT a mammal?\nA. 7\nB. 8\nC. 9\nD. 1\nAnswer:"
    assert np.allclose(form_features([other])[0], f[0], atol=0.1)
    assert np.isfinite(form_features([""])).all()
    assert build_features(["a", "b"], embeddings=False).form.shape == (2, len(FORM_FEATURES))


def test_option_letters():
    assert option_letters("Q?\nA. x\nB. y\nC. z\nAnswer:") == ["A", "B", "C"]
    assert option_letters("Q?\n(A) x\n(B) y\n(C) z\n(D) w\n(E) v") == list("ABCDE")
    assert option_letters("A. lone line then prose") == []


def _topics_and_form(n=1800, groups=12, seed=0, flip=False):
    """Prompt vectors that name the topic; the cheap tier fails on negated questions and, in the
    training topics, on the harder topics too. On new topics (``flip``) topic difficulty is
    reversed: a router that learned "topic X is hard" is wrong there, the form still right."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups) + (100 if flip else 0)
    dirs = np.random.default_rng(99).normal(size=(200, 64))
    emb = dirs[g % 200] * 2 + rng.normal(size=(n, 64))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    neg = rng.random(n) < 0.3
    hard = np.linspace(-1.5, 1.5, groups)[np.arange(n) // (n // groups)]
    if flip:
        hard = -hard
    p = 1 / (1 + np.exp(-(1.0 - 3.0 * neg - hard)))
    cheap = (rng.random(n) < p).astype(np.int64)
    strong = (rng.random(n) < 0.95).astype(np.int64)
    prompts = [
        ("Which of the following is NOT true?" if k else "Which of the following is true?")
        + "\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
        for k in neg
    ]
    f = build_features(prompts, embeddings=False, groups=g)
    f.emb = emb
    return f, np.column_stack([cheap, strong])


def test_form_router_transfers_where_the_topic_router_does_not():
    f, y = _topics_and_form()
    ft, yt = _topics_and_form(seed=1, flip=True)

    def apgr(kind):
        s = make_scorer(kind, "gain").fit(f, y).predict(ft)
        return evaluate_scores(s, yt[:, 0].astype(float), yt[:, 1].astype(float))["apgr"]

    form, knn = apgr("form"), apgr("knn")
    assert form > 0.6, form
    assert form > knn + 0.1, (form, knn)


def test_topic_removal_leaves_no_subject_direction():
    f, y = _topics_and_form()
    tr = TopicRemoved(make_scorer("logreg", "gain"), k=16).fit(f, y)
    proj = tr._project(f).emb
    means = np.stack([proj[f.groups == g].mean(0) for g in sorted(set(f.groups.tolist()))])
    raw = np.stack([f.emb[f.groups == g].mean(0) for g in sorted(set(f.groups.tolist()))])
    # The group means differ along the removed directions only: what is left is shared.
    assert (
        np.linalg.norm(means - means.mean(0), axis=1).max()
        < 0.1 * np.linalg.norm(raw - raw.mean(0), axis=1).max()
    )
    assert np.allclose(np.linalg.norm(proj, axis=1), 1.0)
    # Without groups it is the inner scorer unchanged.
    plain = PromptFeatures(f.surface, f.emb, None, f.form)
    a = TopicRemoved(make_scorer("logreg", "gain")).fit(plain, y).predict(plain)
    b = make_scorer("logreg", "gain").fit(plain, y).predict(plain)
    assert np.allclose(a, b)


def test_form_scorer_needs_form_features():
    f, y = _topics_and_form(n=120)
    with pytest.raises(ValueError, match="form"):
        make_scorer("form", "gain").fit(PromptFeatures(f.surface, f.emb), y)


def test_form_router_fits_through_the_config_and_beats_random_on_unseen_subjects(tmp_path):
    # All 45 subjects, cross-fitted by subject inside fit_router, no embedding needed.
    from route_fixtures import DATA
    from zimo.route.outcomes import load_outcome_csvs
    from zimo.route.router import Router, fit_router

    if not DATA.is_dir():
        pytest.skip("shared router data not found")
    full = load_outcome_csvs(DATA, ["weak", "strong"])
    cfg = {
        "tiers": [
            {"name": "weak", "price_per_1k_tokens": 0.0006},
            {"name": "strong", "price_per_1k_tokens": 0.01},
        ],
        "target": {"quality": 0.97},
        "router": {"kind": "form", "folds": 5},
    }
    router = fit_router(full, cfg, tmp_path / "r")
    assert router.meta["kind"] == "form"
    assert router.meta["cross_fitted"]["apgr"] > 0.51  # random: 0.50
    tier, score = Router.load(tmp_path / "r").decide(full.prompts[0])
    assert tier in ("weak", "strong") and 0 <= score <= 1
