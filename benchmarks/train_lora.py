"""LoRA training speed on CPU: transformers Trainer + peft (fp32, padded) vs Zimo's trainer.

Same model (gecko), same data (SMS spam label task, answer-only loss), same optimizer steps,
batch size, learning rate and schedule, run side by side in one process. Reported per system:
trained (non-padding) tokens/s, peak RSS, final dev loss (the same evaluator for all: mean
cross-entropy on the answer tokens, full fp32 forward, one row at a time).

Like-for-like: a 12-step run is short enough that its final dev loss depends on the LoRA init
and on which rows share a batch more than on anything the trainers do differently. So the
baseline gets (1) the same LoRA initialisation (``torch.manual_seed(seed)`` before
``get_peft_model``, as Zimo does; the benchmark checks the init weights are bit-identical) and
(2) the same batches in the same order (Zimo's length-bucketed, label-mixed epoch order fed to
the Trainer through its dataloader; checked against the rows the Trainer actually read). It
keeps what makes it the baseline: fp32, every batch padded to ``max_length``, full-vocab logits
at every position, loss via ``labels=-100``. Both normalise the loss per answer token over the
batch (Trainer: mean over non-ignored labels; Zimo: sum / answer tokens).

Systems:

- ``trainer_fp32_padded``: what a user writes today (Trainer, peft LoRA r=16 on all linear
  layers of every decoder layer, fp32, batches padded to ``max_length``);
- ``zimo_same_lora_fp32``: Zimo's trainer with the *same* LoRA (all 30 layers) in fp32: length
  bucketing (no padding compute) and logits only at the answer; isolates those tricks, so its
  dev loss should match the baseline's up to float rounding;
- ``zimo_same_lora``: the same with a bf16 frozen base + bf16 autocast (what ``bf16: auto``
  picks on a CPU with bf16 instructions where it measures faster; forced here to skip the
  timing steps; LoRA weights and AdamW state stay fp32);
- ``zimo_demo``: Zimo's demo settings (LoRA on the top 8 layers only; frozen lower layers
  cached when more than one epoch runs). A different model capacity: its dev loss is not
  expected to match.

Usage: ``python benchmarks/train_lora.py [--quick] [--steps N]``. Writes
``benchmarks/results/train_lora.json`` and ``.md`` (``train_lora.quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sms_spam_collection.tsv"
OUT = ROOT / "benchmarks" / "results"
LABELS = ["ham", "spam"]
SEED = 0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_records(n_train: int, n_dev: int, seed: int = SEED):
    from sklearn.model_selection import train_test_split

    from zimo.train.label import balanced_subset

    df = pd.read_csv(DATA, sep="\t")
    # Stripped as Zimo's train_label strips them, so every system trains on identical tokens.
    recs = [{"text": t.strip(), "label": lab} for lab, t in zip(df.Label, df.SMS, strict=True)]
    y = [r["label"] for r in recs]
    train, dev = train_test_split(recs, test_size=n_dev, stratify=y, random_state=seed)
    return balanced_subset(train, n_train, seed), dev


def make_prompt(tok, max_length: int):
    """The prompt Zimo's ``train_label`` builds (same text budget), shared by all systems."""
    from zimo.prompts import DEFAULT_SYSTEM, LabelPrompt
    from zimo.train.label import _text_budget

    prompt = LabelPrompt(tok, LABELS, None, system=DEFAULT_SYSTEM)
    prompt.max_text_tokens = _text_budget(prompt, max_length)
    return prompt


def dev_loss(model, prompt, dev, bs: int = 8) -> float:
    """Mean CE on answer tokens, full fp32 forward (same evaluator for all systems).

    Rows are right-padded in batches of similar length: with causal attention and the mask,
    padding after a row changes none of its logits.
    """
    rows = sorted((prompt.example(r["text"], r["label"]) for r in dev), key=lambda x: len(x[0]))
    tot, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(rows), bs):
            chunk = rows[s : s + bs]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, (x, _) in enumerate(chunk):
                ids[i, : len(x)], mask[i, : len(x)] = torch.tensor(x), 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            for i, (x, targets) in enumerate(chunk):
                k = len(targets)
                tot += torch.nn.functional.cross_entropy(
                    logits[i, len(x) - k : len(x)], torch.tensor(targets), reduction="sum"
                ).item()
                n += k
    return tot / n


def lora_digest(model) -> str:
    """sha1 over the LoRA weights by parameter name (to prove identical initialisation)."""
    h = hashlib.sha1()
    for name, p in sorted(model.named_parameters()):
        if "lora_" in name:
            h.update(name.removeprefix("base_model.model.").encode())
            h.update(p.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def zimo_batches(train, prompt, bs: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """Zimo's first-epoch batches (row indices), from the function its trainer uses, and the
    row lengths (tokens each system runs per row, padding excluded)."""
    from zimo.train.loop import epoch_batches

    lengths = [len(prompt.example(r["text"], r["label"])[0]) for r in train]
    groups = [LABELS.index(r["label"]) for r in train]
    return epoch_batches(lengths, bs, seed, 0, True, groups), lengths


def _clock() -> tuple[float, float]:
    """(process CPU seconds, wall seconds): CPU time hardly moves when other jobs share the
    cores, wall time does; both are reported."""
    return time.process_time(), time.perf_counter()


def _appender(clocks: list) -> Callable[[dict], None]:
    """A progress callback recording the clocks at the end of every step."""
    return lambda row: clocks.append(_clock())


def steady_rate(clocks: list[tuple[float, float]], step_tokens: list[int]) -> dict:
    """Tokens per CPU second and per wall second over steps 2..N (step 1 holds one-off setup:
    the Trainer's dataloader and accelerate wrapping, Zimo's bf16 timing)."""
    toks = sum(step_tokens[1 : len(clocks)])
    cpu = clocks[-1][0] - clocks[0][0]
    wall = clocks[-1][1] - clocks[0][1]
    return {
        "steady_steps": len(clocks) - 1,
        "steady_tokens": toks,
        "steady_cpu_s": round(cpu, 2),
        "tokens_per_cpu_s": round(toks / cpu, 1),
        "steady_wall_s": round(wall, 2),
        "steady_tokens_per_wall_s": round(toks / wall, 1),
    }


def zimo_init_digest(r: int, layers, seed: int) -> str:
    """Digest of the LoRA init Zimo's ``apply_lora`` makes for these settings."""
    from zimo.models import load_causal_lm
    from zimo.train import TrainConfig
    from zimo.train.setup import apply_lora, layer_indices
    from zimo.train.split import decoder_parts

    model, _ = load_causal_lm("gecko")
    cfg = TrainConfig(lora={"r": r, "alpha": 2 * r, "layers": layers}, seed=seed)
    for p in model.parameters():
        p.requires_grad_(False)
    model = apply_lora(model, cfg, layer_indices(layers, decoder_parts(model).n_layers))
    return lora_digest(model)


def run_trainer_baseline(train, batches, steps, bs, lr, max_length, r):
    """transformers Trainer + peft, fp32, padded to max_length, loss on the answer only."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from zimo.models import load_causal_lm

    model, tok = load_causal_lm("gecko")
    prompt = make_prompt(tok, max_length)
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
                "n": len(ids) - 1,  # tokens Zimo runs for this row (it never feeds the last)
            }
        )
    model.train()
    torch.manual_seed(SEED)  # the same LoRA init as Zimo's (checked by digest)
    model = get_peft_model(
        model,
        LoraConfig(
            r=r,
            lora_alpha=2 * r,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    init = lora_digest(model)
    read: list[int] = []

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            read.append(int(i))
            return {k: torch.tensor(v) for k, v in rows[i].items() if k != "n"}

    ds = DS()
    order = [b for _ in range(steps // max(1, len(batches)) + 1) for b in batches][:steps]

    class SameBatchesTrainer(Trainer):
        """The Trainer with a fixed batch order (Zimo's), nothing else changed."""

        def get_train_dataloader(self):
            return torch.utils.data.DataLoader(
                ds, batch_sampler=order, collate_fn=self.data_collator, num_workers=0
            )

    clocks: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            clocks.append(_clock())

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=bs,
            max_steps=steps,
            learning_rate=lr,
            lr_scheduler_type="cosine",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            logging_steps=10**6,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=SEED,
            disable_tqdm=True,
        )
        trainer = SameBatchesTrainer(
            model=model, args=args, train_dataset=ds, callbacks=[StepClock()]
        )
        t = time.perf_counter()
        trainer.train()
        secs = time.perf_counter() - t
    expected = [i for b in order for i in b]
    tokens = sum(rows[i]["n"] for i in read)
    chk = {"lora_init_sha1": init, "same_rows": read == expected, "clocks": clocks}
    return model, prompt, secs, tokens, chk


def markdown(out: dict) -> str:
    """The results table plus what the comparison controls for (from the JSON alone)."""
    f, res = out["fairness"], out["systems"]
    lines = [
        f"# train_lora ({'quick' if out['quick'] else 'full'}): {out['steps']} steps x batch "
        f"{out['batch_size']}, {out['threads']} thread(s), {out['cpu']['model']}",
        "",
        f"Same LoRA init: {f['same_lora_init']}; same batches in the same order: "
        f"{f['same_batches_in_same_order']}; same lr {out['lr']} ({out['schedule']}), grad "
        f"clipping 1.0, per-token loss on the answer only. Dev loss = fp32 full forward on "
        f"{out['dev_rows']} held-out rows, the same evaluator for every system.",
        "",
        "Speed: non-padding tokens (counted the same way for all) per second of *process CPU "
        "time* over steps 2..N (the headline: it hardly moves when other jobs share the cores), "
        "and per wall second over all steps (noisy on a shared machine).",
        "",
        "| system | tokens/CPU-s | speedup (CPU) | tokens/wall-s | speedup (wall) | dev loss "
        "| dev loss vs base | bf16 | LoRA layers | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, z in res.items():
        lines.append(
            f"| {name} | {z['tokens_per_cpu_s']} | {z.get('speedup_tokens_per_cpu_s', 1.0)}x | "
            f"{z['tokens_per_s']} | {z.get('speedup_tokens_per_s', 1.0)}x | {z['dev_loss']} | "
            f"{z.get('dev_loss_rel_diff', 0.0):+.2%} | {z.get('bf16', False)} | "
            f"{z.get('layers_trained', 30)} | {z['peak_rss_mb']} |"
        )
    lines += [
        "",
        "Why earlier runs of this benchmark showed a 93% dev-loss gap at 3.3x: the baseline's "
        "LoRA was initialised from a different RNG state, and the Trainer shuffled the rows into "
        "other batches than Zimo's length-bucketed, label-mixed order. Twelve steps at lr 5e-4 "
        "are short enough for those to dominate the final dev loss. With both made identical, "
        "Zimo in fp32 (`zimo_same_lora_fp32`) reproduces the Trainer's dev loss, so Zimo's speed "
        "tricks (no padding compute, shared prompt prefix, logits only at the answer) change "
        "the cost, not the result. The `zimo_same_lora` row adds the bf16 frozen base: its "
        "dev-loss difference (either sign) is the effect of bf16 rounding on the training "
        "trajectory of this short run, not of a different recipe. `zimo_demo` trains LoRA on "
        "the top 8 layers only (a smaller change to the model): its dev loss is not expected "
        "to match after 12 steps.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 steps, 16 dev rows")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--md-only", action="store_true", help="rewrite the .md from the .json")
    a = ap.parse_args()
    if a.md_only:
        suffix = ".quick" if a.quick else ""
        out = json.loads((OUT / f"train_lora{suffix}.json").read_text())
        (OUT / f"train_lora{suffix}.md").write_text(markdown(out))
        return
    from zimo.hw import cpu_info, set_threads
    from zimo.train import TrainConfig, train_label

    threads = a.threads or set_threads()
    torch.set_num_threads(threads)
    steps = a.steps or (3 if a.quick else 12)
    bs, lr, max_length, r = 8, 5e-4, 128, 16
    n_train = steps * bs
    train, dev = load_records(n_train, 16 if a.quick else 64)
    results: dict = {}

    rss0 = _rss_mb()
    from zimo.models import load_tokenizer

    batches, lengths = zimo_batches(
        train, make_prompt(load_tokenizer("gecko"), max_length), bs, SEED
    )
    step_tokens = [sum(lengths[i] for i in b) for b in batches[:steps]]
    zimo_init = zimo_init_digest(r, None, SEED)
    model, prompt, secs, toks, chk = run_trainer_baseline(
        train, batches, steps, bs, lr, max_length, r
    )
    results["trainer_fp32_padded"] = {
        "seconds": round(secs, 2),
        "trained_tokens": toks,
        "tokens_per_s": round(toks / secs, 1),
        "dev_loss": round(dev_loss(model, prompt, dev), 4),
        "peak_rss_mb": round(_rss_mb(), 0),
        **steady_rate(chk["clocks"], step_tokens),
    }
    fairness = {
        "same_lora_init": chk["lora_init_sha1"] == zimo_init,
        "same_batches_in_same_order": chk["same_rows"],
        "batches": batches[:steps],
    }
    del model
    print("baseline", results["trainer_fp32_padded"], fairness, flush=True)
    partial = OUT / f"train_lora{'.quick' if a.quick else ''}.partial.json"
    partial.write_text(json.dumps({"systems": results, "fairness": fairness}, indent=1))

    from zimo.models import load_causal_lm

    base, _ = load_causal_lm("gecko")
    systems = [
        ("zimo_same_lora_fp32", None, False, False),
        # bf16 forced on here only to skip auto's timing steps (minutes for 30 layers on a busy
        # box); zimo_demo keeps "auto", and its bf16_reason shows what auto picks on this CPU.
        ("zimo_same_lora", None, True, False),
        ("zimo_demo", 8, "auto", "auto"),
    ]
    for name, layers, bf16, cache in systems:
        cfg = TrainConfig(
            max_steps=steps,
            epochs=1,
            max_train_rows=n_train,
            batch_size=bs,
            lr=lr,
            warmup=0,
            max_length=max_length,
            lora={"r": r, "alpha": 2 * r, "layers": layers},
            bf16=bf16,
            cache_frozen=cache,
            threads=threads,
            checkpoint_every=10**6,
            eval_every=10**6,
            max_dev_rows=8,
            seed=SEED,
        )
        clocks: list[tuple[float, float]] = []
        with tempfile.TemporaryDirectory() as tmp:
            # No in-training dev evaluation: every system is scored afterwards by dev_loss().
            s = train_label(train, [], LABELS, cfg, tmp, progress=_appender(clocks))
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
            "bf16_reason": s.get("bf16_reason"),
            "cache_frozen": s["cache_frozen"],
            "cache_seconds": s["cache_seconds"],
            "layers_trained": len(s["layers_trained"]),
            **steady_rate(clocks, step_tokens),
        }
        print(name, results[name], flush=True)
        partial.write_text(json.dumps({"systems": results, "fairness": fairness}, indent=1))

    b = results["trainer_fp32_padded"]
    for name, _l, _b, _c in systems:
        z = results[name]
        z["speedup_tokens_per_s"] = round(z["tokens_per_s"] / b["tokens_per_s"], 2)
        z["speedup_tokens_per_cpu_s"] = round(z["tokens_per_cpu_s"] / b["tokens_per_cpu_s"], 2)
        z["dev_loss_rel_diff"] = round((z["dev_loss"] - b["dev_loss"]) / b["dev_loss"], 4)
    out = {
        "benchmark": "train_lora",
        "quick": a.quick,
        "steps": steps,
        "batch_size": bs,
        "lr": lr,
        "schedule": "cosine, no warmup",
        "max_length": max_length,
        "lora_r": r,
        "train_rows": n_train,
        "dev_rows": len(dev),
        "threads": threads,
        "cpu": cpu_info(),
        "fairness": fairness,
        "token_count_note": "non-padding tokens Zimo runs per row (prompt + answer minus its "
        "last token), counted the same way for every system",
        "peak_rss_note": "process peak RSS after each system (cumulative, same process)",
        "rss_start_mb": round(rss0, 0),
        "systems": results,
        "target": ">= 3x baseline tokens/s with dev loss within 2%",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = ".quick" if a.quick else ""
    (OUT / f"train_lora{suffix}.json").write_text(json.dumps(out, indent=1))
    text = markdown(out)
    (OUT / f"train_lora{suffix}.md").write_text(text)
    partial.unlink(missing_ok=True)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
