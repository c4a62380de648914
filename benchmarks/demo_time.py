"""The issue's `make demo` timing on a CPU kind: `zimo build examples/sms-fraud` from an existing
venv, per stage, by the wall clock a user waits on.

    python benchmarks/demo_time.py --kind avx2 [--out FILE]

Copies examples/sms-fraud (without any `.zimo` state) to a temp dir and runs `zimo build` there
as `make demo` does, in a child process with the kind's environment: ``native`` as detected,
``avx2`` the AVX2-only kind emulated on a bf16 CPU (``cpu_infer.AVX2_ENV``). Records each
stage's seconds (the build's own "done in" lines), the whole build's wall and child CPU time,
the load average before and after, the eval report's spam F1 and latency per system, the
label path's weights, and the CPU. Set-up (creating the venv, installing wheels) is not part
of it: it depends on the network, not on the CPU kind. Writes
``benchmarks/results/demo_time.<kind>.json``; run it on a quiet machine, once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from cpu_infer import AVX2_ENV  # noqa: E402
from image_build_time import zimo  # noqa: E402

STAGE = re.compile(r"✓ (\w+)\s+done\S* in ([0-9.]+)s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=["native", "avx2"], default="avx2")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from zimo.hw import cpu_info

    forced = AVX2_ENV if args.kind == "avx2" else {}
    os.environ.update(forced)  # the child inherits it
    out = args.out or ROOT / "benchmarks" / "results" / f"demo_time.{args.kind}.json"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "sms-fraud"
        shutil.copytree(ROOT / "examples" / "sms-fraud", proj, ignore=shutil.ignore_patterns(".zimo"))  # fmt: skip
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        build_s, r = zimo("build", proj, cwd=Path(tmp))
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise SystemExit(f"zimo build failed: {r.stderr.strip()[-2000:]}")
        evals = list((proj / ".zimo" / "artifacts" / "eval").iterdir())
        metrics = json.loads((evals[0] / "metrics.json").read_text())
    stages = {m.group(1): float(m.group(2)) for m in STAGE.finditer(r.stderr + r.stdout)}
    systems = {
        name: {k: s.get(k) for k in ("spam_f1", "latency_ms_p50", "throughput_rps", "weights")}
        for name, s in metrics["systems"].items()
    }
    report = {
        "benchmark": "demo_time",
        "kind": args.kind,
        "emulated": bool(forced),
        "forced_env": forced,
        "cpu": cpu_info(),
        "command": "zimo build <copy of examples/sms-fraud> (what `make demo` runs; venv exists)",
        "wall_s": round(build_s, 1),
        "stages_s": stages,
        "train_plus_eval_s": round(stages.get("train", 0) + stages.get("eval", 0), 1),
        "child_cpu_s": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 1),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "systems": systems,
        "spam_f1_finetuned": systems.get("finetuned", {}).get("spam_f1"),
    }
    from zimo.fileio import write_json_atomic

    write_json_atomic(out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
