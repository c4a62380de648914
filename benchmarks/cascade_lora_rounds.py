"""The LoRA tier of cascade_stream projects, round by round, scored side by side on one dev split.

    python benchmarks/cascade_lora_rounds.py --project NAME=DIR [--project NAME=DIR ...] [--out FILE]

``cascade_stream.py --lora`` leaves its project in a temporary folder (printed in its JSON as
``project``); each flywheel round adds one ``train-sub`` artifact. This scores every one of
them, oldest first, on the dev split of the first project (human-labelled rows the flywheel
never adds to), with each adapter's own decision rule: accuracy and spam F1, and how it was
trained (rows, steps, seconds, warm start). Run on a from-scratch and a ``--warm-start`` stream,
it says whether continuing the adapter each round keeps its quality.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rounds(project: Path) -> list[Path]:
    stage = project / ".zimo" / "artifacts" / "train-sub"
    done = [p for p in stage.iterdir() if (p / "train_summary.json").is_file()]
    return sorted(done, key=lambda p: (p / "manifest.json").stat().st_mtime)


def score(folder: Path, texts: list[str], labels: list[str]) -> np.ndarray:
    from peft import PeftModel

    from zimo.infer.label import LabelScorer, decide
    from zimo.models import load_causal_lm

    task = json.loads((folder / "label_task.json").read_text())
    model, tok = load_causal_lm(task["base"])
    model = PeftModel.from_pretrained(model, str(folder / "adapter")).eval()
    scorer = LabelScorer(model, tok, labels, task["instruction"], system=task["system"],
                         max_text_tokens=task["max_text_tokens"])  # fmt: skip
    import torch

    with torch.inference_mode():
        proba = scorer.predict_proba(texts, batch_size=16)
    pos = labels.index(task["positive_label"]) if task.get("positive_label") else None
    return decide(proba, pos, task.get("decision_threshold"))


def main() -> None:
    from sklearn.metrics import f1_score

    from zimo.dataset_io import read_records
    from zimo.hw import cpu_info
    from zimo.stages.dag import artifact_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", action="append", required=True, help="NAME=DIR")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/cascade_lora_rounds.json"
    )
    args = ap.parse_args()
    projects = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in args.project]
    labels = ["normal", "spam"]
    dev = [r for r in read_records(artifact_path(projects[0][1], "split") / "dev.parquet")
           if r.get("label") in labels]  # fmt: skip
    texts, gold = [r["text"] for r in dev], np.array([labels.index(r["label"]) for r in dev])
    result = {"benchmark": "cascade_lora_rounds", "cpu": cpu_info(), "dev_rows": len(dev),
              "runs": {}}  # fmt: skip
    for name, proj in projects:
        other = read_records(artifact_path(proj, "split") / "dev.parquet")
        if sorted(r["text"] for r in other) != sorted(texts):
            raise SystemExit(f"{proj} has another dev split: the runs are not comparable")
        out = []
        for k, folder in enumerate(rounds(proj)):
            t0 = time.perf_counter()
            pred = score(folder, texts, labels)
            s = json.loads((folder / "train_summary.json").read_text())
            # The stage's summary (in the manifest) says how it trained even where the trainer's
            # own train_summary.json predates the warm_start entry.
            staged = json.loads((folder / "manifest.json").read_text()).get("summary", {})
            warm = s.get("warm_start") or staged.get("warm_start")
            out.append({"round": k, "artifact": folder.name,
                        "dev_accuracy": float(np.mean(pred == gold)),
                        "dev_spam_f1": float(f1_score(gold, pred, pos_label=1)),
                        "train_rows": s.get("train_rows"), "steps": s.get("steps"),
                        "train_wall_s": s.get("wall_seconds"), "warm_start": warm,
                        "score_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
            print(name, out[-1], flush=True)
        result["runs"][name] = out
    args.out.write_text(json.dumps(result, indent=1))
    md = [f"# cascade_lora_rounds — {result['cpu']['model']}, {result['cpu']['cores']} cores", "",
          f"Each round's LoRA adapter (0 = the seed build, k = after flywheel round k) on the same "
          f"{len(dev)} human-labelled dev rows, with its own decision rule.", "",
          "| run | round | dev accuracy | dev spam F1 | rows trained | steps | train s (wall) "
          "| warm start |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, out in result["runs"].items():
        for r in out:
            md.append(f"| {name} | {r['round']} | {r['dev_accuracy']:.4f} | {r['dev_spam_f1']:.4f}"
                      f" | {r['train_rows']} | {r['steps']} | {r['train_wall_s']} | "
                      f"{r['warm_start'] or '—'} |")  # fmt: skip
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
