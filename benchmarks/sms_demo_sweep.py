"""Which training settings make the SMS demo's sub-model good enough within its time budget.

Each configuration copies ``examples/sms-fraud`` (with its ingest/curate/split artifacts, so
every run sees the same split) to a temporary folder, overrides the ``train:`` section, runs
``zimo build`` with one torch thread (so runs are comparable on a shared machine: CPU seconds
count) and the fine-tuned system only, and records spam F1 on the 769-row test split with the
decision threshold training chose on the dev split, plus training time.

Seeds matter: the seed picks the training subset, the LoRA init and the batch order, and moved
test spam F1 by ~0.03 at 1,200 rows; compare settings across seeds, not one run.

Usage: ``python benchmarks/sms_demo_sweep.py [--only NAME ...]``. Writes
``benchmarks/results/sms_demo_sweep.json`` and ``.md``. Needs a built ``examples/sms-fraud``
(``make demo``) for the shared split. About 7 minutes per configuration on one core.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "examples" / "sms-fraud"
OUT = ROOT / "benchmarks" / "results"

CONFIGS: dict[str, dict] = {
    "strat-800-lr2e-3": {"max_train_rows": 800},
    "strat-1200-lr2e-3": {"max_train_rows": 1200},
    "strat-1200-lr2e-3-seed1": {"max_train_rows": 1200, "seed": 1},
    "strat-1200-lr3e-3": {"max_train_rows": 1200, "lr": 3e-3},
    "strat-1200-lr3e-3-seed1": {"max_train_rows": 1200, "lr": 3e-3, "seed": 1},
    "balanced-1200-lr2e-3": {"max_train_rows": 1200, "balance_labels": True},
    "balanced-1200-lr2e-3-seed1": {"max_train_rows": 1200, "balance_labels": True, "seed": 1},
    "strat-1600-lr2e-3": {"max_train_rows": 1600},
    "strat-1200-lr2e-3-2epochs": {"max_train_rows": 1200, "epochs": 2},
    "strat-1200-lr2e-3-2epochs-seed1": {"max_train_rows": 1200, "epochs": 2, "seed": 1},
    "strat-1000-lr2e-3-2epochs": {"max_train_rows": 1000, "epochs": 2},
    "strat-800-lr2e-3-2epochs": {"max_train_rows": 800, "epochs": 2},
    "strat-1000-lr2e-3-1.5epochs": {"max_train_rows": 1000, "epochs": 1.5},
}


def run_one(name: str, train_over: dict, work: Path) -> dict:
    d = work / name
    shutil.copytree(PROJECT, d, ignore=shutil.ignore_patterns("work", "exports", "requests.sqlite"))
    for stage in ("train", "eval", "export", "guard"):
        shutil.rmtree(d / ".zimo" / "artifacts" / stage, ignore_errors=True)
    y = yaml.safe_load((d / "zimo.yaml").read_text(encoding="utf-8"))
    y["train"].update(train_over)
    y["train"]["threads"] = 1
    y["eval"] = {**y.get("eval", {}), "systems": ["finetuned"]}
    (d / "zimo.yaml").write_text(yaml.safe_dump(y), encoding="utf-8")
    t0 = time.perf_counter()
    cpu0 = os.times()
    proc = subprocess.run([str(Path(sys.executable).with_name("zimo")), "build", str(d)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    cpu1 = os.times()
    if proc.returncode:
        return {"name": name, "train": train_over, "error": proc.stderr[-500:]}
    metrics = json.loads(
        Path(glob.glob(str(d / ".zimo/artifacts/eval/*/metrics.json"))[0]).read_text()
    )
    ft = metrics["systems"]["finetuned"]
    summary = json.loads(
        Path(glob.glob(str(d / ".zimo/artifacts/train/*/train_summary.json"))[0]).read_text()
    )
    return {
        "name": name,
        "train": train_over,
        "spam_f1": round(ft["spam_f1"], 4),
        "accuracy": round(ft["accuracy"], 4),
        "decision_threshold": ft.get("decision_threshold"),
        "confusion": ft["confusion"],
        "train_rows": summary["train_rows"],
        "train_seconds": summary["seconds"],
        "build_wall_s": round(time.perf_counter() - t0, 1),
        "build_cpu_s": round(
            (cpu1.children_user + cpu1.children_system)
            - (cpu0.children_user + cpu0.children_system),
            1,
        ),  # fmt: skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run just these configuration names")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from zimo.hw import cpu_info

    names = args.only or list(CONFIGS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = run_one(name, CONFIGS[name], Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "sms_demo_sweep", "cpu": cpu_info(), "load_avg": os.getloadavg(),
              "runs": rows}  # fmt: skip
    (OUT / "sms_demo_sweep.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = [
        "| run | spam F1 (test) | accuracy | threshold | train s (1 thread) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed | | | |")
        else:
            lines.append(f"| {r['name']} | {r['spam_f1']:.3f} | {r['accuracy']:.3f} | "
                         f"{r['decision_threshold']:.3f} | {r['train_seconds']:.0f} |")  # fmt: skip
    (OUT / "sms_demo_sweep.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
