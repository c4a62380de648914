"""Do features from the embedded LM (gecko) help the pre-call router on unseen subjects?

    python benchmarks/route_lm_features.py [--per-subject N] [--repeats R] [--quick]

Side by side on one per-subject subsample of the shared MMLU outcomes, grouped K-fold by
subject (so every score is on subjects the router never saw), the same logistic-regression
gain router (P(cheap right) − P(strong right)) on:

- ``surface``: the cheap surface statistics alone;
- ``emb``: MiniLM embedding + surface (what the ``logreg`` router uses);
- ``+lms``: + gecko's surprisal statistics of the prompt (perplexity, its spread, the next-token
  entropy at the end; :mod:`zimo.route.lm_features`);
- ``+lmh``: + gecko's mean-pooled middle-layer hidden state;
- ``lmh``: gecko's hidden state instead of MiniLM.

Differences are paired by fold (same held-out subjects). The decide()-time price is measured
too: CPU ms of one gecko forward pass on a ~100-token prompt next to one MiniLM pass.
Writes ``benchmarks/results/route_lm_features.{json,md}``; gecko features are cached in
``benchmarks/results/cache/gecko_features.sqlite`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from route_mmlu import CACHE, DEFAULT_DATA, RESULTS, labels_for, subsample  # noqa: E402
from zimo.hw import cpu_info, set_threads  # noqa: E402
from zimo.route.metrics import evaluate_scores  # noqa: E402
from zimo.route.outcomes import load_outcome_csvs  # noqa: E402
from zimo.route.scorers import build_features  # noqa: E402

LM_CACHE = RESULTS / "cache" / "gecko_features.sqlite"
VARIANTS = ["surface", "surface+lms", "emb", "emb+lms", "emb+lmh", "emb+lms+lmh", "lmh"]
BASE = "emb"
BASES = ("emb", "surface")  # paired differences against both: what gecko adds to each


def _design(variant: str, idx, f, scal, hid, fit_on=None):
    """Feature blocks for ``variant``; non-embedding blocks standardised on the training rows.

    Each block is scaled to a comparable total norm (MiniLM's unit vector x 8, as the logreg
    router does; the 576-d hidden state to the same), so one C serves every variant.
    """
    from sklearn.preprocessing import StandardScaler

    blocks = [("surface", f.surface)]
    if "emb" in variant:
        blocks.append(("emb", f.emb))
    if "lms" in variant:
        blocks.append(("lms", scal))
    if "lmh" in variant:
        blocks.append(("lmh", hid))
    out = []
    for name, x in blocks:
        if name == "emb":
            out.append(x[idx] * 8.0)
            continue
        sc = StandardScaler().fit(x[fit_on if fit_on is not None else idx])
        w = 8.0 / np.sqrt(x.shape[1]) if name == "lmh" else 1.0
        out.append(sc.transform(x[idx]) * w)
    return np.hstack(out)


def study(o, f, scal, hid, folds: int, repeats: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    y = labels_for(o, "gain")
    qw, qs = o.quality[:, 0], o.quality[:, 1]
    per = {v: [] for v in VARIANTS}
    for rep in range(repeats):
        splits = GroupKFold(n_splits=folds, shuffle=True, random_state=rep).split(
            o.prompts, groups=o.groups
        )
        for tr, te in splits:
            for v in VARIANTS:
                xtr = _design(v, tr, f, scal, hid)
                xte = _design(v, te, f, scal, hid, fit_on=tr)
                p = [
                    LogisticRegression(C=0.05, max_iter=3000)
                    .fit(xtr, y[tr, c])
                    .predict_proba(xte)[:, 1]
                    for c in (0, 1)
                ]
                per[v].append(evaluate_scores(0.5 * (1 + p[0] - p[1]), qw[te], qs[te]))
    out = {}
    for v, ms in per.items():
        a = np.array([m["apgr"] for m in ms])
        c = np.array([m["cpt50"] for m in ms])
        out[v] = {
            "apgr": {"mean": float(a.mean()), "std": float(a.std())},
            "cpt50": {"mean": float(c.mean()), "std": float(c.std())},
            "folds": len(ms),
        }
        for base in BASES:
            da = a - np.array([m["apgr"] for m in per[base]])
            dc = c - np.array([m["cpt50"] for m in per[base]])
            out[v][f"paired_vs_{base}"] = {
                "apgr": {"mean": float(da.mean()), "se": float(da.std(ddof=1) / np.sqrt(len(a)))},
                "cpt50": {"mean": float(dc.mean()), "se": float(dc.std(ddof=1) / np.sqrt(len(c)))},
            }
    return out


def forward_cost(prompts: list[str], n: int = 12) -> dict:
    """CPU ms (this thread) and wall ms of one gecko feature pass vs one MiniLM pass."""
    from zimo.embeddings import Embedder
    from zimo.route.lm_features import lm_features

    emb = Embedder(max_seq_length=256, cache_size=0, dtype="auto")
    emb.embed(["warm-up"])
    lm_features(["warm-up"])
    out: dict[str, dict] = {}
    for name, fn in (
        ("minilm", lambda t: emb.embed([t])),
        ("gecko", lambda t: lm_features([t])),
    ):
        wall, cpu = [], []
        for i, p in enumerate(prompts[:n]):
            t, c = time.perf_counter(), time.thread_time()
            fn(f"{p} [{name} {i}]")
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
        out[name] = {
            "cpu_ms_p50": round(1000 * float(np.median(cpu)), 1),
            "wall_ms_p50": round(1000 * float(np.median(wall)), 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-subject", type=int, default=25, help="prompts per subject")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="8 prompts per subject, one repeat")
    ap.add_argument("--out", type=Path, default=RESULTS / "route_lm_features.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_threads()
    if args.quick:
        args.per_subject, args.repeats = 8, 1
    t0, load0 = time.perf_counter(), os.getloadavg()
    full = load_outcome_csvs(DEFAULT_DATA, ["weak", "strong"])
    o = subsample(full, args.per_subject, seed=0)
    f = build_features(o.prompts, cache_path=CACHE, groups=o.groups)
    from zimo.route.lm_features import lm_features

    t = time.perf_counter()
    scal, hid = lm_features(o.prompts, cache_path=LM_CACHE, progress=True)
    lm_s = time.perf_counter() - t
    res = study(o, f, scal, hid, args.folds, args.repeats)
    from zimo.embeddings import Embedder

    tok = Embedder().token_counts(full.prompts[:3000])
    hundred = [full.prompts[i] for i in np.flatnonzero((tok >= 90) & (tok <= 110))]
    cost = forward_cost(hundred)
    result = {
        "benchmark": "route_lm_features",
        "per_subject": args.per_subject,
        "prompts": len(o),
        "folds": args.folds,
        "repeats": args.repeats,
        "results": res,
        "decide_cost_100_tokens": cost,
        "lm_features_s": round(lm_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "loadavg": {"start": list(load0), "end": list(os.getloadavg())},
        "cpu_info": cpu_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = [
        "# route_lm_features: gecko features for the pre-call router (unseen subjects)",
        "",
        f"{len(o)} prompts ({args.per_subject} per subject), grouped {args.folds}-fold by "
        f"subject x {args.repeats} repeats; logistic-regression gain router on each feature set; "
        "paired Δ = mean per-fold difference (APGR / CPT(50%)) to `emb` (MiniLM + surface) and "
        "to `surface`, ± standard error.",
        "",
        "| features | APGR mean ± sd | CPT(50%) mean ± sd | paired Δ vs emb | paired Δ vs surface |",
        "|---|---|---|---|---|",
    ]
    for v, m in res.items():
        cells = []
        for base in BASES:
            d = m[f"paired_vs_{base}"]
            cells.append(
                f"{d['apgr']['mean']:+.3f} ± {d['apgr']['se']:.3f} / "
                f"{d['cpt50']['mean']:+.3f} ± {d['cpt50']['se']:.3f}"
            )
        lines.append(
            f"| {v} | {m['apgr']['mean']:.3f} ± {m['apgr']['std']:.3f} | "
            f"{m['cpt50']['mean']:.3f} ± {m['cpt50']['std']:.3f} | {cells[0]} | {cells[1]} |"
        )
    lines += [
        "",
        "Price per request (~100-token prompt, one pass, p50): MiniLM "
        f"{cost['minilm']['cpu_ms_p50']:.0f} ms CPU ({cost['minilm']['wall_ms_p50']:.0f} wall), "
        f"gecko {cost['gecko']['cpu_ms_p50']:.0f} ms CPU ({cost['gecko']['wall_ms_p50']:.0f} "
        f"wall); load average {load0[0]:.1f} at the start. The router's budget is 50 ms p50.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
