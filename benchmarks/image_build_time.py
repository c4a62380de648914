"""The issue's "done when" timing: `zimo init --template image` + `zimo build` with every default,
on a folder of real images, timed by the wall clock a user waits on.

    python benchmarks/image_build_time.py [--per-label 200] [--out FILE]

Writes ``--per-label`` CIFAR-10 train images per label (the original JPEG bytes, picked at
random with a fixed seed; 10 labels, so 2,000 by default) into one folder per label in a temp
directory — never into the repository: CIFAR-10 states no licence, so its files stay in
``../shared`` — then runs the two commands as a user would, with the project's default
budgets (the embedded default and the same-budget CNN baseline both train). Records the wall
time of each command (target: the whole build under 15 minutes on 2 cores), the CPU time of
the child processes, the load average before and after, each system's test accuracy from the
eval report, and the CPU kind. Writes ``benchmarks/results/image_build_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "cifar10"
TARGET_S = 15 * 60


def export_folders(dest: Path, per_label: int, seed: int) -> int:
    """CIFAR train JPEGs, ``per_label`` of each label, into ``dest/<label>/<n>.jpg``."""
    import pyarrow.parquet as pq

    t = pq.read_table(DATA / "train.parquet", columns=["image", "label"]).to_pydict()
    labels = [str(x) for x in t["label"]]
    rng = np.random.default_rng(seed)
    n = 0
    for lab in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == lab]
        (dest / lab).mkdir(parents=True)
        for i in rng.permutation(idx)[:per_label]:
            (dest / lab / f"{int(i)}.jpg").write_bytes(t["image"][int(i)])
            n += 1
    return n


def zimo(*args: str | Path, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    # The `zimo` command as installed, run by this interpreter (the venv's).
    cmd = [sys.executable, "-c", "import sys; from zimo.cli import main; sys.argv[0] = 'zimo'; main()",
           *map(str, args)]  # fmt: skip
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-label", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "image_build_time.json"
    )
    args = ap.parse_args()
    if not (DATA / "train.parquet").is_file():
        print(f"skipped: {DATA} not found (the CIFAR-10 parquet files)", file=sys.stderr)
        return
    from zimo.hw import cpu_info

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = export_folders(tmp / "photos", args.per_label, args.seed)
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        init_s, r = zimo(
            "init", tmp / "shelf", "--template", "image", "--data", tmp / "photos", cwd=tmp
        )
        if r.returncode != 0:
            raise SystemExit(f"zimo init failed: {r.stderr.strip()}")
        build_s, r = zimo("build", tmp / "shelf", cwd=tmp)
        if r.returncode != 0:
            raise SystemExit(f"zimo build failed: {r.stderr.strip()[-2000:]}")
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        evals = list((tmp / "shelf" / ".zimo" / "artifacts" / "eval").iterdir())
        metrics = json.loads((evals[0] / "metrics.json").read_text())
        summaries = {}
        for d in (tmp / "shelf" / ".zimo" / "artifacts").iterdir():
            if d.name.startswith("train"):
                for a in d.iterdir():
                    if (a / "train_summary.json").is_file():
                        summaries[d.name] = json.loads((a / "train_summary.json").read_text())
    load_after = os.getloadavg()
    total = init_s + build_s
    report = {
        "benchmark": "image_build_time",
        "cpu": cpu_info(),
        "env": {
            k: os.environ[k]
            for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "ZIMO_BF16")
            if k in os.environ
        },  # fmt: skip
        "images": n,
        "data": "CIFAR-10 train JPEGs from ../shared/data/cifar10, one folder per label in a temp dir",
        "config": "zimo init --template image defaults, unchanged",
        "wall_s": {"init": round(init_s, 1), "build": round(build_s, 1), "total": round(total, 1)},
        "child_cpu_s": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 1),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "headline": metrics["headline"],
        "train": summaries,
        "target": {"build_under_15_min": total < TARGET_S},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
