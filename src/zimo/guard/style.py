"""The machine-style adapter: a LoRA that moves the scorer LM towards how chat models write.

Why: a small LM finds two kinds of text very predictable, chat-model answers and formulaic human
text (encyclopedia definitions, founding dates, copied boilerplate). Scored by the plain model,
the second kind sets the threshold at a 1% false-positive rate. A copy of the scorer fine-tuned
on chat-model answers ("imitate before detect", Wu et al. 2024, who align the scorer with
machine style to catch machine-revised text) finds machine text more predictable still, and
human text hardly more so, which pulls the two apart. The adapter is merged into the weights,
so scoring still costs one forward pass.

What it is trained on: the answers of ``alpaca_zh_1k.json`` (GPT-4, Chinese Alpaca), never the
HC3 dev file, which stays for calibration. The first ``HELD_OUT`` answers of at least
``MIN_CHARS`` characters are held out: the detection benchmark uses them as its unseen-generator
probe. Zimo ships the adapter for gecko-zh (``zimo/guard/adapters/gecko-zh``); rebuild it with
``python -m zimo.guard.style --data ../shared/data/alpaca_zh_1k.json --out DIR``.

The adapter learns bare continuations (no chat template, no prompt) of at most ``TOKENS``
tokens, as the guard scores. The small loop below is what trained the shipped adapter, and
rebuilds it byte for byte. ``zimo.train`` (``batches.epoch_batches``, ``loop.Fitter``) could fit the
same bare-text examples with resumable, checkpointed steps; moving to it would change the
batches and so the adapter, which then needs recalibrating (not done yet).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from zimo.errors import ConfigError

ADAPTER_DIR = Path(__file__).parent / "adapters"
HELD_OUT = 300  # answers kept out of training (the benchmark's unseen-generator probe)
MIN_CHARS = 60  # an answer this long or longer can be a probe document
TOKENS = 256  # tokens per training text: the guard's scoring window
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def shipped_adapter(model: str) -> Path | None:
    """Zimo's machine-style adapter for an embedded scorer, if it ships one."""
    p = ADAPTER_DIR / model
    return p if (p / "adapter_config.json").is_file() else None


def resolve_adapter(setting: str, model: str) -> Path | None:
    """The adapter folder for ``guard.style_adapter``: ``auto`` (the shipped one for this
    model, if any), ``off`` or a folder."""
    if setting == "off":
        return None
    if setting == "auto":
        return shipped_adapter(model)
    p = Path(setting).expanduser()
    if not (p / "adapter_config.json").is_file():
        raise ConfigError(
            f"guard.style_adapter {setting!r} is not an adapter folder (no adapter_config.json)",
            "use auto, off, or the folder written by `python -m zimo.guard.style`",
        )
    return p


def adapter_id(path: Path | None) -> str | None:
    """A short, content-derived name for an adapter (stored in calibrations and cache keys, so a
    calibration is never applied to scores from a different adapter)."""
    if path is None:
        return None
    digest = hashlib.sha1((Path(path) / "adapter_model.safetensors").read_bytes()).hexdigest()
    return f"{Path(path).name}@{digest[:12]}"


def split_alpaca(rows: Sequence[dict]) -> tuple[list[str], list[str]]:
    """(training answers, held-out probe answers) of an Alpaca-format file."""
    outputs = [
        r["output"]
        for r in rows
        if isinstance(r, dict) and isinstance(r.get("output"), str) and r["output"]
    ]
    held = [t for t in outputs if len(t) >= MIN_CHARS][:HELD_OUT]
    held_set = set(held)
    return [t for t in outputs if t not in held_set], held


def train_adapter(
    model_name: str,
    texts: Sequence[str],
    out: Path,
    *,
    rank: int = 16,
    alpha: int = 32,
    epochs: int = 2,
    batch_size: int = 8,
    lr: float = 2e-4,
    seed: int = 0,
    bf16: bool | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Fit a LoRA on bare ``texts`` (causal LM loss on every token) and save it to ``out``.

    Length-sorted batches (little padding) in shuffled order, linear warm-up then decay, bf16
    autocast where the CPU has bf16 hardware. Deterministic for a given seed and thread count.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from zimo.hw import cpu_has_fast_bf16
    from zimo.models import load_causal_lm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tok = load_causal_lm(model_name)
    cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(TARGETS),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    seqs = [bos + tok(t, add_special_tokens=False)["input_ids"][:TOKENS] for t in texts]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise ConfigError("no training text for the style adapter", "pass non-empty texts")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    per_epoch = (len(seqs) + batch_size - 1) // batch_size
    steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / steps)
    )
    use_bf16 = cpu_has_fast_bf16() if bf16 is None else bf16
    model.train()
    step = 0
    for _ in range(epochs):
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        for b in batches:
            width = max(len(seqs[i]) for i in b)
            ids = torch.zeros(len(b), width, dtype=torch.long)
            mask = torch.zeros(len(b), width, dtype=torch.long)
            for row, i in enumerate(b):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            labels = ids.masked_fill(mask == 0, -100)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if progress:
                progress(step, steps, float(loss.item()))
    # Written beside ``out`` and moved in whole: an interrupted save leaves no half adapter.
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    cfg_path = tmp / "adapter_config.json"
    conf = json.loads(cfg_path.read_text())
    conf["base_model_name_or_path"] = model_name  # not this machine's cache path
    cfg_path.write_text(json.dumps(conf, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from rich.progress import Progress

    ap = argparse.ArgumentParser(description="Train the guard's machine-style adapter")
    ap.add_argument("--data", type=Path, required=True, help="alpaca-format JSON (GPT-4 answers)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="gecko-zh")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        rows = json.loads(args.data.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        ap.error(f"cannot read {args.data} as JSON ({e}); pass an alpaca-format JSON list")
    if not isinstance(rows, list):
        ap.error(f"{args.data} is not a JSON list of {{instruction, input, output}} records")
    texts, held = split_alpaca(rows)
    if not texts:
        ap.error(f"{args.data} has no `output` answers left to train on after the held-out ones")
    print(f"training on {len(texts)} answers ({len(held)} held out)")
    with Progress() as bar:
        task = bar.add_task("style adapter", total=None)

        def show(step: int, steps: int, loss: float) -> None:
            bar.update(task, completed=step, total=steps, description=f"loss {loss:.3f}")

        train_adapter(
            args.model,
            texts,
            args.out,
            rank=args.rank,
            epochs=args.epochs,
            seed=args.seed,
            progress=show,
        )
    print(f"adapter written to {args.out} ({adapter_id(args.out)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
