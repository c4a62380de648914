"""Label agreement of the int8 paths with fp32 on every test row of the demo's sub-model.

The issue's rule for int8 on CPUs without fast bf16: its labels agree with fp32's on >= 99.5%
of the demo's test rows. One run on one CPU kind (``--kind avx2``: the AVX2-only kind emulated,
as ``cpu_infer.py`` does), all 769 rows, batched (agreement only: no latency, so it can run on
a loaded machine); the reference is Zimo's eval path on fp32 weights (``ZIMO_INT8=0``), the
same decision rule (the sub-model's stored threshold) for every leg:

- ``int8_merged``: ``zimo eval``'s path, the adapter merged into the base before quantising;
- ``int8_unmerged``: LoRA on top of the int8 base;
- ``serve``: the serving engine's label requests (its default: the only loaded adapter merged).

    python benchmarks/int8_agreement.py --project /tmp/sms --kind avx2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(project: Path, rows: int | None) -> dict:
    import torch

    import cpu_infer as ci
    from zimo.hw import cpu_has_fast_bf16, serving_threads

    torch.set_num_threads(serving_threads())
    train_dir, test, meta = ci._project_rows(project)
    texts = [r["text"] for r in (test[:rows] if rows else test)]
    preds, legs = {}, {}
    t0 = time.perf_counter()
    for name, weights, merge in (("fp32", "fp32", False), ("int8_merged", "int8", True),
                                 ("int8_unmerged", "int8", False)):  # fmt: skip
        legs[name], preds[name] = ci.leg_zimo(train_dir, meta, texts, 2, weights, merge=merge)
        print(f"  {name} {legs[name]}", file=sys.stderr, flush=True)
    os.environ["ZIMO_INT8"] = "1"  # the engine on int8 on any kind, like the legs above
    legs["serve"], preds["serve"] = ci.leg_serve(train_dir, meta, texts, 2, serving_threads())
    ref = preds["fp32"]
    out = {"rows": len(texts), "bf16_path": cpu_has_fast_bf16(),
           "capability": torch.backends.cpu.get_cpu_capability(), "legs": {}}  # fmt: skip
    for name in ("int8_merged", "int8_unmerged", "serve"):
        same = sum(a == b for a, b in zip(preds[name], ref, strict=True))
        out["legs"][name] = {
            "agree": same,
            "agreement_with_fp32": round(same / len(ref), 4),
            "msgs_per_s": legs[name]["msgs_per_s"],
            **{k: legs[name][k] for k in ("adapter_merged", "merged_copy_mb") if k in legs[name]},
        }
    merged, unmerged = preds["int8_merged"], preds["int8_unmerged"]
    out["merged_vs_unmerged_agree"] = sum(a == b for a, b in zip(merged, unmerged, strict=True))
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", required=True, help="a built sms-fraud project")
    ap.add_argument("--kind", choices=["native", "avx2"], default="avx2")
    ap.add_argument("--rows", type=int, default=None, help="test rows (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/int8_agreement.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.project), args.rows)))
        return
    import cpu_infer as ci
    from zimo.fileio import write_json_atomic
    from zimo.hw import cpu_info

    forced = ci.AVX2_ENV if args.kind == "avx2" else {}
    cmd = [sys.executable, __file__, "--child", "--project", str(Path(args.project).resolve())]
    cmd += ["--rows", str(args.rows)] if args.rows else []
    p = subprocess.run(cmd, env={**os.environ, **forced}, stdout=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"the {args.kind} run failed (exit {p.returncode})")
    res = {"cpu": cpu_info(), "kind": args.kind, "forced": forced,
           "project": str(args.project), **json.loads(p.stdout.strip().splitlines()[-1])}  # fmt: skip
    res["rule"] = "int8 labels agree with fp32's on >= 99.5% of rows"
    write_json_atomic(Path(args.out), res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
