"""Pre-call scorers: P(the cheap tier is good enough | prompt), learned from outcome data.

Each scorer is a small scikit-learn model over :class:`PromptFeatures` (MiniLM embeddings and/or
cheap surface statistics). They share one interface — ``fit(features, y)`` and
``predict(features) -> probabilities`` — so the router, the cross-fitting and the benchmark
treat them alike, and a fitted one pickles with joblib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zimo.route.features import form_features, prompt_embeddings, surface_features


# scikit-learn is imported on first use, not at module import: `import zimo.route.scorers` (and
# the CLI plugin, `zimo --help`) must stay cheap.
def LogisticRegression(**kw):  # noqa: N802 - stands in for the sklearn class
    from sklearn.linear_model import LogisticRegression as _LR

    return _LR(**kw)


def StandardScaler():  # noqa: N802
    from sklearn.preprocessing import StandardScaler as _SS

    return _SS()


def MLPClassifier(**kw):  # noqa: N802
    from sklearn.neural_network import MLPClassifier as _MLP

    return _MLP(**kw)


@dataclass
class PromptFeatures:
    """Features of a batch of prompts; ``emb`` is None when no scorer needs embeddings.

    ``groups`` (training only, optional): each prompt's group (subject), so a stacked scorer
    can cross-fit its members on unseen groups. ``form``: the topic-free form statistics
    (:func:`~zimo.route.features.form_features`), which the ``form`` scorer reads.
    """

    surface: np.ndarray
    emb: np.ndarray | None = None
    groups: np.ndarray | None = None
    form: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.surface)

    def subset(self, idx: np.ndarray) -> PromptFeatures:
        return PromptFeatures(
            self.surface[idx],
            None if self.emb is None else self.emb[idx],
            None if self.groups is None else self.groups[idx],
            None if self.form is None else self.form[idx],
        )


def build_features(
    prompts: Sequence[str],
    *,
    embeddings: bool = True,
    max_seq_length: int = 256,
    cache_path: str | os.PathLike | None = None,
    progress: bool = False,
    dtype: str = "auto",
    groups: np.ndarray | None = None,
    embedder=None,
) -> PromptFeatures:
    """Surface features always; prompt vectors when ``embeddings``: MiniLM's, or those of a
    fitted :class:`~zimo.route.lm_features.LMEmbedder` given as ``embedder``."""
    if not embeddings:
        emb = None
    elif embedder is not None:
        emb = embedder.embed(prompts, cache_path=cache_path, progress=progress)
    else:
        emb = prompt_embeddings(
            prompts,
            max_seq_length=max_seq_length,
            cache_path=cache_path,
            progress=progress,
            dtype=dtype,
        )
    return PromptFeatures(
        surface_features(prompts),
        emb,
        None if groups is None else np.asarray(groups),
        form_features(prompts),
    )


class Scorer:
    """Base class: subclasses set ``needs_embeddings`` and implement ``fit``/``predict``."""

    kind = "base"
    needs_embeddings = False

    def fit(self, f: PromptFeatures, y: np.ndarray) -> Scorer:
        raise NotImplementedError

    def predict(self, f: PromptFeatures) -> np.ndarray:
        raise NotImplementedError


class LengthScorer(Scorer):
    """Logistic regression on log prompt length only: the simplest baseline worth beating."""

    kind = "length"

    def fit(self, f, y):
        self.model = LogisticRegression().fit(f.surface[:, :1], y)
        return self

    def predict(self, f):
        return self.model.predict_proba(f.surface[:, :1])[:, 1]


class SurfaceScorer(Scorer):
    """Logistic regression on the cheap surface features (no embedding: ~µs per prompt)."""

    kind = "features"

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, f, y):
        self.scaler = StandardScaler().fit(f.surface)
        self.model = LogisticRegression(C=self.C, max_iter=2000).fit(
            self.scaler.transform(f.surface), y
        )
        return self

    def predict(self, f):
        return self.model.predict_proba(self.scaler.transform(f.surface))[:, 1]


class FormScorer(Scorer):
    """Logistic regression on the surface and form statistics: what kind of task the prompt is
    (options, negation, calculation, code, length), never what it is about. Microseconds per
    prompt and nothing that names a topic. Measured on 12 held-out MMLU subjects x 10 splits
    (benchmarks/route_mmlu.py --holdout 12) it is steadier than the embedding routers but ranks
    below them and adds nothing to the ensemble, so it is a kind to choose, not a default
    member (docs/routing.md)."""

    kind = "form"

    def __init__(self, C: float = 0.1):
        self.C = C

    @staticmethod
    def _x(f: PromptFeatures) -> np.ndarray:
        if f.form is None:
            raise ValueError("the form scorer needs PromptFeatures.form (build_features sets it)")
        return np.hstack([f.surface, f.form])

    def fit(self, f, y):
        self.scaler = StandardScaler().fit(self._x(f))
        self.model = LogisticRegression(C=self.C, max_iter=2000).fit(
            self.scaler.transform(self._x(f)), y
        )
        return self

    def predict(self, f):
        return self.model.predict_proba(self.scaler.transform(self._x(f)))[:, 1]


class TopicRemoved(Scorer):
    """``inner`` fitted on prompt vectors with the directions that tell the training groups
    (subjects) apart projected out: the top ``k`` principal directions of the group means.

    A linear probe on a sentence embedding learns "this subject is hard"; on a subject it never
    saw, that part of its score is noise. Removing the between-subject directions (a crude
    domain-adversarial step: what is left cannot name the training subject) leaves what varies
    *within* subjects. Without groups it is ``inner`` unchanged. On held-out MMLU subjects it
    ranked below the plain members (the ensemble −0.028 ± 0.010 APGR over 10 splits): the
    directions that separate subjects also carry difficulty that transfers to related ones."""

    def __init__(self, inner: Scorer, k: int = 16):
        self.inner, self.k = inner, k
        self.kind = f"{inner.kind}-topic_removed"
        self.needs_embeddings = True

    def _project(self, f: PromptFeatures) -> PromptFeatures:
        if self.basis is None:
            return f
        e = f.emb - (f.emb @ self.basis.T) @ self.basis
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return PromptFeatures(f.surface, e, f.groups, f.form)

    def fit(self, f, y):
        self.basis = None
        if f.groups is not None:
            gs = sorted(set(f.groups.tolist()))
            if len(gs) > 2:
                means = np.stack([f.emb[f.groups == g].mean(0) for g in gs])
                means -= means.mean(0)
                _, _, vt = np.linalg.svd(means, full_matrices=False)
                self.basis = vt[: min(self.k, len(gs) - 1)]
        self.inner.fit(self._project(f), y)
        return self

    def predict(self, f):
        return self.inner.predict(self._project(f))


def _joint(scaler, f: PromptFeatures, emb_weight: float) -> np.ndarray:
    # Unit-norm embeddings have per-dimension spread ≈ 1/sqrt(384); scaling them up lets one
    # regularisation strength serve both blocks.
    return np.hstack([scaler.transform(f.surface), f.emb * emb_weight])


class LogRegScorer(Scorer):
    """Logistic regression on [MiniLM embedding, surface features]."""

    kind = "logreg"
    needs_embeddings = True

    def __init__(self, C: float = 0.05, emb_weight: float = 8.0):
        self.C, self.emb_weight = C, emb_weight

    def fit(self, f, y):
        self.scaler = StandardScaler().fit(f.surface)
        self.model = LogisticRegression(C=self.C, max_iter=3000).fit(
            _joint(self.scaler, f, self.emb_weight), y
        )
        return self

    def predict(self, f):
        return self.model.predict_proba(_joint(self.scaler, f, self.emb_weight))[:, 1]


class MLPScorer(Scorer):
    """A one-hidden-layer MLP on [embedding, surface features], early-stopped."""

    kind = "mlp"
    needs_embeddings = True

    def __init__(self, hidden: int = 32, alpha: float = 1e-2, seed: int = 0):
        self.hidden, self.alpha, self.seed = hidden, alpha, seed

    def fit(self, f, y):
        self.scaler = StandardScaler().fit(f.surface)
        self.model = MLPClassifier(
            hidden_layer_sizes=(self.hidden,),
            alpha=self.alpha,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=5,
            max_iter=60,
            batch_size=256,
            random_state=self.seed,
        ).fit(_joint(self.scaler, f, 8.0), y)
        return self

    def predict(self, f):
        return self.model.predict_proba(_joint(self.scaler, f, 8.0))[:, 1]


class GBMScorer(Scorer):
    """Gradient-boosted trees (LightGBM) on the surface and form statistics and the top
    ``pca`` principal components of the training prompts' vectors.

    Trees combine the signals the linear members can only add: "long *and* numeric options",
    "negated stem in this region of the embedding". Few components keep the topic part coarse
    (which neighbourhood of subjects, not which subject), and small, heavily-populated leaves
    (``min_child_samples``) keep a tree from memorising one training subject. Fixed settings,
    not tuned per data set. As an ensemble member it lifted APGR on 12 held-out MMLU subjects
    from 0.601 to 0.619 (paired +0.018 ± 0.007 over 10 splits, benchmarks/route_mmlu.py
    --holdout 12), and by +0.006 ± 0.003 on 10 fresh splits (docs/routing.md). Single-threaded: a request is one row, and a 2-core
    server's spinning OpenMP threads would cost more than the trees.
    """

    kind = "gbm"
    needs_embeddings = True

    def __init__(
        self,
        pca: int = 32,
        n_estimators: int = 200,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        seed: int = 0,
    ):
        self.pca, self.n_estimators, self.learning_rate = pca, n_estimators, learning_rate
        self.num_leaves, self.min_child_samples, self.seed = num_leaves, min_child_samples, seed

    @staticmethod
    def _check(f: PromptFeatures) -> None:
        if f.form is None or f.emb is None:
            raise ValueError("the gbm scorer needs PromptFeatures.form and .emb (build_features)")

    def _x(self, f: PromptFeatures) -> np.ndarray:
        self._check(f)
        comps = (np.asarray(f.emb, dtype=np.float64) - self.mean) @ self.basis.T
        return np.hstack([f.surface, f.form, comps])

    def fit(self, f, y):
        from lightgbm import LGBMClassifier

        self._check(f)
        emb = np.asarray(f.emb, dtype=np.float64)
        self.mean = emb.mean(0)
        k = max(1, min(self.pca, len(emb) - 1, emb.shape[1]))
        self.basis = np.linalg.svd(emb - self.mean, full_matrices=False)[2][:k]
        self.model = LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            reg_lambda=1.0,
            random_state=self.seed,
            n_jobs=1,
            verbose=-1,
        ).fit(self._x(f), np.asarray(y))
        return self

    def predict(self, f):
        return self.model.predict_proba(self._x(f))[:, 1]


class KNNScorer(Scorer):
    """Share of good-enough outcomes among the k most similar training prompts (cosine).

    Smoothed towards the overall rate with a pseudo-count, so a prompt whose neighbours are
    few or mixed is not scored with false certainty. Brute-force dot products: for tens of
    thousands of 384-d unit vectors that is a millisecond, and it pickles as one array.
    """

    kind = "knn"
    needs_embeddings = True

    def __init__(self, k: int = 50, prior_weight: float = 5.0):
        self.k, self.prior_weight = k, prior_weight

    def fit(self, f, y):
        self.emb = np.ascontiguousarray(f.emb, dtype=np.float32)
        self.y = np.asarray(y, dtype=np.float32)
        self.prior = float(self.y.mean())
        return self

    def predict(self, f):
        k = min(self.k, len(self.y))
        out = np.empty(len(f), dtype=np.float64)
        q = np.asarray(f.emb, dtype=np.float32)
        for a in range(0, len(q), 1024):  # bound the (batch x train) similarity matrix
            if len(q) <= 8:
                # One request: a plain loop (einsum) instead of multi-threaded BLAS gemv, whose
                # spinning threads cost 10-30 ms per call on a busy 2-core machine (measured).
                sims = np.einsum("qd,nd->qn", q[a : a + 1024], self.emb)
            else:
                sims = q[a : a + 1024] @ self.emb.T
            nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            hits = self.y[nn].sum(1)
            out[a : a + 1024] = (hits + self.prior_weight * self.prior) / (k + self.prior_weight)
        return out


class GainScorer(Scorer):
    """Expected advantage of the cheap tier: 0.5 · (1 + P(cheap right) − P(strong right)).

    Two models of the same kind, one per tier's correctness. Ranking by the difference targets
    what routing gains (the strong tier right where the cheap one is wrong) better than one
    "good enough" classifier: hard prompts that *both* tiers get wrong are not escalated, and
    prompts where the cheap tier tends to beat the strong one stay cheap. ``y`` is ``(n, 2)``.
    """

    kind = "gain"

    def __init__(self, base: str, *, knn_k: int = 50, seed: int = 0):
        self.base = base
        self.cheap = _base_scorer(base, knn_k=knn_k, seed=seed)
        self.strong = _base_scorer(base, knn_k=knn_k, seed=seed)
        self.needs_embeddings = self.cheap.needs_embeddings

    def fit(self, f, y):
        y = np.asarray(y)
        self.cheap.fit(f, y[:, 0])
        self.strong.fit(f, y[:, 1])
        return self

    def predict(self, f):
        return 0.5 * (1.0 + self.cheap.predict(f) - self.strong.predict(f))


class EnsembleScorer(Scorer):
    """Members' scores standardised, combined with weights, squashed to (0, 1).

    Standardising matters: the members' raw scores live on different scales (a kNN share, a
    length-only probability), and a plain mean would let the widest one dominate.

    ``calibration="cross_fit"`` (default) takes each member's mean and spread — and, with
    ``weights="stacked"``, the combination weights — from *cross-fitted* scores: each training
    prompt scored by a copy of the member fitted without its group (subject) when
    ``f.groups`` has enough groups, else without its fold. In-sample scores are the wrong
    yardstick: a kNN finds the prompt itself and its own subject among the neighbours, a
    logistic regression on 395 features fits its training prompts, so their in-sample spread
    is several times what they show on unseen subjects, and dividing by it silently
    down-weights exactly the members that carry topic information. ``"in_sample"`` is the
    former behaviour, kept for comparison. On the shared MMLU outcomes the two rank alike
    (paired over 15 grouped folds: APGR +0.002 ± 0.002, CPT(50%) 0.000 ± 0.005); cross-fitting
    stays the default as the sound yardstick, at three extra member fits per ``fit`` and no
    cost per request.

    ``weights="equal"`` (default): the mean of the z-scores. ``"stacked"``: non-negative least
    squares of the training target (cheap-tier advantage ``y_cheap - y_strong`` for gain
    labels, else ``y``) on the members' cross-fitted z-scores (Breiman's stacked regression),
    normalised to sum to 1. Measured on unseen MMLU subjects the stacked weights swung from
    fold to fold (a member 0.0 in one fold, 1.0 in another: the target is mostly 0, both tiers
    right or both wrong, so little signal fixes them) and ranked worse than the plain mean
    (APGR −0.030 ± 0.010, CPT(50%) +0.037 ± 0.014, paired over 15 folds); equal weights stay
    the default (benchmarks/results/route_mmlu.md).
    """

    kind = "ensemble"
    needs_embeddings = True

    def __init__(
        self,
        members: list[Scorer],
        *,
        calibration: str = "cross_fit",
        weights: str = "equal",
        folds: int = 4,
        seed: int = 0,
    ):
        if calibration not in ("cross_fit", "in_sample"):
            raise ValueError(f"calibration must be cross_fit or in_sample, got {calibration!r}")
        if weights not in ("stacked", "equal"):
            raise ValueError(f"weights must be stacked or equal, got {weights!r}")
        if weights == "stacked" and calibration != "cross_fit":
            raise ValueError("stacked weights need cross-fitted scores (calibration=cross_fit)")
        self.members = members
        self.calibration, self.weights, self.folds, self.seed = calibration, weights, folds, seed
        self.needs_embeddings = any(m.needs_embeddings for m in members)

    def _cross_fitted(self, f: PromptFeatures, y: np.ndarray) -> np.ndarray:
        """``(n, members)`` scores, each row from member copies fitted without its group/fold."""
        import copy

        from sklearn.model_selection import GroupKFold, KFold

        n = len(f)
        groups = f.groups
        if groups is not None and len(set(groups.tolist())) >= self.folds:
            splits = GroupKFold(n_splits=self.folds, shuffle=True, random_state=self.seed).split(
                np.zeros(n), groups=groups
            )
        else:
            splits = KFold(n_splits=self.folds, shuffle=True, random_state=self.seed).split(
                np.zeros(n)
            )
        out = np.zeros((n, len(self.members)))
        for tr, te in splits:
            ytr = np.asarray(y)[tr]
            ycols = ytr if ytr.ndim == 2 else ytr[:, None]
            if any(ycols[:, c].min() == ycols[:, c].max() for c in range(ycols.shape[1])):
                out[te] = np.nan  # one class in this fold: no score; excluded below
                continue
            for j, m in enumerate(self.members):
                # A deep copy of the unfitted member: same kind and settings, fresh state.
                out[te, j] = copy.deepcopy(m).fit(f.subset(tr), ytr).predict(f.subset(te))
        return out

    def fit(self, f, y):
        y = np.asarray(y)
        if self.calibration == "cross_fit" and len(f) >= 2 * self.folds:
            oof = self._cross_fitted(f, y)
            ok = ~np.isnan(oof).any(axis=1)
            scores = oof[ok] if ok.sum() >= 2 else None
        else:
            scores = None
        crossfitted = scores is not None
        for m in self.members:
            m.fit(f, y)
        if scores is None:  # in-sample (asked for, or too little data to cross-fit)
            scores = np.stack([m.predict(f) for m in self.members], axis=1)
            ok = np.ones(len(f), dtype=bool)
        mu, sd = scores.mean(0), scores.std(0)
        sd[sd == 0] = 1.0
        self.stats = [(float(a), float(b)) for a, b in zip(mu, sd, strict=True)]
        equal = np.full(len(self.members), 1.0 / len(self.members))
        # The stacked weights are kept (``stack_w``) whichever combination is used, so a
        # benchmark can report both from one fit.
        self.stack_w = equal
        if crossfitted and ok.sum() >= 20:
            from scipy.optimize import nnls

            target = (y[:, 0] - y[:, 1]) if y.ndim == 2 else y
            t = target[ok].astype(np.float64)
            w, _ = nnls((scores - mu) / sd, t - t.mean())
            if w.sum() > 0:
                self.stack_w = w / w.sum()
        self.w = self.stack_w if self.weights == "stacked" else equal
        return self

    def predict(self, f):
        # Routers pickled before weights existed combine their members equally.
        weights = getattr(self, "w", np.full(len(self.members), 1.0 / len(self.members)))
        z = sum(
            w * (m.predict(f) - mu) / sd
            for m, (mu, sd), w in zip(self.members, self.stats, weights, strict=True)
            if w > 0  # a member the stacking dropped is not even run
        )
        return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def _base_scorer(kind: str, *, knn_k: int = 50, seed: int = 0) -> Scorer:
    from zimo.errors import ConfigError

    if kind == "length":
        return LengthScorer()
    if kind == "features":
        return SurfaceScorer()
    if kind == "logreg":
        return LogRegScorer()
    if kind == "mlp":
        return MLPScorer(seed=seed)
    if kind == "knn":
        return KNNScorer(k=knn_k)
    if kind == "form":
        return FormScorer()
    if kind == "gbm":
        return GBMScorer(seed=seed)
    if kind in ("logreg-topic_removed", "knn-topic_removed"):
        return TopicRemoved(_base_scorer(kind.split("-")[0], knn_k=knn_k, seed=seed))
    raise ConfigError(
        f"unknown router kind {kind!r}",
        "route.router.kind: logreg|mlp|knn|gbm|length|features|form|ensemble",
    )


class _FirstColumn(Scorer):
    """Adapter: a one-label scorer trained on the cheap tier's column of a gain label."""

    def __init__(self, inner: Scorer):
        self.inner = inner
        self.needs_embeddings = inner.needs_embeddings
        self.kind = inner.kind

    def fit(self, f, y):
        self.inner.fit(f, np.asarray(y)[:, 0])
        return self

    def predict(self, f):
        return self.inner.predict(f)


# Chosen by grouped CV on the shared MMLU outcomes (benchmarks/route_mmlu.py): each member alone
# reaches pooled APGR 0.57-0.60, their standardised mean 0.62 — they err on different prompts.
# gbm joined when it transferred to held-out subjects better than the four before it (APGR
# 0.601 -> 0.623 on 12 unseen MMLU subjects x 10 splits, worst split not worse; --holdout 12).
ENSEMBLE_MEMBERS = ("length", "logreg", "knn", "features", "gbm")
# Folds of the ensemble's inner cross-fitting (its statistics and weights). Three keep a fit at
# four fits per member; the statistics of two numbers per member need no more.
ENSEMBLE_FOLDS = 3


def make_scorer(kind: str, label: str = "gain", *, knn_k: int = 50, seed: int = 0) -> Scorer:
    """A fresh scorer of ``kind`` for training labels of type ``label``.

    ``label="gain"`` expects ``y`` of shape ``(n, 2)`` (cheap right, strong right); the other
    labels a 0/1 vector. The ``length`` router is monotone in the prompt length whatever the
    label (the "prompt length alone" baseline); inside the ensemble every member,
    length included, estimates the same quantity (see :func:`ensemble_member`).
    """
    if kind == "ensemble":
        return EnsembleScorer(
            [ensemble_member(k, label, knn_k=knn_k, seed=seed) for k in ENSEMBLE_MEMBERS],
            folds=ENSEMBLE_FOLDS,
            seed=seed,
        )
    if label == "gain":
        if kind == "length":
            return _FirstColumn(LengthScorer())
        _base_scorer(kind)  # validates the name
        return GainScorer(kind, knn_k=knn_k, seed=seed)
    return _base_scorer(kind, knn_k=knn_k, seed=seed)


def ensemble_member(kind: str, label: str = "gain", *, knn_k: int = 50, seed: int = 0) -> Scorer:
    """A member of the ensemble: with gain labels, a :class:`GainScorer` of every kind.

    The stand-alone ``length`` router predicts only P(cheap right), so long prompts rank as
    worth escalating even where the strong tier fails on them too (MMLU's long maths prompts:
    the strong model is often wrong there as well); averaged with gain-estimating members it
    mixed two different targets. As a member it estimates the gain like the others.
    """
    if label == "gain":
        _base_scorer(kind)
        return GainScorer(kind, knn_k=knn_k, seed=seed)
    return _base_scorer(kind, knn_k=knn_k, seed=seed)
