"""LoRA training speed on CPU: transformers Trainer + peft (fp32, padded) vs Zimo's trainer.

Same model (gecko), same data (SMS spam label task, answer-only loss), same optimizer steps,
batch size and learning rate, run side by side in one process. Reported per system: trained
(non-padding) tokens/s, peak RSS, final dev loss (the same evaluator for all: mean cross-entropy
on the answer tokens, full fp32 forward). Systems:

- ``trainer_fp32_padded``: what a user writes today (Trainer, peft LoRA r=16 on all linear
  layers of every decoder layer, fp32, batches padded to ``max_length``, loss via labels=-100);
- ``zimo_same_lora``: Zimo's trainer with the *same* LoRA (all 30 layers): length bucketing,
  logits only at the answer, bf16 frozen base where the CPU has bf16 and it measures faster;
- ``zimo_demo``: Zimo's demo settings (LoRA on the top 8 layers, frozen lower layers cached).

Usage: ``python benchmarks/train_lora.py [--quick] [--steps N]``. Writes
``benchmarks/results/train_lora.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sms_spam_collection.tsv"
OUT = ROOT / "benchmarks" / "results"
LABELS = ["ham", "spam"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_records(n_train: int, n_dev: int, seed: int = 0):
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(DATA, sep="\t")
    recs = [{"text": t, "label": lab} for lab, t in zip(df.Label, df.SMS, strict=True)]
    y = [r["label"] for r in recs]
    train, dev = train_test_split(recs, test_size=n_dev, stratify=y, random_state=seed)
    from zimo.train.label import balanced_subset

    return balanced_subset(train, n_train, seed), dev


def dev_loss(model, prompt, dev) -> float:
    """Mean CE on answer tokens, full fp32 forward, one row at a time (same for all systems)."""
    tot, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for r in dev:
            ids, targets = prompt.example(r["text"], r["label"])
            logits = model(input_ids=torch.tensor([ids])).logits[0, -len(targets) :].float()
            tot += torch.nn.functional.cross_entropy(
                logits, torch.tensor(targets), reduction="sum"
            ).item()
            n += len(targets)
    return tot / n


def run_trainer_baseline(train, dev, steps, bs, lr, max_length, r):
    """transformers Trainer + peft, fp32, padded to max_length, loss on the answer only."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from zimo.models import load_causal_lm
    from zimo.prompts import DEFAULT_SYSTEM, LabelPrompt

    model, tok = load_causal_lm("gecko")
    prompt = LabelPrompt(tok, LABELS, None, system=DEFAULT_SYSTEM)
    prompt.max_text_tokens = max_length - 50
    rows = []
    for rec in train:
        ids, targets = prompt.example(rec["text"], rec["label"])
        # HF shifts labels inside the model, so feed the whole answer and label it in place.
        ids = ids + targets[-1:]
        labels = [-100] * (len(ids) - len(targets)) + targets
        pad = max_length - len(ids)
        rows.append(
            {
                "input_ids": ids + [tok.pad_token_id] * pad,
                "attention_mask": [1] * len(ids) + [0] * pad,
                "labels": labels + [-100] * pad,
                "n": len(ids),
            }
        )
    model.train()
    model = get_peft_model(
        model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", task_type="CAUSAL_LM")
    )

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return {k: torch.tensor(v) for k, v in rows[i].items() if k != "n"}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=bs,
            max_steps=steps,
            learning_rate=lr,
            lr_scheduler_type="cosine",
            warmup_steps=0,
            logging_steps=10**6,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=DS())
        t = time.perf_counter()
        trainer.train()
        secs = time.perf_counter() - t
    order_tokens = sum(rows[i % len(rows)]["n"] for i in range(steps * bs))  # approx (shuffled)
    return model, prompt, secs, order_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few steps; < 1 min on a quiet CPU")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    from zimo.hw import cpu_info, set_threads
    from zimo.train import TrainConfig, train_label

    threads = a.threads or set_threads()
    torch.set_num_threads(threads)
    steps = a.steps or (3 if a.quick else 24)
    bs, lr, max_length, r = 8, 5e-4, 128, 16
    n_train = steps * bs
    train, dev = load_records(n_train, 16 if a.quick else 64)
    results: dict = {}

    rss0 = _rss_mb()
    model, prompt, secs, toks = run_trainer_baseline(train, dev, steps, bs, lr, max_length, r)
    results["trainer_fp32_padded"] = {
        "seconds": round(secs, 2),
        "trained_tokens": toks,
        "tokens_per_s": round(toks / secs, 1),
        "dev_loss": round(dev_loss(model, prompt, dev), 4),
        "peak_rss_mb": round(_rss_mb(), 0),
    }
    del model
    print("baseline", results["trainer_fp32_padded"], flush=True)

    from zimo.models import load_causal_lm

    base, _ = load_causal_lm("gecko")
    for name, layers, cache in [("zimo_same_lora", None, False), ("zimo_demo", 8, "auto")]:
        cfg = TrainConfig(
            max_steps=steps,
            epochs=1,
            max_train_rows=n_train,
            batch_size=bs,
            lr=lr,
            warmup=0,
            max_length=max_length,
            lora={"r": r, "alpha": 2 * r, "layers": layers},
            cache_frozen=cache,
            threads=threads,
            checkpoint_every=10**6,
            max_dev_rows=8,
        )
        with tempfile.TemporaryDirectory() as tmp:
            s = train_label(train, dev[:8], LABELS, cfg, tmp)
            from peft import PeftModel

            tuned = PeftModel.from_pretrained(base, Path(tmp) / "adapter")
            dl = dev_loss(tuned, prompt, dev)
            base = tuned.unload()
        results[name] = {
            "seconds": s["seconds"],
            "trained_tokens": s["trained_tokens"],
            "tokens_per_s": s["tokens_per_s"],
            "dev_loss": round(dl, 4),
            "peak_rss_mb": round(_rss_mb(), 0),
            "bf16": s["bf16"],
            "cache_frozen": s["cache_frozen"],
            "cache_seconds": s["cache_seconds"],
            "layers_trained": len(s["layers_trained"]),
        }
        print(name, results[name], flush=True)

    b = results["trainer_fp32_padded"]
    for name in ("zimo_same_lora", "zimo_demo"):
        z = results[name]
        z["speedup_tokens_per_s"] = round(z["tokens_per_s"] / b["tokens_per_s"], 2)
        z["dev_loss_rel_diff"] = round((z["dev_loss"] - b["dev_loss"]) / b["dev_loss"], 4)
    out = {
        "benchmark": "train_lora",
        "quick": a.quick,
        "steps": steps,
        "batch_size": bs,
        "lr": lr,
        "max_length": max_length,
        "lora_r": r,
        "threads": threads,
        "cpu": cpu_info(),
        "peak_rss_note": "process peak RSS after each system (cumulative, same process)",
        "rss_start_mb": round(rss0, 0),
        "systems": results,
        "target": ">= 3x baseline tokens/s with dev loss within 2%",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = ".quick" if a.quick else ""
    (OUT / f"train_lora{suffix}.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"# train_lora ({'quick' if a.quick else 'full'}): {steps} steps x batch {bs}, "
        f"{threads} threads, {cpu_info()['model']}",
        "",
        "| system | tokens/s | speedup | dev loss | dev loss vs base | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, z in results.items():
        lines.append(
            f"| {name} | {z['tokens_per_s']} | {z.get('speedup_tokens_per_s', 1.0)}x | "
            f"{z['dev_loss']} | {z.get('dev_loss_rel_diff', 0.0):+.2%} | {z['peak_rss_mb']} |"
        )
    (OUT / f"train_lora{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
