"""decide() latency of the default router next to the ensemble before its gbm member joined.

    python benchmarks/route_decide_latency.py [--prompts 40] [--out FILE]

Both routers are fitted the same way on the same subsample of the shared MMLU outcomes (40
prompts per subject, MiniLM vectors from the benchmark's disk cache), then timed on the same
unseen ~100-token prompts, interleaved (each prompt goes to both routers in turn, so both see
the same load). Each call records wall time and this thread's CPU time; the load average
before and after goes into the JSON. Run it through /tmp/prompts/timed or on a quiet machine.
Writes ``benchmarks/results/route_decide_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from route_mmlu import (  # noqa: E402
    CACHE,
    DEFAULT_DATA,
    RESULTS,
    _ms,
    _timed,
    labels_for,
    latency_config,
    subsample,
    unseen_prompts,
)
from zimo.hw import cpu_has_fast_bf16, cpu_info, set_threads  # noqa: E402
from zimo.route.outcomes import load_outcome_csvs  # noqa: E402
from zimo.route.scorers import (  # noqa: E402
    ENSEMBLE_FOLDS,
    ENSEMBLE_MEMBERS,
    EnsembleScorer,
    build_features,
    ensemble_member,
)

PREVIOUS = ("length", "logreg", "knn", "features")  # the default before gbm joined


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--out", type=Path, default=RESULTS / "route_decide_latency.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threads = set_threads()
    from zimo.embeddings import Embedder
    from zimo.route.router import Router

    o = load_outcome_csvs(DEFAULT_DATA, ["weak", "strong"])
    sub = subsample(o, 40, seed=1)
    cfg = latency_config({"embedder": "minilm"})
    feats = build_features(sub.prompts, cache_path=CACHE, groups=sub.groups)
    y = labels_for(sub, "gain")
    t = time.perf_counter()
    routers = {}
    fit_s = {}
    for name, members in (("previous", PREVIOUS), ("default", ENSEMBLE_MEMBERS)):
        t = time.perf_counter()
        ens = EnsembleScorer([ensemble_member(k, "gain") for k in members], folds=ENSEMBLE_FOLDS)
        routers[name] = Router(cfg, [ens.fit(feats, y)], 0.5)
        fit_s[name] = round(time.perf_counter() - t, 2)
        routers[name].decide("warm-up prompt")  # the embedder loads once per process
    tok = Embedder().token_counts(o.prompts[:3000])
    # A distinct suffix per router as well, so no cache answers either.
    prompts = unseen_prompts(o, tok, args.prompts)
    load0 = os.getloadavg()
    times = {k: ([], []) for k in routers}
    for p in prompts:
        for name, r in routers.items():
            w, c = _timed(r.decide, [f"{p} ({name})"])
            times[name][0].extend(w)
            times[name][1].extend(c)
    load1 = os.getloadavg()
    rows = {
        k: {
            "members": list(PREVIOUS if k == "previous" else ENSEMBLE_MEMBERS),
            "wall_ms_p50": _ms(w, 50),
            "wall_ms_p95": _ms(w, 95),
            "cpu_ms_p50": _ms(c, 50),
            "cpu_ms_p95": _ms(c, 95),
            "fit_s_on_subsample": fit_s[k],
        }
        for k, (w, c) in times.items()
    }
    result = {
        "benchmark": "route_decide_latency",
        "prompts": args.prompts,
        "prompt_tokens": "90-110",
        "fit_prompts": len(sub),
        "embedder": "minilm",
        "embed_dtype": "bfloat16" if cpu_has_fast_bf16() else "float32",
        "routers": rows,
        "ratio_default_vs_previous": {
            "wall_p50": round(rows["default"]["wall_ms_p50"] / rows["previous"]["wall_ms_p50"], 3),
            "cpu_p50": round(rows["default"]["cpu_ms_p50"] / rows["previous"]["cpu_ms_p50"], 3),
        },
        "threads": threads,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in load1],
        "emulated_isa": os.environ.get("ATEN_CPU_CAPABILITY") or None,
        "cpu_info": cpu_info(),
    }
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result["routers"], indent=1), result["ratio_default_vs_previous"])


if __name__ == "__main__":
    main()
