"""The fitted pre-call router: learn it, calibrate its threshold, save it, decide per request.

``fit_router(outcomes, cfg, out_dir)``:

1. one training label per non-strongest tier ("good enough": at least as good as the strongest
   tier on that prompt; or "cheap_correct");
2. cross-fitted scores — each prompt scored by a model that did not see its group (subject),
   so the threshold is calibrated on the kind of error the router makes on new topics;
3. the threshold that meets ``cfg.target`` on those scores (:mod:`zimo.route.calibrate`);
4. the final scorers refit on all data, saved as ``router.joblib`` + ``router.json``.

``Router.decide(prompt) -> (tier, score)`` is what ``zimo serve`` calls for ``model: "auto"``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zimo.errors import DataError, ZimoError
from zimo.fileio import atomic_path, write_text_atomic
from zimo.route.calibrate import assign_tiers, choose_threshold, sweep
from zimo.route.config import RouteConfig, parse_route_config
from zimo.route.features import estimate_tokens
from zimo.route.lm_features import LMEmbedder, parse_embedder, resolve_embedder
from zimo.route.metrics import evaluate_scores, oracle_scores, random_expected
from zimo.route.outcomes import Outcomes
from zimo.route.scorers import PromptFeatures, Scorer, build_features, make_scorer

log = logging.getLogger("zimo.route")

FORMAT_VERSION = 1


def tier_costs(prompts: Sequence[str], cfg: RouteConfig) -> np.ndarray:
    """``(n, tiers)`` price of sending each prompt to each tier."""
    tokens = estimate_tokens(prompts) + cfg.output_tokens
    return np.stack([[t.cost(x) for t in cfg.tiers] for x in tokens])


def training_labels(outcomes: Outcomes, label: str) -> list[np.ndarray]:
    """One label array per non-strongest tier; DataError on one-class data.

    ``gain``: ``(n, 2)`` = (tier right, strongest right), "right" meaning quality ≥ 0.5; the
    others: a 0/1 vector.
    """
    ys = []
    for j in range(len(outcomes.tiers) - 1):
        sub = Outcomes(
            outcomes.prompts,
            outcomes.quality[:, [j, -1]],
            [outcomes.tiers[j], outcomes.tiers[-1]],
            outcomes.groups,
        )
        y = sub.check_learnable("good_enough" if label == "gain" else label)
        if label == "gain":
            y = (sub.quality >= 0.5).astype(np.int64)
            for c in range(2):
                if y[:, c].min() == y[:, c].max():
                    raise DataError(
                        f"tier {sub.tiers[c]!r} is {'always' if y[0, c] else 'never'} right in "
                        "the outcome data, so label: gain cannot learn it",
                        "use route.router.label: good_enough, or add varied outcomes",
                    )
        ys.append(y)
    return ys


def _strata(y: np.ndarray) -> np.ndarray:
    """A 1-D class per row for stratified splits (gain labels are two columns)."""
    return y if y.ndim == 1 else y[:, 0] * 2 + y[:, 1]


def _folds(outcomes: Outcomes, y: np.ndarray, k: int, seed: int):
    """Grouped folds when there are enough groups (evaluation on unseen topics), else stratified."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    groups = outcomes.groups
    strata = _strata(y)
    if len(set(groups.tolist())) >= k:
        return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups))
    k = max(2, min(k, int(np.bincount(strata)[np.bincount(strata) > 0].min())))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, strata))


def cross_fit_scores(
    kind: str,
    label: str,
    feats: PromptFeatures,
    y: np.ndarray,
    folds,
    *,
    knn_k: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold scores: each row scored by a scorer fitted without its fold."""
    out = np.zeros(len(y), dtype=np.float64)
    for tr, te in folds:
        ytr = y[tr] if y.ndim == 2 else y[tr, None]
        if any(ytr[:, c].min() == ytr[:, c].max() for c in range(ytr.shape[1])):
            out[te] = 0.5  # a fold with one class cannot rank its rows; leave them tied
            continue
        scorer = make_scorer(kind, label, knn_k=knn_k, seed=seed)
        out[te] = scorer.fit(feats.subset(tr), y[tr]).predict(feats.subset(te))
    return out


class Router:
    """A fitted router over ``config.tiers``; thread-safe for concurrent ``decide`` calls."""

    def __init__(
        self,
        config: RouteConfig,
        scorers: list[Scorer],
        threshold: float,
        meta: dict | None = None,
        *,
        embed_cache_path: str | os.PathLike | None = None,
        embedder=None,
    ):
        if len(scorers) != len(config.tiers) - 1:
            raise ZimoError(
                f"router has {len(scorers)} scorers for {len(config.tiers)} tiers",
                "refit it with `zimo route fit`",
            )
        self.config = config
        self.scorers = scorers
        self.threshold = float(threshold)
        self.meta = meta or {}
        self.embed_cache_path = embed_cache_path
        # A fitted LMEmbedder when route.router.embedder names an LM layer; None: MiniLM.
        self.embedder = embedder

    @property
    def tier_names(self) -> list[str]:
        return self.config.tier_names

    @property
    def needs_embeddings(self) -> bool:
        return any(s.needs_embeddings for s in self.scorers)

    def features(self, prompts: Sequence[str]) -> PromptFeatures:
        return build_features(
            prompts,
            embeddings=self.needs_embeddings,
            max_seq_length=self.config.router.max_seq_length,
            cache_path=self.embed_cache_path,
            dtype=self.config.router.embed_dtype,
            embedder=self.embedder,
        )

    def scores(self, prompts: Sequence[str] | str) -> np.ndarray:
        """``(n, tiers - 1)``: P(tier i is good enough) for each non-strongest tier."""
        if isinstance(prompts, str):
            prompts = [prompts]
        feats = self.features(list(prompts))
        return np.stack([s.predict(feats) for s in self.scorers], axis=1)

    def decide_many(self, prompts: Sequence[str]) -> list[tuple[str, float]]:
        """(tier name, score) per prompt; the score is the deciding tier's P(good enough)."""
        sc = self.scores(prompts)
        tiers = assign_tiers(sc, self.threshold)
        out = []
        for row, t in zip(sc, tiers, strict=True):
            score = float(row[t]) if t < len(row) else float(row.max())
            out.append((self.tier_names[t], score))
        return out

    def decide(self, prompt: str) -> tuple[str, float]:
        """The tier to answer ``prompt`` and the router's score for it."""
        if not isinstance(prompt, str):
            raise ZimoError(f"router.decide needs a prompt string, got {type(prompt).__name__}")
        return self.decide_many([prompt])[0]

    def tier(self, name: str):
        """The tier config called ``name``; a ConfigError names the known tiers otherwise."""
        return self.config.tier(name)

    # -- persistence --------------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``router.joblib`` (the scorers) and ``router.json`` (config + metadata)."""
        import joblib

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "router.joblib") as tmp:
            joblib.dump({"scorers": self.scorers, "threshold": self.threshold,
                         "embedder": self.embedder}, tmp)  # fmt: skip
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "threshold": self.threshold,
            **self.meta,
        }
        write_text_atomic(out / "router.json", json.dumps(meta, indent=2, default=float))
        return out

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, embed_cache_path: str | os.PathLike | None = None
    ) -> Router:
        """Load a router saved by :meth:`save` (a folder with router.joblib + router.json)."""
        import joblib

        p = Path(path)
        if not (p / "router.joblib").exists() or not (p / "router.json").exists():
            raise ZimoError(f"no fitted router at {p}", "run `zimo route fit <project>` first")
        meta = json.loads((p / "router.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ZimoError(
                f"router at {p} has format {meta.get('format_version')}, this zimo reads "
                f"{FORMAT_VERSION}",
                "refit it with `zimo route fit`",
            )
        blob = joblib.load(p / "router.joblib")
        cfg = RouteConfig.model_validate(meta.pop("config"))
        meta.pop("format_version", None)
        meta.pop("threshold", None)
        return cls(
            cfg,
            blob["scorers"],
            blob["threshold"],
            meta,
            embed_cache_path=embed_cache_path,
            embedder=blob.get("embedder"),
        )


def fit_router(
    outcomes: Outcomes,
    cfg: RouteConfig | dict,
    out_dir: str | os.PathLike | None = None,
    *,
    embed_cache_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> Router:
    """Learn a router from outcome data, calibrate it to ``cfg.target``, save it to ``out_dir``.

    Raises DataError for one-class or too little data, ConfigError for bad config, and
    :class:`~zimo.route.calibrate.TargetUnreachable` (with the best reachable point) when the
    target cannot be met even on the calibration data.
    """
    cfg = parse_route_config(cfg)
    if list(outcomes.tiers) != cfg.tier_names:
        raise DataError(
            f"outcome tiers {outcomes.tiers} differ from route.tiers {cfg.tier_names}",
            "load the outcomes with the configured tier names (cheapest first)",
        )
    t0 = time.perf_counter()
    rc = cfg.router
    ys = training_labels(outcomes, rc.label)
    scorer_kind = rc.kind
    needs_embeddings = make_scorer(scorer_kind, rc.label).needs_embeddings
    embedder_spec = resolve_embedder(rc.embedder)  # auto -> what this machine runs fast
    embedder = None
    if needs_embeddings and parse_embedder(embedder_spec) is not None:
        embedder = LMEmbedder(embedder_spec, max_tokens=rc.max_seq_length, dtype=rc.embed_dtype)
    feats = build_features(
        outcomes.prompts,
        embeddings=needs_embeddings and embedder is None,  # MiniLM's vectors, if any
        max_seq_length=rc.max_seq_length,
        cache_path=embed_cache_path,
        progress=progress,
        dtype=rc.embed_dtype,
        groups=outcomes.groups,
    )
    if embedder is not None:
        # Standardised with the statistics of all outcome prompts (no labels involved).
        feats.emb = embedder.fit_transform(
            outcomes.prompts, cache_path=embed_cache_path, progress=progress
        )
    oof = np.zeros((len(outcomes), len(ys)))
    for j, y in enumerate(ys):
        folds = _folds(outcomes, y, rc.folds, rc.seed)
        oof[:, j] = cross_fit_scores(
            scorer_kind, rc.label, feats, y, folds, knn_k=rc.knn_k, seed=rc.seed
        )
    costs = tier_costs(outcomes.prompts, cfg)
    point = choose_threshold(
        oof,
        outcomes.quality,
        costs,
        quality_target=cfg.target.quality,
        max_cost=cfg.target.max_cost,
    )
    scorers = [
        make_scorer(scorer_kind, rc.label, knn_k=rc.knn_k, seed=rc.seed).fit(feats, y) for y in ys
    ]
    q = outcomes.quality
    meta = {
        "kind": scorer_kind,
        "label": rc.label,
        "embedder": embedder_spec if needs_embeddings else None,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "data": outcomes.summary(),
        "calibration": point,
        "cross_fitted": evaluate_scores(oof[:, 0], q[:, 0], q[:, -1]),
    }
    router = Router(
        cfg,
        scorers,
        point["threshold"],
        meta,
        embed_cache_path=embed_cache_path,
        embedder=embedder,
    )
    if out_dir is not None:
        router.save(out_dir)
    log.info("router %s fitted: threshold %.4f, %s", scorer_kind, point["threshold"], point)
    return router


def evaluate_router(
    router: Router,
    outcomes: Outcomes,
    out_dir: str | os.PathLike | None = None,
) -> dict:
    """Metrics of a fitted router on (held-out) outcome data, with random and oracle baselines.

    Returns APGR / CPT(50%) / CPT(80%) between the cheapest and the strongest tier, the
    operating point at the router's calibrated threshold (quality ratio, cost, tier shares),
    and the sweep of all thresholds. With ``out_dir``, also writes ``eval.json`` and the
    cost–quality plot ``curve.png``.
    """
    if list(outcomes.tiers) != router.tier_names:
        raise DataError(
            f"outcome tiers {outcomes.tiers} differ from the router's tiers {router.tier_names}"
        )
    sc = router.scores(outcomes.prompts)
    q = outcomes.quality
    costs = tier_costs(outcomes.prompts, router.config)
    rows = np.arange(len(q))
    a = assign_tiers(sc, router.threshold)
    chosen = q[rows, a]
    result = {
        "router": evaluate_scores(sc[:, 0], q[:, 0], q[:, -1]),
        "random": random_expected(q[:, 0], q[:, -1]),
        "oracle": evaluate_scores(oracle_scores(q[:, 0], q[:, -1]), q[:, 0], q[:, -1]),
        "operating_point": {
            "threshold": router.threshold,
            "quality": float(chosen.mean()),
            "quality_ratio": float(chosen.mean() / max(q[:, -1].mean(), 1e-12)),
            "cost_per_1k": float(costs[rows, a].mean() * 1000),
            "share": {t: float(np.mean(a == j)) for j, t in enumerate(router.tier_names)},
            "target": router.config.target.model_dump(),
        },
        "sweep": sweep(sc, q, costs, max_points=100),
        "data": outcomes.summary(),
    }
    if out_dir is not None:
        from zimo.route.plot import plot_curves

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(result, indent=2, default=float), "utf-8")
        plot_curves(
            {router.meta.get("kind", "router"): sc[:, 0]},
            q[:, 0],
            q[:, -1],
            out / "curve.png",
            title=f"{router.tier_names[0]} vs {router.tier_names[-1]}",
        )
    return result
