"""Router quality on unseen subjects: APGR, CPT(50%), CPT(80%) (RouteLLM terms).

    python benchmarks/route_mmlu.py [--train DIR] [--test DIR] [--quick]
    python benchmarks/route_mmlu.py --holdout 12 [--seeds 0 .. 9] [--confidence-per-subject N]

Outcome CSVs ``prompt,<weak>,<strong>`` (one per subject; default ``../shared/data/router_mmlu``).
Without ``--test``: grouped K-fold by subject, repeated with different subject-to-fold
assignments, so every router is always scored on subjects it never saw; we report the mean,
median and spread over all folds, plus the APGR of the pooled out-of-fold scores (one number
over all prompts, far less noisy than a per-fold mean: a fold whose weak-strong gap is small
turns small quality changes into large PGR swings). With ``--test``: fit on ``--train`` (default:
the shared data), score on ``--test``. With ``--holdout K``: the ``--test`` experience repeated
over fixed splits of the training subjects (K held out per seed), every row's mean, spread and
worst split (``route_mmlu_holdout.json`` + ``.md``).

Writes ``benchmarks/results/route_mmlu.json`` + ``.md`` + ``.png`` (the cost–quality curves).
Embeddings are cached in ``benchmarks/results/cache/minilm.sqlite`` (git-ignored).
Target (issue 9): APGR ≥ 0.60 and CPT(50%) ≤ 0.35 averaged across folds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zimo.hw import cpu_has_fast_bf16, cpu_info, set_threads  # noqa: E402
from zimo.route.lm_features import AUTO_LM  # noqa: E402
from zimo.route.metrics import (  # noqa: E402
    evaluate_scores,
    oracle_scores,
    random_expected,
)
from zimo.route.outcomes import Outcomes, load_outcome_csvs  # noqa: E402
from zimo.route.scorers import ENSEMBLE_MEMBERS, build_features, make_scorer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache" / "minilm.sqlite"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "router_mmlu"
TARGET = {"apgr": 0.60, "cpt50": 0.35}

# (name, kind, label): the probe (MiniLM + logistic regression on a good-enough label)
# next to the length baseline and our routers, which rank by the expected gain of escalating.
# LM hidden states the "ensemble-<model>@<layer>" rows run on instead of MiniLM
# (route.router.embedder; layers picked by benchmarks/route_lm_layers.py). ``--lm-embedders``
# overrides them.
LM_EMBEDDERS = ["gecko@10", "gecko@12"]
LM_CACHE = RESULTS / "cache" / "lm_hidden.sqlite"
# Kind "derived": the row is read off the fitted ensemble of the same fold (its members, or the
# ensemble with another standardisation/weighting), so the variants are compared on exactly
# the same member fits, at a fraction of the cost of refitting each.
ROUTERS_FULL = [
    ("length", "length", "gain"),
    ("features", "derived", "gain"),
    ("logreg-good_enough", "logreg", "good_enough"),
    ("knn", "derived", "gain"),
    ("logreg", "derived", "gain"),
    ("mlp", "mlp", "gain"),
    ("ensemble-before", "derived", "gain"),
    ("ensemble-insample", "derived", "gain"),
    ("ensemble-stacked", "derived", "gain"),
    ("ensemble", "ensemble", "gain"),
    *[(f"ensemble-{spec}", "ensemble-lm", "gain") for spec in LM_EMBEDDERS],
]
DERIVED_DOC = {
    "length": "log prompt length alone, monotone (P(cheap right) only; fitted on its own)",
    "features": "the ensemble's surface-feature member alone",
    "knn": "the ensemble's kNN member alone",
    "logreg": "the ensemble's logistic-regression member alone",
    "ensemble-before": "the ensemble before this change: its length member predicts P(cheap "
    "right) only, members standardised by their in-sample spread, equal weights",
    "ensemble-insample": "gain-estimating members (length included), standardised by their "
    "in-sample spread, equal weights",
    "ensemble-stacked": "members standardised by their cross-fitted (unseen-subject) spread, "
    "combined with stacked non-negative weights fitted on those cross-fitted scores",
    "ensemble": "members standardised by their cross-fitted (unseen-subject) spread, equal "
    "weights (route.router.embedder: minilm)",
    "ensemble-<model>@<layer>": "the same ensemble with its logistic-regression and kNN members "
    "on the LM hidden state (route.router.embedder <model>@<layer>: mean-pooled output of the "
    "model's first <layer> layers, standardised with the training fold's statistics) instead of "
    "MiniLM's (fitted on its own)",
}
TRUNCATION: dict[str, int] = {}  # MiniLM truncation per router (default 256)
DEFAULT_KIND = "ensemble"
# Too slow to refit 15 times on two busy cores: scored on the first repeat's folds only.
ONE_REPEAT = {"mlp"}
# --quick: prompts per subject (60: under 3 minutes on 2 cores from empty caches, MiniLM and
# the gecko@12 pass included), one repeat; no MLP, and of the LM rows only the one that
# `embedder: auto` picks on bf16 CPUs.
QUICK_PER_SUBJECT = 60
ROUTERS_QUICK = [
    r for r in ROUTERS_FULL if r[0] != "mlp" and (r[1] != "ensemble-lm" or r[0].endswith(AUTO_LM))
]


def ensemble_rows(ens, ftr, fte, ytr) -> dict[str, np.ndarray]:
    """Scores of the fitted ensemble and of the rows derived from it (see ``DERIVED_DOC``)."""
    from zimo.route.scorers import ENSEMBLE_MEMBERS

    raw = {k: m.predict(fte) for k, m in zip(ENSEMBLE_MEMBERS, ens.members, strict=True)}
    out = {k: v for k, v in raw.items() if k != "length"}
    z = [(raw[k] - mu) / sd for k, (mu, sd) in zip(ENSEMBLE_MEMBERS, ens.stats, strict=True)]
    out["ensemble-stacked"] = np.sum([w * x for w, x in zip(ens.stack_w, z, strict=True)], 0)
    ins = [m.predict(ftr) for m in ens.members]
    out["ensemble-insample"] = np.mean(
        [
            (raw[k] - p.mean()) / (p.std() or 1.0)
            for k, p in zip(ENSEMBLE_MEMBERS, ins, strict=True)
        ],
        axis=0,
    )
    # The ensemble as it was: the monotone length router (P(cheap right) only) as its length
    # member, the other members as fitted, in-sample statistics.
    old_len = make_scorer("length", "gain").fit(ftr, ytr)
    old = [old_len.predict(ftr)] + ins[1:]
    old_raw = [old_len.predict(fte)] + [raw[k] for k in ENSEMBLE_MEMBERS[1:]]
    assert ENSEMBLE_MEMBERS[0] == "length"
    out["ensemble-before"] = np.mean(
        [(r - p.mean()) / (p.std() or 1.0) for r, p in zip(old_raw, old, strict=True)], axis=0
    )
    out["ensemble"] = ens.predict(fte)
    return out


def labels_for(o: Outcomes, label: str) -> np.ndarray:
    if label == "gain":
        return (o.quality >= 0.5).astype(np.int64)
    if label == "good_enough":
        return o.good_enough(0)
    return (o.quality[:, 0] >= 0.5).astype(np.int64)


def subsample(o: Outcomes, per_group: int, seed: int = 0) -> Outcomes:
    rng = np.random.default_rng(seed)
    keep = []
    for g in sorted(set(o.groups.tolist())):
        idx = np.flatnonzero(o.groups == g)
        keep.extend(rng.choice(idx, min(per_group, len(idx)), replace=False).tolist())
    return o.subset(np.sort(keep))


def summarize(values: list[float]) -> dict:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "median": float(statistics.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


def lm_features_for(f, raw: np.ndarray, tr: np.ndarray, spec: str):
    """``f`` with the LM vectors in place of MiniLM's, standardised on the rows ``tr`` (what
    ``fit_router`` does with its training prompts)."""
    from dataclasses import replace

    from zimo.route.lm_features import LMEmbedder

    # replace(): only the vectors change; the form statistics stay (the gbm member reads them).
    return replace(f, emb=LMEmbedder(spec).fit(raw[tr]).transform(raw))


def grouped_cv(
    o, feats, routers, folds: int, repeats: int, progress, lm_raw=None
) -> tuple[dict, dict]:
    from sklearn.model_selection import GroupKFold

    qw, qs = o.quality[:, 0], o.quality[:, -1]
    per_fold: dict[str, list[dict]] = {name: [] for name, _, _ in routers}
    per_fold["random"], per_fold["oracle"] = [], []
    pooled: dict[str, list[dict]] = {name: [] for name, _, _ in routers}
    curves = {}
    task = progress.add_task("grouped CV", total=repeats * folds * len(routers))
    weights: list[list[float]] = []  # the stacked ensemble's member weights per fold
    for rep in range(repeats):
        splits = list(
            GroupKFold(n_splits=folds, shuffle=True, random_state=rep).split(
                o.prompts, groups=o.groups
            )
        )
        oof = {name: np.zeros(len(o)) for name, _, _ in routers}
        for tr, te in splits:
            fsub = {k: (f.subset(tr), f.subset(te)) for k, f in feats.items()}
            per_fold["random"].append(random_expected(qw[te], qs[te]))
            per_fold["oracle"].append(
                evaluate_scores(oracle_scores(qw[te], qs[te]), qw[te], qs[te])
            )
            derived: dict[str, np.ndarray] = {}
            if any(kind in ("derived", "ensemble") for _, kind, _ in routers):
                ftr, fte = fsub[256]
                ens = make_scorer("ensemble", "gain").fit(ftr, labels_for(o, "gain")[tr])
                derived = ensemble_rows(ens, ftr, fte, labels_for(o, "gain")[tr])
                weights.append(ens.stack_w.tolist())
            for name, kind, label in routers:
                if rep > 0 and name in ONE_REPEAT:
                    progress.advance(task)
                    continue
                y = labels_for(o, label)
                ftr, fte = fsub[TRUNCATION.get(name, 256)]
                if kind in ("derived", "ensemble"):
                    s = derived[name]
                elif kind == "ensemble-lm":
                    spec = name.removeprefix("ensemble-")
                    f = lm_features_for(feats[256], lm_raw[spec], tr, spec)
                    s = (
                        make_scorer("ensemble", label)
                        .fit(f.subset(tr), y[tr])
                        .predict(f.subset(te))
                    )
                else:
                    s = make_scorer(kind, label).fit(ftr, y[tr]).predict(fte)
                oof[name][te] = s
                m = evaluate_scores(s, qw[te], qs[te])
                m["test_subjects"] = len(set(o.groups[te].tolist()))
                per_fold[name].append(m)
                progress.advance(task)
        for name in oof:
            if rep == 0 or name not in ONE_REPEAT:
                pooled[name].append(evaluate_scores(oof[name], qw, qs))
        if rep == 0:
            curves = oof
    summary = {}
    for name, ms in per_fold.items():
        summary[name] = {
            "apgr": summarize([m["apgr"] for m in ms]),
            "cpt50": summarize([m["cpt50"] for m in ms]),
            "cpt80": summarize([m["cpt80"] for m in ms]),
            "folds": len(ms),
            "fold_gaps": [round(m["gap"], 4) for m in ms],
        }
        if name in pooled:
            summary[name]["pooled"] = {
                k: float(np.mean([p[k] for p in pooled[name]])) for k in ("apgr", "cpt50", "cpt80")
            }
    summary["oracle"]["pooled"] = evaluate_scores(oracle_scores(qw, qs), qw, qs)
    summary["random"]["pooled"] = random_expected(qw, qs)
    if weights:
        from zimo.route.scorers import ENSEMBLE_MEMBERS

        w = np.array(weights)
        summary["ensemble-stacked"]["member_weights"] = {
            k: {
                "mean": float(w[:, j].mean()),
                "min": float(w[:, j].min()),
                "max": float(w[:, j].max()),
            }
            for j, k in enumerate(ENSEMBLE_MEMBERS)
        }
    summary = paired_vs(summary, per_fold, BASELINE)
    return summary, curves


BASELINE = "ensemble-before"


def paired_vs(summary: dict, per_fold: dict, base: str) -> dict:
    """Each router's per-fold difference to ``base`` on the same folds (mean ± standard error):
    the fold-to-fold spread is mostly the folds' own difficulty, which a paired difference
    cancels, so this says whether a change is real where the two means alone cannot."""
    if base not in per_fold:
        return summary
    b = per_fold[base]
    for name, ms in per_fold.items():
        if name in (base, "random", "oracle") or len(ms) < 2:
            continue
        d = {"folds": len(ms)}
        for key in ("apgr", "cpt50", "cpt80"):
            # Folds are appended in the same order for every router (a one-repeat router
            # holds the first repeat's folds), so index i is the same held-out subjects.
            x = np.array([m[key] - b[i][key] for i, m in enumerate(ms)])
            d[key] = {"mean": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(len(x)))}
        summary[name][f"paired_vs_{base}"] = d
    return summary


def train_test(train, test, ftr, fte, routers, progress, lm_raw=None) -> tuple[dict, dict]:
    qw, qs = test.quality[:, 0], test.quality[:, -1]
    out, curves = {}, {}
    task = progress.add_task("train/test", total=len(routers))
    derived: dict[str, np.ndarray] = {}
    if any(kind in ("derived", "ensemble") for _, kind, _ in routers):
        ens = make_scorer("ensemble", "gain").fit(ftr[256], labels_for(train, "gain"))
        derived = ensemble_rows(ens, ftr[256], fte[256], labels_for(train, "gain"))
    for name, kind, label in routers:
        msl = TRUNCATION.get(name, 256)
        if kind in ("derived", "ensemble"):
            s = derived[name]
        elif kind == "ensemble-lm":
            from dataclasses import replace

            from zimo.route.lm_features import LMEmbedder

            # lm_raw: train rows then test rows; standardised on the training rows only.
            n, spec = len(train), name.removeprefix("ensemble-")
            emb = LMEmbedder(spec).fit(lm_raw[spec][:n]).transform(lm_raw[spec])
            f_tr = replace(ftr[256], emb=emb[:n])
            f_te = replace(fte[256], emb=emb[n:], groups=None)
            s = make_scorer("ensemble", label).fit(f_tr, labels_for(train, label)).predict(f_te)
        else:
            s = make_scorer(kind, label).fit(ftr[msl], labels_for(train, label)).predict(fte[msl])
        curves[name] = s
        out[name] = evaluate_scores(s, qw, qs)
        progress.advance(task)
    out["random"] = random_expected(qw, qs)
    out["oracle"] = evaluate_scores(oracle_scores(qw, qs), qw, qs)
    return out, curves


def _timed(fn, items) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``fn(item)`` per item (CPU: this thread's time; the embedder
    runs a single request on the calling thread, so that is all the work the call did)."""
    wall, cpu = [], []
    for it in items:
        t, c = time.perf_counter(), time.thread_time()
        fn(it)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return wall, cpu


def _ms(xs: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(xs, q)), 2)


def latency_config(router: dict):
    """The two priced tiers the decide() timings route between, with these router settings."""
    from zimo.route.config import RouteConfig

    return RouteConfig.model_validate(
        {
            "tiers": [
                {"name": "weak", "price_per_1m_tokens": 0.6},
                {"name": "strong", "price_per_1m_tokens": 10},
            ],
            "router": router,
        }
    )


def unseen_prompts(o: Outcomes, tok: np.ndarray, n: int) -> list[str]:
    """``n`` prompts of about 100 tokens (``tok``: token counts of ``o.prompts``' head), each
    made unique so that neither cache answers them."""
    cands = [o.prompts[i] for i in np.flatnonzero((tok >= 90) & (tok <= 110))]
    return [f"{cands[i % len(cands)]} [{i}]" for i in range(n)]


def decide_latency(o: Outcomes, lm_specs: list[str], n: int = 40) -> dict:
    """p50/p95 of Router.decide for ~100-token prompts not seen before (no cache hit).

    Wall time on a shared machine measures the other jobs as much as the router, so each
    timing also records this thread's CPU time and the load average around it; the variants
    (MiniLM float32 at 256 tokens — the old setting —, float32 at 128, bf16 at 128) run side
    by side on the same prompts, interleaved, so their ratio holds whatever the load.
    """
    from zimo.embeddings import Embedder
    from zimo.route.router import Router

    sub = subsample(o, 40, seed=1)
    cfg = latency_config({"kind": DEFAULT_KIND})
    rc = cfg.router
    feats = build_features(sub.prompts, cache_path=CACHE, groups=sub.groups)
    scorers = [make_scorer(rc.kind, "gain").fit(feats, labels_for(sub, "gain"))]
    router = Router(cfg, scorers, 0.5)
    tok = Embedder().token_counts(o.prompts[:3000])
    prompts = unseen_prompts(o, tok, n)
    router.decide("warm-up prompt")  # weights load once per process
    # The same ensemble on each LM hidden state (no MiniLM pass), fitted the same way.
    from dataclasses import replace

    from zimo.route.lm_features import LMEmbedder

    lm_routers = {}
    for spec in lm_specs:
        lm_emb = LMEmbedder(spec, cache_size=0)
        vecs = lm_emb.fit_transform(sub.prompts, cache_path=LM_CACHE)
        lm_feats = replace(feats, emb=vecs)
        lm_routers[spec] = Router(
            cfg,
            [make_scorer(rc.kind, "gain").fit(lm_feats, labels_for(sub, "gain"))],
            0.5,
            embedder=lm_emb,
        )
        lm_routers[spec].decide("warm-up prompt")
    variants = {
        "minilm_fp32_256": Embedder(max_seq_length=256, cache_size=0, dtype="float32"),
        "minilm_fp32_128": Embedder(max_seq_length=128, cache_size=0, dtype="float32"),
        "minilm_bf16_128": Embedder(max_seq_length=128, cache_size=0, dtype="bfloat16"),
    }
    for e in variants.values():
        e.embed(["warm-up"])
    load_before = os.getloadavg()
    times: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ["decide", *variants, *lm_routers]
    }
    for p in prompts:  # interleaved: every variant sees the same load
        for name, fn in [("decide", router.decide)] + [
            (k, lambda t, e=e: e.embed([t + " (timing)"])) for k, e in variants.items()
        ]:
            w, c = _timed(fn, [p])
            times[name][0].extend(w)
            times[name][1].extend(c)
    # The LM routers in a block of their own, interleaved with each other: MiniLM embeds a
    # request on one torch thread and the LM on all cores, and switching the thread count
    # between calls (an artefact of timing both in one loop) cost the LM call ~5-10 ms.
    for p in prompts:
        for spec, r in lm_routers.items():
            w, c = _timed(r.decide, [f"{p} (lm)"])
            times[spec][0].extend(w)
            times[spec][1].extend(c)
    load_after = os.getloadavg()
    cached_w, cached_c = _timed(router.decide, prompts[:10])  # LRU answers the embedding
    longs = [o.prompts[i] for i in np.flatnonzero((tok >= 230) & (tok <= 300))]
    long_w, long_c = _timed(router.decide, [f"{p} [long {i}]" for i, p in enumerate(longs[:10])])
    lm_long = {
        spec: _timed(r.decide, [f"{p} [lm long {i}]" for i, p in enumerate(longs[:10])])
        for spec, r in lm_routers.items()
    }
    light = Router(cfg, [make_scorer("length", "gain").fit(feats, labels_for(sub, "gain"))], 0.5)
    light_w, _ = _timed(light.decide, prompts)
    out = {
        "router_kind": rc.kind,
        "max_seq_length": rc.max_seq_length,
        "embed_dtype": rc.embed_dtype
        if rc.embed_dtype != "auto"
        else ("bfloat16" if cpu_has_fast_bf16() else "float32"),
        "prompt_tokens": "90-110",
        "prompts": n,
        "decide_ms_p50": _ms(times["decide"][0], 50),
        "decide_ms_p95": _ms(times["decide"][0], 95),
        "decide_cpu_ms_p50": _ms(times["decide"][1], 50),
        "decide_cpu_ms_p95": _ms(times["decide"][1], 95),
        "variants": {
            k: {
                "wall_ms_p50": _ms(times[k][0], 50),
                "cpu_ms_p50": _ms(times[k][1], 50),
            }
            for k in variants
        },
        "decide_long_prompt_230_300_tokens": {
            "wall_ms_p50": _ms(long_w, 50),
            "cpu_ms_p50": _ms(long_c, 50),
        },
        "lm_routers": {
            spec: {
                "embedder": spec,
                "dtype": "bfloat16" if cpu_has_fast_bf16() else "float32",
                "decide_ms_p50": _ms(times[spec][0], 50),
                "decide_ms_p95": _ms(times[spec][0], 95),
                "decide_cpu_ms_p50": _ms(times[spec][1], 50),
                "decide_cpu_ms_p95": _ms(times[spec][1], 95),
                "long_prompt_230_300_tokens": {
                    "wall_ms_p50": _ms(lm_long[spec][0], 50),
                    "cpu_ms_p50": _ms(lm_long[spec][1], 50),
                },
            }
            for spec in lm_routers
        },
        "decide_cached_prompt_ms": round(1000 * float(np.median(cached_w)), 2),
        "decide_length_router_ms": round(1000 * float(np.median(light_w)), 3),
        "target_ms_p50": 50,
        "threads": set_threads(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "cores": os.cpu_count(),
        "niceness": os.nice(0),
    }
    return out


def embed_throughput(o: Outcomes, n: int = 128) -> list[dict]:
    """MiniLM prompts/s on real MMLU prompts by batch size and truncation (no cache)."""
    from zimo.embeddings import Embedder

    texts = subsample(o, max(1, n // 45 + 1), seed=2).prompts[:n]
    out = []
    for bs, msl in ((32, 256), (8, 256), (64, 256), (32, 128)):
        emb = Embedder(max_seq_length=msl, cache_size=0)
        emb.embed(["warm-up"])
        t = time.perf_counter()
        emb.embed(texts, batch_size=bs)
        dt = time.perf_counter() - t
        out.append({"batch_size": bs, "max_seq_length": msl, "prompts_per_s": len(texts) / dt})
    return out


def target_notes(results: dict, mode: str, names: list[str]) -> list[str]:
    """Plain statements of which routers meet which half of the target."""

    def val(m: dict, key: str) -> float:
        return m[key]["mean"] if mode == "grouped_cv" else m[key]

    best = min(names, key=lambda n: val(results[n], "cpt50"))
    a, c = val(results[best], "apgr"), val(results[best], "cpt50")
    both = [n for n in names if val(results[n], "apgr") >= 0.6 and val(results[n], "cpt50") <= 0.35]
    if both:
        return [f"target met by: {', '.join(both)}"]
    return [
        "TARGET MISSED: no router reaches both APGR >= 0.60 and CPT(50%) <= 0.35 "
        f"(fold means); lowest CPT(50%) is {best}: APGR {a:.3f} ({'met' if a >= 0.6 else 'missed'}), "
        f"CPT(50%) {c:.3f} ({'met' if c <= 0.35 else f'missed by {c - 0.35:.3f}'})"
    ]


def latency_note(lat: dict) -> str:
    lms = lat.get("lm_routers") or {}
    return (
        f"decide() p50 {lat['decide_ms_p50']:.1f} ms wall / {lat['decide_cpu_ms_p50']:.1f} ms CPU "
        "(MiniLM); "
        + "".join(
            f"{x['decide_ms_p50']:.1f} ms wall / {x['decide_cpu_ms_p50']:.1f} ms CPU ({k}); "
            for k, x in lms.items()
        )
        + f"vs target 50 ms, at load average {lat['loadavg_before'][0]:.1f} on {lat['cores']} "
        "cores (wall time on a loaded machine includes waiting for a core; CPU time is what the "
        "call costs)"
    )


def update_latency(out: Path) -> None:
    """Time decide() alone and write it into an existing result (JSON + markdown).

    The quality run takes tens of minutes on shared cores; the timing needs a quiet minute,
    which rarely coincides, so it can be taken separately.
    """
    result = json.loads(out.read_text(encoding="utf-8"))
    data = load_outcome_csvs(Path(result["test"] or result["train"]), ["weak", "strong"])
    lat = decide_latency(data, LM_EMBEDDERS)
    lat["measured_separately_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["latency"] = lat
    result["notes"] = [n for n in result["notes"] if not n.startswith("decide() p50")]
    result["notes"].insert(0, latency_note(lat))
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_md(result, out.with_suffix(".md"))
    print(latency_note(lat))


def write_md(result: dict, path: Path) -> None:
    lines = [
        "# route_mmlu: routers on unseen MMLU subjects",
        "",
        f"mode: {result['mode']}; prompts: {result['data']['prompts']}; "
        f"subjects: {result['data']['groups']}; quick: {result['quick']}; "
        f"CPU: {result['cpu_info']['model']} x{result['cpu_info']['cores']}",
        "",
    ]
    res = result["results"]
    if result["mode"] == "grouped_cv":
        lines += [
            "| router | folds | APGR mean ± sd (median) | APGR worst fold | CPT(50%) mean ± sd |"
            " CPT(50%) worst fold | CPT(80%) mean | pooled APGR |"
            f" paired Δ vs {BASELINE}: APGR / CPT(50%) (± se) | target met |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, m in res.items():
            pooled = m.get("pooled", {}).get("apgr")
            met = result["target_met"].get(name, "")
            d = m.get(f"paired_vs_{BASELINE}")
            delta = (
                f"{d['apgr']['mean']:+.3f} ± {d['apgr']['se']:.3f} / "
                f"{d['cpt50']['mean']:+.3f} ± {d['cpt50']['se']:.3f}"
                if d
                else ""
            )
            lines.append(
                f"| {name} | {m['folds']} | {m['apgr']['mean']:.3f} ± {m['apgr']['std']:.3f} "
                f"({m['apgr']['median']:.3f}) | {m['apgr']['min']:.3f} | "
                f"{m['cpt50']['mean']:.3f} ± {m['cpt50']['std']:.3f} | {m['cpt50']['max']:.3f}"
                f" | {m['cpt80']['mean']:.3f} | {'' if pooled is None else f'{pooled:.3f}'} | "
                f"{delta} | {met} |"
            )
        w = res.get("ensemble-stacked", {}).get("member_weights")
        if w:
            lines += [
                "",
                "Stacked member weights (ensemble-stacked; mean, min–max over folds): "
                + ", ".join(
                    f"{k} {v['mean']:.2f} ({v['min']:.2f}–{v['max']:.2f})" for k, v in w.items()
                ),
            ]
        lines += ["", *[f"- **{k}**: {v}" for k, v in DERIVED_DOC.items()]]
    else:
        lines += ["| router | APGR | CPT(50%) | CPT(80%) |", "|---|---|---|---|"]
        for name, m in res.items():
            lines.append(f"| {name} | {m['apgr']:.3f} | {m['cpt50']:.3f} | {m['cpt80']:.3f} |")
    lat = result.get("latency")
    if lat:
        v = lat["variants"]
        lines += [
            "",
            f"Router.decide ({lat['router_kind']}, MiniLM {lat['embed_dtype']} truncated at "
            f"{lat['max_seq_length']} tokens, ~100-token unseen prompt, {lat['threads']} torch "
            f"threads, 1 per request): p50 **{lat['decide_ms_p50']:.1f} ms** wall "
            f"(p95 {lat['decide_ms_p95']:.1f}), **{lat['decide_cpu_ms_p50']:.1f} ms CPU**; "
            f"load average {lat['loadavg_before'][0]:.1f} → {lat['loadavg_after'][0]:.1f} on "
            f"{lat['cores']} cores (niceness {lat['niceness']}). Target ≤ 50 ms p50.",
            "",
            "| MiniLM alone (same prompts, interleaved) | wall p50 ms | CPU p50 ms |",
            "|---|---|---|",
            *[f"| {k} | {x['wall_ms_p50']:.1f} | {x['cpu_ms_p50']:.1f} |" for k, x in v.items()],
            "",
            f"Long prompt (230-300 tokens, truncated at {lat['max_seq_length']}): p50 "
            f"{lat['decide_long_prompt_230_300_tokens']['wall_ms_p50']:.1f} ms wall, "
            f"{lat['decide_long_prompt_230_300_tokens']['cpu_ms_p50']:.1f} ms CPU. "
            f"Repeated prompt (LRU): {lat['decide_cached_prompt_ms']:.2f} ms; length-only router "
            f"{lat['decide_length_router_ms']:.3f} ms.",
        ]
        lms = lat.get("lm_routers") or {}
        if lms:
            lines += [
                "",
                "Router.decide on an LM hidden state instead of MiniLM (same prompts, right after, "
                "the LM routers interleaved with each other; torch threads = cores):",
                "",
                "| embedder | dtype | wall p50 ms | wall p95 ms | CPU p50 ms | 230-300 tokens, "
                "wall p50 ms |",
                "|---|---|---|---|---|---|",
                *[
                    f"| {k} | {x['dtype']} | **{x['decide_ms_p50']:.1f}** | "
                    f"{x['decide_ms_p95']:.1f} | {x['decide_cpu_ms_p50']:.1f} | "
                    f"{x['long_prompt_230_300_tokens']['wall_ms_p50']:.1f} |"
                    for k, x in lms.items()
                ],
            ]
    for row in result.get("embed_throughput") or []:
        lines.append(
            f"- MiniLM batch {row['batch_size']}, max {row['max_seq_length']} tokens: "
            f"{row['prompts_per_s']:.1f} prompts/s"
        )
    lines += ["", *[f"- {n}" for n in result["notes"]], ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# -- --holdout: what a new user sees ---------------------------------------------------------
# Fit on the subjects of the training data, score on a folder of subjects the router never saw,
# as `route_mmlu.py --train A --test B` does, repeated over deterministic splits of the shared
# subjects (seed s: the sorted subject names permuted by numpy's default_rng(s), the first K held
# out). The seeds are fixed in advance (0..n-1), not picked by outcome. Every row of one split is
# scored on the same held-out subjects, so rows compare pairwise by split.
HOLDOUT_MEMBERS = (
    "length",
    "logreg",
    "knn",
    "features",
    "form",
    "logreg-topic_removed",
    "knn-topic_removed",
    "logreg-C0.01",
    "logreg-pca32",
    "gbm",
)
# Equal-weight means of the members' cross-fitted z-scores (the ensemble's own combination).
HOLDOUT_COMBOS = {
    "ensemble-previous": ("length", "logreg", "knn", "features"),
    "ensemble": ENSEMBLE_MEMBERS,
    "ensemble+form": ("length", "logreg", "knn", "features", "form"),
    "ensemble-topic_removed": ("length", "logreg-topic_removed", "knn-topic_removed", "features"),
    "ensemble-topic_removed+form": (
        "length",
        "logreg-topic_removed",
        "knn-topic_removed",
        "features",
        "form",
    ),
    "topic_free": ("length", "features", "form"),
    "form+knn": ("form", "knn"),
    "ensemble-no_logreg": ("length", "knn", "features"),
    "ensemble-logreg_C0.01": ("length", "logreg-C0.01", "knn", "features"),
    "ensemble-logreg_pca32": ("length", "logreg-pca32", "knn", "features"),
}
HOLDOUT_DOC = {
    "length": "log prompt length alone (the stand-alone length router, P(cheap right))",
    "features": "the 11 surface statistics (ensemble member)",
    "form": "surface + 15 topic-free form statistics (options, negation, statements, numbers, "
    "compute verbs, code, blanks), logistic regression C=0.1 (route.router.kind: form)",
    "logreg / knn": "the ensemble's MiniLM members",
    "logreg-topic_removed / knn-topic_removed": "the same members on MiniLM vectors with the top "
    "16 principal directions of the training subjects' mean vectors projected out",
    "ensemble-previous": "the default router before gbm joined (length, logreg, knn, features; "
    "cross-fitted z-scores, equal weights), MiniLM: the reference of every paired Δ",
    "gbm": "LightGBM on surface + form statistics + the top 32 principal components of the "
    "training prompts' MiniLM vectors (fixed settings: 200 trees, learning rate 0.03, 15 "
    "leaves, at least 50 prompts per leaf)",
    "ensemble": "the default router: length, logreg, knn, features, gbm (cross-fitted z-scores, "
    "equal weights), MiniLM",
    "ensemble+form": "the previous ensemble plus the form member",
    "ensemble-topic_removed(+form)": "the previous ensemble with topic-removed logreg/knn (and the form "
    "member)",
    "topic_free": "length + features + form: no prompt vector at all",
    "logreg-C0.01": "the logreg member with 5x stronger regularisation (C 0.01 instead of 0.05)",
    "logreg-pca32": "the logreg member on the top 32 principal components of the training "
    "prompts' MiniLM vectors (fewer embedding dimensions), re-normalised",
    "ensemble-no_logreg / ensemble-logreg_C0.01 / ensemble-logreg_pca32": "the previous "
    "ensemble without its logreg member, or with it replaced by the variant",
    "form+knn": "the form member and the MiniLM kNN member",
    "sub:*": "the confidence subsample (a fixed --confidence-per-subject prompts per subject), "
    "the same splits, every row refitted on it; paired Δ vs sub:ensemble",
    "sub:conf": "log length + the embedded LM's answer confidence (zimo.route.lm_features."
    "lm_confidence: letter entropy, top, margin, log letter mass, next-token entropy), "
    "logistic regression",
    "sub:form+conf": "the form member with the confidence columns added",
    "sub:ensemble+form+conf / sub:topic_free+conf": "the ensemble / topic_free combination with "
    "form+conf as its form member",
}


CONF_CACHE = RESULTS / "cache" / "lm_conf.sqlite"
CONF_TOKENS = 128  # the last 128 tokens: the options and the answer cue


def confidence_subsample(o: Outcomes, per_subject: int) -> np.ndarray:
    """Row indices of a fixed subsample, independent of the splits: each subject's rows in a
    random order (seed 12345 + its rank), the first ``per_subject`` kept, so a larger sample
    contains a smaller one (and its cached LM passes)."""
    keep = []
    for r, g in enumerate(sorted(set(o.groups.tolist()))):
        idx = np.random.default_rng(12345 + r).permutation(np.flatnonzero(o.groups == g))
        keep.extend(idx[:per_subject].tolist())
    return np.sort(np.array(keep))


def holdout_splits(groups: np.ndarray, k: int, seeds: list[int]) -> list[tuple[int, list[str]]]:
    subjects = sorted(set(groups.tolist()))
    if not 0 < k < len(subjects):
        raise SystemExit(f"--holdout {k}: need 0 < K < {len(subjects)} subjects")
    return [
        (s, sorted(subjects[i] for i in np.random.default_rng(s).permutation(len(subjects))[:k]))
        for s in seeds
    ]


class _PCAEmb:
    """A scorer on the top ``k`` principal components of the training prompt vectors."""

    def __init__(self, inner, k: int = 32):
        self.inner, self.k = inner, k
        self.needs_embeddings = True

    def _project(self, f):
        from zimo.route.scorers import PromptFeatures

        e = (f.emb - self.mean) @ self.basis.T
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return PromptFeatures(f.surface, e, f.groups, f.form)

    def fit(self, f, y):
        self.mean = f.emb.mean(0)
        self.basis = np.linalg.svd(f.emb - self.mean, full_matrices=False)[2][: self.k]
        self.inner.fit(self._project(f), y)
        return self

    def predict(self, f):
        return self.inner.predict(self._project(f))


def _holdout_member(name: str):
    """A gain member by name: the product's kinds, plus the benchmark-only variants."""
    from zimo.route.scorers import GainScorer, LogRegScorer, ensemble_member

    variants = {
        "logreg-C0.01": lambda: LogRegScorer(C=0.01),
        "logreg-pca32": lambda: _PCAEmb(LogRegScorer(), 32),
    }
    if name not in variants:
        return ensemble_member(name, "gain")
    g = GainScorer("logreg")
    g.cheap, g.strong = variants[name](), variants[name]()
    return g


def _member_scores(names, ftr, fte, y) -> dict[str, np.ndarray]:
    """Cross-fitted z-scores on the test rows for each member, and the equal-weight combos."""
    from zimo.route.scorers import ENSEMBLE_FOLDS, EnsembleScorer

    ens = EnsembleScorer([_holdout_member(k) for k in names], folds=ENSEMBLE_FOLDS)
    ens.fit(ftr, y)
    z = {
        k: (m.predict(fte) - mu) / sd
        for k, m, (mu, sd) in zip(names, ens.members, ens.stats, strict=True)
    }
    return z


def run_holdout(args, o: Outcomes, feats, progress) -> dict:
    from zimo.route.scorers import FormScorer, GainScorer, PromptFeatures

    qw, qs = o.quality[:, 0], o.quality[:, -1]
    y = labels_for(o, "gain")
    splits = holdout_splits(o.groups, args.holdout, args.seeds)
    per_split: dict[str, list[dict]] = {}
    task = progress.add_task("holdout", total=len(splits))

    def record(name, s, te):
        m = evaluate_scores(s, qw[te], qs[te])
        per_split.setdefault(name, []).append(m)

    for _seed, test_subjects in splits:
        te = np.flatnonzero(np.isin(o.groups, test_subjects))
        tr = np.flatnonzero(~np.isin(o.groups, test_subjects))
        ftr, fte = feats.subset(tr), feats.subset(te)
        per_split.setdefault("random", []).append(random_expected(qw[te], qs[te]))
        record("oracle", oracle_scores(qw[te], qs[te]), te)
        record("length", make_scorer("length", "gain").fit(ftr, y[tr]).predict(fte), te)
        z = _member_scores(HOLDOUT_MEMBERS, ftr, fte, y[tr])
        for k in HOLDOUT_MEMBERS[1:]:
            record(k, z[k], te)
        for name, members in HOLDOUT_COMBOS.items():
            record(name, np.mean([z[k] for k in members], 0), te)
        progress.advance(task)

    conf = conf_idx = None
    if args.confidence_per_subject:
        # After the main rows: the LM pass is the slow part, and a run can find it cached by a
        # pass started beside it.
        from zimo.route.lm_features import lm_confidence

        conf_idx = confidence_subsample(o, args.confidence_per_subject)
        # One torch thread: on 2 shared cores two spinning OpenMP threads ran far slower.
        import torch

        torch.set_num_threads(1)
        conf = lm_confidence(
            [o.prompts[i] for i in conf_idx],
            model=args.confidence_model,
            max_tokens=CONF_TOKENS,
            cache_path=CONF_CACHE,
            progress=True,
        )
    for _seed, test_subjects in splits if conf is not None else []:
        # The same split on the confidence subsample: every row there re-fitted on it, so the
        # rows with and without the LM's confidence see the same prompts.
        pos = {i: j for j, i in enumerate(conf_idx)}
        ctr = conf_idx[~np.isin(o.groups[conf_idx], test_subjects)]
        cte = conf_idx[np.isin(o.groups[conf_idx], test_subjects)]
        c_tr, c_te = conf[[pos[i] for i in ctr]], conf[[pos[i] for i in cte]]
        gtr, gte = feats.subset(ctr), feats.subset(cte)

        def with_conf(f, extra):
            return PromptFeatures(f.surface, f.emb, f.groups, np.hstack([f.form, extra]))

        zs = _member_scores(("length", "logreg", "knn", "features", "form"), gtr, gte, y[ctr])
        # The form member with the confidence columns added, standardised the same way.
        zc = _member_scores(("form",), with_conf(gtr, c_tr), with_conf(gte, c_te), y[ctr])["form"]
        ens4 = [zs[k] for k in HOLDOUT_COMBOS["ensemble-previous"]]
        record("sub:ensemble", np.mean(ens4, 0), cte)
        record("sub:ensemble+form", np.mean(ens4 + [zs["form"]], 0), cte)
        record("sub:ensemble+form+conf", np.mean(ens4 + [zc], 0), cte)
        record("sub:form", zs["form"], cte)
        record("sub:form+conf", zc, cte)
        record("sub:topic_free", np.mean([zs["length"], zs["features"], zs["form"]], 0), cte)
        record("sub:topic_free+conf", np.mean([zs["length"], zs["features"], zc], 0), cte)
        # The LM's confidence with the prompt's length only.
        g = GainScorer("form")
        g.cheap, g.strong = FormScorer(), FormScorer()
        short = (
            PromptFeatures(gtr.surface[:, :1], None, None, c_tr),
            PromptFeatures(gte.surface[:, :1], None, None, c_te),
        )
        record("sub:conf", g.fit(short[0], y[ctr]).predict(short[1]), cte)

    summary = {}
    base = per_split["ensemble-previous"]
    for name, ms in per_split.items():
        d = {
            k: summarize([m[k] for m in ms]) | {"per_split": [round(m[k], 4) for m in ms]}
            for k in ("apgr", "cpt50", "cpt80")
        }
        d["splits"] = len(ms)
        ref = per_split["sub:ensemble"] if name.startswith("sub:") else base
        if name not in ("ensemble-previous", "sub:ensemble", "random", "oracle") and len(ms) > 1:
            d["paired_vs_ensemble"] = {
                k: {
                    "mean": float(np.mean([m[k] - r[k] for m, r in zip(ms, ref, strict=True)])),
                    "se": float(
                        np.std([m[k] - r[k] for m, r in zip(ms, ref, strict=True)], ddof=1)
                        / np.sqrt(len(ms))
                    ),
                }
                for k in ("apgr", "cpt50")
            }
        summary[name] = d
    return {
        "splits": [{"seed": s, "test_subjects": t} for s, t in splits],
        "gaps": [round(m["gap"], 4) for m in per_split["oracle"]],
        "results": summary,
        "confidence": None
        if conf is None
        else {
            "model": args.confidence_model,
            "per_subject": args.confidence_per_subject,
            "prompts": int(len(conf_idx)),
        },
    }


def write_holdout_md(result: dict, path: Path) -> None:
    h = result["holdout"]
    lines = [
        "# route_mmlu --holdout: fitted on some subjects, scored on subjects it never saw",
        "",
        f"data: {result['train']} ({result['data']['prompts']} prompts, "
        f"{result['data']['groups']} subjects); {len(h['splits'])} splits, each holding out "
        f"{result['holdout_k']} subjects (seeds {', '.join(str(s['seed']) for s in h['splits'])}: "
        "the sorted subject names permuted by numpy default_rng(seed), the first K held out); "
        f"CPU: {result['cpu_info']['model']} x{result['cpu_info']['cores']}",
        "",
        "Worst split = the lowest APGR / highest CPT(50%) over the held-out subject groups. Paired "
        "Δ = mean over splits of (row − ensemble-previous, the default before gbm joined) on the "
        "same held-out subjects, ± standard error.",
        "",
        "| router | APGR mean ± sd | APGR worst / best | CPT(50%) mean ± sd | CPT(50%) worst | "
        "paired Δ vs ensemble-previous: APGR / CPT(50%) | APGR per split |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in h["results"].items():
        d = m.get("paired_vs_ensemble")
        delta = (
            f"{d['apgr']['mean']:+.3f} ± {d['apgr']['se']:.3f} / "
            f"{d['cpt50']['mean']:+.3f} ± {d['cpt50']['se']:.3f}"
            if d
            else ""
        )
        a, c = m["apgr"], m["cpt50"]
        lines.append(
            f"| {name} | {a['mean']:.3f} ± {a['std']:.3f} | {a['min']:.3f} / {a['max']:.3f} | "
            f"{c['mean']:.3f} ± {c['std']:.3f} | {c['max']:.3f} | {delta} | "
            f"{' '.join(f'{x:.3f}' for x in a['per_split'])} |"
        )
    lines += ["", "Held-out subjects per split:", ""]
    lines += [f"- seed {s['seed']}: {', '.join(s['test_subjects'])}" for s in h["splits"]]
    lines += ["", f"Weak–strong gap per split: {h['gaps']}", ""]
    if h["confidence"]:
        c = h["confidence"]
        lines += [
            f"`sub:` rows: a fixed subsample of {c['per_subject']} prompts per subject "
            f"({c['prompts']} prompts; the embedded LM's pass is too slow on these 2 cores for all "
            f"of them), the same splits, every row refitted on the subsample; their paired Δ is "
            f"vs `sub:ensemble`. Confidence model: {c['model']} (last 128 tokens).",
            "",
        ]
    lines += [f"- **{k}**: {v}" for k, v in HOLDOUT_DOC.items()]
    lines += ["", *[f"- {n}" for n in result["notes"]], ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def holdout_main(args) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    train_dir = args.train or DEFAULT_DATA
    o = load_outcome_csvs(train_dir, ["weak", "strong"])
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        feats = build_features(o.prompts, cache_path=CACHE, progress=True, groups=o.groups)
        h = run_holdout(args, o, feats, progress)
    load1 = os.getloadavg()
    notes = [
        f"run took {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU; "
        f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end "
        f"({os.cpu_count()} cores, shared with other jobs)"
    ]
    result = {
        "benchmark": "route_mmlu",
        "mode": "holdout",
        "holdout_k": args.holdout,
        "train": str(train_dir),
        "data": o.summary(),
        "holdout": h,
        "target": {"apgr": 0.60, "cpt50": 0.40, "note": "issue 23: on subjects outside the data"},
        "cpu_info": cpu_info(),
        "notes": notes,
    }
    out = (
        args.out if args.out != RESULTS / "route_mmlu.json" else RESULTS / "route_mmlu_holdout.json"
    )
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_holdout_md(result, out.with_suffix(".md"))
    for name, m in h["results"].items():
        print(
            f"{name:28s} APGR {m['apgr']['mean']:.3f} ± {m['apgr']['std']:.3f} "
            f"(worst {m['apgr']['min']:.3f})  CPT(50%) {m['cpt50']['mean']:.3f} "
            f"(worst {m['cpt50']['max']:.3f})"
        )
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=Path, default=None, help="outcome CSV folder to fit on")
    ap.add_argument("--test", type=Path, default=None, help="outcome CSV folder to score on")
    ap.add_argument("--quick", action="store_true", help="subsample, one repeat (< 3 min)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=None, help="CV repeats (default 3, quick 1)")
    ap.add_argument("--no-latency", action="store_true", help="skip the decide() timing")
    ap.add_argument("--skip", nargs="*", default=[], help="router rows to leave out (e.g. mlp)")
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="only time decide() (e.g. when the machine is quiet) and update --out in place",
    )
    ap.add_argument(
        "--lm-embedders",
        nargs="*",
        default=None,
        help=f"LM rows, <model>@<layer> (default {' '.join(LM_EMBEDDERS)})",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "route_mmlu.json")
    ap.add_argument(
        "--holdout",
        type=int,
        default=0,
        metavar="K",
        help="fit on all but K subjects, score on those K, once per --seeds (writes "
        "route_mmlu_holdout.json unless --out)",
    )
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(10)))
    ap.add_argument(
        "--confidence-per-subject",
        type=int,
        default=0,
        help="with --holdout: also compare rows with the embedded LM's answer confidence on a "
        "subsample of N prompts per subject",
    )
    ap.add_argument("--confidence-model", default="gecko")
    args = ap.parse_args()

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_threads()
    if args.latency_only:
        update_latency(args.out)
        return
    if args.holdout:
        holdout_main(args)
        return
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    if args.lm_embedders is not None:  # replace the LM rows
        lm_rows = [(f"ensemble-{x}", "ensemble-lm", "gain") for x in args.lm_embedders]
        base = [r for r in (ROUTERS_QUICK if args.quick else ROUTERS_FULL) if r[1] != "ensemble-lm"]
    else:
        lm_rows, base = [], ROUTERS_QUICK if args.quick else ROUTERS_FULL
    routers = [r for r in base + lm_rows if r[0] not in args.skip]
    lm_specs = [r[0].removeprefix("ensemble-") for r in routers if r[1] == "ensemble-lm"]
    repeats = args.repeats or (1 if args.quick else 3)
    train_dir = args.train or DEFAULT_DATA
    train = load_outcome_csvs(train_dir, ["weak", "strong"])
    test = load_outcome_csvs(args.test, ["weak", "strong"]) if args.test else None
    if args.quick:
        train = subsample(train, QUICK_PER_SUBJECT)
        test = subsample(test, QUICK_PER_SUBJECT) if test is not None else None
    notes = []
    timings = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        t = time.perf_counter()
        lengths = {TRUNCATION.get(r[0], 256) for r in routers}
        # Groups (subjects) travel with the features: the ensemble cross-fits its members on
        # unseen subjects inside each training fold.
        ftr = {
            m: build_features(
                train.prompts,
                max_seq_length=m,
                cache_path=CACHE,
                progress=True,
                groups=train.groups,
            )
            for m in lengths | {256}
        }
        fte = (
            {
                m: build_features(test.prompts, max_seq_length=m, cache_path=CACHE)
                for m in lengths | {256}
            }
            if test is not None
            else None
        )
        lm_raw = {}
        for name, kind, _ in routers:
            if kind == "ensemble-lm":
                from zimo.route.lm_features import lm_hidden, parse_embedder

                spec = name.removeprefix("ensemble-")
                model, layer = parse_embedder(spec)
                texts = list(train.prompts) + (list(test.prompts) if test is not None else [])
                lm_raw[spec] = lm_hidden(
                    texts, model=model, layer=layer, cache_path=LM_CACHE, progress=True
                )
        timings["embed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if test is None:
            mode = "grouped_cv"
            results, curves = grouped_cv(train, ftr, routers, args.folds, repeats, progress, lm_raw)
            qw, qs = train.quality[:, 0], train.quality[:, -1]
        else:
            mode = "train_test"
            results, curves = train_test(train, test, ftr, fte, routers, progress, lm_raw)
            qw, qs = test.quality[:, 0], test.quality[:, -1]
        timings["routers_s"] = time.perf_counter() - t
    latency = None
    if not args.no_latency:
        t = time.perf_counter()
        latency = decide_latency(train if test is None else test, lm_specs)
        timings["latency_s"] = time.perf_counter() - t
        notes.append(latency_note(latency))

    throughput = None
    if not args.quick and not args.no_latency:
        throughput = embed_throughput(train)

    def met(m: dict) -> bool:
        if mode == "grouped_cv":
            return m["apgr"]["mean"] >= TARGET["apgr"] and m["cpt50"]["mean"] <= TARGET["cpt50"]
        return m["apgr"] >= TARGET["apgr"] and m["cpt50"] <= TARGET["cpt50"]

    target_met = {name: met(results[name]) for name, _, _ in routers}
    notes.extend(target_notes(results, mode, [r[0] for r in routers]))
    if mode == "grouped_cv":
        gaps = results["random"]["fold_gaps"]
        notes.append(
            f"per-fold weak-strong gaps range {min(gaps):.3f}..{max(gaps):.3f}: folds with a "
            "small gap (e.g. holding high_school_mathematics, where the strong model scores "
            "3%) swing PGR widely, so compare the pooled APGR and the median as well"
        )
    from zimo.route.plot import plot_curves

    png = args.out.with_suffix(".png")
    plot_curves(curves, qw, qs, png, title="MMLU, unseen subjects (out-of-fold)")
    timings["total_s"] = time.perf_counter() - t0
    # CPU seconds of this process (all its threads): what the run costs on idle cores.
    timings["total_cpu_s"] = time.process_time() - c0
    load1 = os.getloadavg()
    if mode == "grouped_cv" and any(r[0] in ONE_REPEAT for r in routers):
        notes.append(
            f"{', '.join(sorted(ONE_REPEAT))} scored on the first repeat's {args.folds} folds "
            f"only (too slow to refit {repeats * args.folds} times here); the other routers on "
            f"{repeats * args.folds} folds ({repeats} repeats x {args.folds})"
        )
    notes.append(
        f"MiniLM vectors from the disk cache {CACHE.relative_to(ROOT)} where present (a cache "
        "seeded on a GPU from fp16-stored weights differs from CPU vectors by at most 3e-4); "
        f"missing prompts computed here (embedding took {timings['embed_s']:.0f} s)"
    )
    notes.append(
        f"run took {timings['total_s']:.0f} s wall, {timings['total_cpu_s']:.0f} s CPU; load "
        f"average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end ({os.cpu_count()} cores)"
    )
    result = {
        "benchmark": "route_mmlu",
        "mode": mode,
        "quick": args.quick,
        "train": str(train_dir),
        "test": str(args.test) if args.test else None,
        "folds": args.folds if mode == "grouped_cv" else None,
        "repeats": repeats if mode == "grouped_cv" else None,
        "data": (test or train).summary(),
        "routers": {
            name: {"kind": k, "label": lab, "max_seq_length": TRUNCATION.get(name, 256)}
            for name, k, lab in routers
        },
        "results": results,
        "target": TARGET,
        "target_met": target_met,
        "latency": latency,
        "embed_throughput": throughput,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "loadavg": {"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in load1]},
        "plot": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
        "cpu_info": cpu_info(),
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_md(result, args.out.with_suffix(".md"))
    for name in results:
        m = results[name]
        a = m["apgr"]["mean"] if mode == "grouped_cv" else m["apgr"]
        c = m["cpt50"]["mean"] if mode == "grouped_cv" else m["cpt50"]
        print(f"{name:20s} APGR {a:.3f}  CPT(50%) {c:.3f}")
    print(f"wrote {args.out} in {timings['total_s']:.0f}s")


if __name__ == "__main__":
    main()
