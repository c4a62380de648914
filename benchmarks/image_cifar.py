"""CIFAR-10: the embedded default image-text sub-model against a same-budget CNN, one run.

    python benchmarks/image_cifar.py [--quick] [--budget CPU_S] [--out FILE]

Both systems train on the 50,000 train images under the same budget of CPU time of their
process (default 1,200 CPU-s = 10 minutes on 2 cores; ``time.process_time``, because the
machine is shared and wall time measures the neighbours). They train at the same time in two
child processes of one thread each, so both see the same neighbours; then this process scores
both on the 8,025 test images and times batched inference (2 threads, one after the other).

- ``zimo_default``: ``zimo.image.train.train_image_text`` — the small residual CNN trained into
  the frozen MiniLM text space against the label prompts (what ``zimo build`` trains).
- ``cnn_baseline``: the same residual CNN with a linear head and cross-entropy, same recipe and
  budget: what a user would write from scratch.

Reports test accuracy and macro-F1 (bootstrap CIs), text->image recall@1/@5 by label prompt
(the baseline has no text space: its images are ranked by its score for the prompt's label,
which is as well as a label-only model can do), training images per CPU-second and per wall
second, and batched inference images/s. Data: ``../shared/data/cifar10/`` (licence none
stated: read in place, never copied). Writes ``benchmarks/results/image_cifar.json`` + ``.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "cifar10"
WIDTHS = (32, 64, 128)


def decode(path: Path) -> tuple[np.ndarray, list[str]]:
    import pyarrow.parquet as pq
    from PIL import Image

    t = pq.read_table(path, columns=["image", "label"]).to_pydict()
    arr = np.stack(
        [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in t["image"]]
    ).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arr), [str(x) for x in t["label"]]


def child(system: str, work: Path, budget: float, seed: int, threads: int) -> None:
    import torch

    from zimo.hw import cpu_has_fast_bf16
    from zimo.image.fit import FitSettings
    from zimo.image.train import train_cnn_baseline, train_image_text

    torch.set_num_threads(threads)
    d = np.load(work / "train.npz")
    labels = json.loads((work / "labels.json").read_text())
    images, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long()
    settings = FitSettings(budget_cpu_s=budget, max_epochs=200, bf16=cpu_has_fast_bf16(),
                           seed=seed)  # fmt: skip
    last = [0.0]

    def tick(p: float, loss: float) -> None:
        if p - last[0] >= 0.05:
            last[0] = p
            print(f"[{system}] {p:4.0%} loss {loss:.3f}", file=sys.stderr, flush=True)

    if system == "zimo_default":
        lv = np.load(work / "label_vecs.npy")
        model, rep = train_image_text(images, y, lv, settings, WIDTHS, on_step=tick)
    else:
        model, rep = train_cnn_baseline(images, y, len(labels), settings, WIDTHS, on_step=tick)
    torch.save(model.state_dict(), work / f"{system}.pt")
    (work / f"{system}.json").write_text(json.dumps({
        "steps": rep.steps, "epochs": round(rep.epochs, 2), "images": rep.images,
        "cpu_s": round(rep.cpu_s, 1), "wall_s": round(rep.wall_s, 1),
        "stopped_by": rep.stopped_by, "final_loss": round(rep.final_loss, 4),
        "train_images_per_cpu_s": round(rep.train_images_per_cpu_s, 1),
        "train_images_per_s": round(rep.train_images_per_s, 1)}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="120 CPU-s per system")
    ap.add_argument("--budget", type=float, default=None, help="CPU-seconds per system")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--models",
        type=Path,
        default=None,
        help="keep the trained models here; with models already there, only score",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    budget = args.budget or (120.0 if args.quick else 1200.0)
    if args.child:
        child(args.child, args.work, budget, args.seed, args.threads)
        return
    if not (DATA / "train.parquet").is_file():
        print(f"skipped: {DATA} not found (the CIFAR-10 parquet files)", file=sys.stderr)
        return
    import torch

    from zimo.eval.metrics import label_metrics
    from zimo.hw import cpu_has_fast_bf16, cpu_info
    from zimo.image.encoder import ImageTextEncoder, LinearHeadCNN
    from zimo.image.fit import batched
    from zimo.image.prompts import DEFAULT_TEMPLATES, embed_texts, label_vectors, prompts_for
    from zimo.image.retrieval import recall_at_k

    out = args.out or ROOT / "benchmarks" / "results" / (
        "image_cifar.quick.json" if args.quick else "image_cifar.json"
    )
    t0 = time.perf_counter()
    xtr, ytr = decode(DATA / "train.parquet")
    xte, yte = decode(DATA / "test.parquet")
    labels = sorted(set(ytr))
    print(f"decoded {len(xtr)} train / {len(xte)} test in {time.perf_counter() - t0:.0f}s",
          file=sys.stderr)  # fmt: skip
    lv = label_vectors(labels, DEFAULT_TEMPLATES)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.models or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        index = {lab: i for i, lab in enumerate(labels)}
        np.savez(work / "train.npz", x=xtr, y=np.array([index[v] for v in ytr]))
        np.save(work / "label_vecs.npy", lv)
        (work / "labels.json").write_text(json.dumps(labels))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
               "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}  # fmt: skip
        t_train = time.perf_counter()
        procs = {s: subprocess.Popen([sys.executable, __file__, "--child", s, "--work", str(work),
                                      "--budget", str(budget), "--seed", str(args.seed),
                                      "--threads", str(args.threads)], env=env)
                 for s in ("zimo_default", "cnn_baseline")
                 if not (work / f"{s}.json").is_file()}  # fmt: skip
        for s, p in procs.items():
            if p.wait() != 0:
                raise SystemExit(f"{s} training failed (exit {p.returncode})")
        train_wall = time.perf_counter() - t_train
        fits = {s: json.loads((work / f"{s}.json").read_text())
                for s in ("zimo_default", "cnn_baseline")}  # fmt: skip
        enc = ImageTextEncoder(lv.shape[1], WIDTHS)
        enc.load_state_dict(torch.load(work / "zimo_default.pt"))
        cnn = LinearHeadCNN(len(labels), WIDTHS)
        cnn.load_state_dict(torch.load(work / "cnn_baseline.pt"))
    torch.set_num_threads(2)
    bf16 = cpu_has_fast_bf16()
    x_test = torch.from_numpy(xte)
    text = torch.from_numpy(lv)
    for m in (enc, cnn):
        m.eval().to(memory_format=torch.channels_last)
    scorers = {
        "zimo_default": lambda x: enc.scale() * enc(x) @ text.T,
        "cnn_baseline": cnn,
    }
    queries = [q for group in prompts_for(labels, DEFAULT_TEMPLATES) for q in group]
    q_labels = [lab for lab in labels for _ in DEFAULT_TEMPLATES]
    q_vecs = embed_texts(queries)
    results: dict = {}
    for name, fn in scorers.items():
        batched(fn, x_test[:512], bf16=bf16)  # warm-up: oneDNN picks kernels on first use
        t = time.perf_counter()
        scores = batched(fn, x_test, batch_size=256, bf16=bf16)
        infer_s = time.perf_counter() - t
        pred = [labels[i] for i in scores.argmax(1).tolist()]
        m = label_metrics(yte, pred, labels, n_boot=1000)
        if name == "zimo_default":
            img_vecs = batched(enc, x_test, bf16=bf16).numpy()
            rec = recall_at_k(q_vecs, q_labels, img_vecs, yte)
        else:  # no text space: rank by the score of the query's label
            probs = scores.softmax(1).numpy()
            onehot = np.eye(len(labels))[[labels.index(q) for q in q_labels]]
            rec = recall_at_k(onehot, q_labels, probs.astype(np.float64), yte)
        results[name] = {
            "accuracy": round(m["accuracy"]["value"], 4),
            "accuracy_ci": [round(m["accuracy"]["low"], 4), round(m["accuracy"]["high"], 4)],
            "macro_f1": round(m["macro_f1"]["value"], 4),
            "macro_f1_ci": [round(m["macro_f1"]["low"], 4), round(m["macro_f1"]["high"], 4)],
            "recall_at_1": round(rec["recall_at_1"], 4),
            "recall_at_5": round(rec["recall_at_5"], 4),
            "precision_at_5": round(rec["precision_at_5"], 4),
            "inference_images_per_s": round(len(x_test) / infer_s, 1),
            **fits[name],
        }
        print(name, results[name], file=sys.stderr, flush=True)
    zd, bl = results["zimo_default"], results["cnn_baseline"]
    report = {
        "benchmark": "image_cifar",
        "mode": "quick" if args.quick else ("full" if budget == 1200 else f"budget {budget:g}"),
        "cpu": cpu_info(),
        "bf16": bf16,
        # The switches that emulate a slower CPU here (AVX2 only, no bf16), when set.
        "env": {
            k: os.environ[k]
            for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "ZIMO_BF16", "OMP_WAIT_POLICY")
            if k in os.environ
        },
        "trained_here": bool(procs),
        "budget": {
            "cpu_s_per_system": budget,
            "clock": "time.process_time of each training "
            f"process ({args.threads} thread(s) each, the two trained side by side)",
            "equivalent": f"{budget / 2 / 60:.1f} min on 2 cores",
        },  # fmt: skip
        "train_wall_s": round(train_wall, 1),
        "load_avg_end": os.getloadavg(),
        "data": {
            "train": len(xtr),
            "test": len(xte),
            "labels": labels,
            "source": "../shared/data/cifar10 (licence none stated; read in place)",
        },  # fmt: skip
        "widths": list(WIDTHS),
        "queries": {"count": len(queries), "templates": list(DEFAULT_TEMPLATES)},
        "zimo_default": zd,
        "cnn_baseline": bl,
        "targets": {
            "accuracy>=0.75": zd["accuracy"] >= 0.75,
            "accuracy>=baseline": zd["accuracy"] >= bl["accuracy"],
            "recall_at_1>=0.70": zd["recall_at_1"] >= 0.70,
            "inference>=200/s": zd["inference_images_per_s"] >= 200,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    rows = [f"# image_cifar ({report['mode']}) — {report['cpu']['model']}, "
            f"{report['cpu']['cores']} cores, bf16={bf16}, {budget:.0f} CPU-s per system",
            "", "| system | accuracy | macro-F1 | recall@1 | recall@5 | train img/CPU-s | "
            "infer img/s | epochs |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in results.items():
        rows.append(f"| {name} | {r['accuracy']:.4f} {r['accuracy_ci']} | {r['macro_f1']:.4f} | "
                    f"{r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | "
                    f"{r['train_images_per_cpu_s']:.0f} | {r['inference_images_per_s']:.0f} | "
                    f"{r['epochs']} |")  # fmt: skip
    rows += ["", "targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}"
                                          for k, v in report["targets"].items())]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
