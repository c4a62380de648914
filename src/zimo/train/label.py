"""Label-task training: teach the model to answer the label word, loss on the answer only.

``train_label`` is the library call behind the ``train`` stage for ``task: label``. It writes:

- ``adapter/``: a PEFT adapter (``PeftModel.from_pretrained(base, out_dir / "adapter")``) plus
  the tokenizer (full fine-tuning writes ``model/`` with safetensors instead);
- ``label_task.json``: labels, instruction and system prompt, so scoring uses the same prompt;
- ``train_log.jsonl``: one line per step (loss, lr, tokens/s; dev loss where evaluated);
- ``checkpoints/``: atomic checkpoints; a rerun after a crash resumes from the newest;
- ``train_summary.json``: the returned summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zimo.errors import DataError, ZimoError
from zimo.hw import cpu_info
from zimo.prompts import DEFAULT_SYSTEM, LabelPrompt
from zimo.train.batches import Example
from zimo.train.config import TrainConfig
from zimo.train.fitting import make_fitter, save_weights
from zimo.train.loop import ProgressFn
from zimo.train.setup import setup_threads, write_json


def balanced_subset(records: list[dict], n: int | None, seed: int) -> list[dict]:
    """At most ``n`` records, as class-balanced as the data allows (rare classes kept whole).

    A small subset of imbalanced data (13% spam) gives the model few minority examples; an
    equal share per label learns the rare class in far fewer steps.
    """
    if n is None or len(records) <= n:
        return list(records)
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    quota, left = {}, n
    for i, (lab, rows) in enumerate(sorted(by_label.items(), key=lambda kv: len(kv[1]))):
        quota[lab] = min(len(rows), left // (len(by_label) - i))
        left -= quota[lab]
    out = []
    for lab, rows in by_label.items():
        out += [rows[i] for i in rng.choice(len(rows), quota[lab], replace=False)]
    return [out[i] for i in rng.permutation(len(out))]


def stratified_subset(records: list[dict], n: int | None, seed: int) -> list[dict]:
    """At most ``n`` records with label proportions kept (every label keeps >= 1 row)."""
    if n is None or len(records) <= n:
        return list(records)
    from sklearn.model_selection import train_test_split

    labels = [r["label"] for r in records]
    try:
        keep, _ = train_test_split(records, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # a label with a single row cannot be stratified
        rng = np.random.default_rng(seed)
        keep = [records[i] for i in rng.choice(len(records), n, replace=False)]
    return list(keep)


def build_examples(
    records: list[dict], prompt: LabelPrompt, what: str
) -> tuple[list[Example], dict[str, int]]:
    """Tokenise label records; unusable rows are skipped and counted by reason."""
    out: list[Example] = []
    skipped = {"empty_text": 0, "unknown_label": 0}
    before = prompt.truncated
    for r in records:
        text, label = (r.get("text") or "").strip(), r.get("label")
        if not text:
            skipped["empty_text"] += 1
            continue
        if label not in prompt.labels:
            skipped["unknown_label"] += 1
            continue
        ids, targets = prompt.example(text, label)
        k = len(targets)
        pos = list(range(len(ids) - k, len(ids)))
        out.append(Example(ids=ids, pos=pos, targets=targets, group=prompt.labels.index(label)))
    skipped["truncated"] = prompt.truncated - before
    if what == "train" and not out:
        raise DataError(
            f"no usable training rows ({len(records)} given; skipped: {skipped})",
            "each row needs a non-empty text and a label from the declared labels",
        )
    return out, skipped


def _text_budget(prompt: LabelPrompt, max_length: int) -> int:
    """Tokens left for the text once the template, instruction and answer are counted."""
    overhead = len(prompt.prompt_ids("")) + max(len(a) for a in prompt.label_ids)
    budget = max_length - overhead
    if budget < 8:
        raise ZimoError(
            f"train.max_length={max_length} leaves {budget} tokens for the text after the prompt "
            f"({overhead} tokens)",
            f"raise train.max_length to at least {overhead + 32}",
        )
    return budget


def train_label(
    train_records: list[dict],
    dev_records: list[dict],
    labels: list[str],
    cfg: TrainConfig,
    out_dir: str | Path,
    progress: ProgressFn | None = None,
    positive_label: str | None = None,
    init_adapter: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``cfg.base`` to answer one of ``labels`` for each record's ``text``.

    Records are dicts with ``text`` and ``label`` (the Zimo record schema). Returns the summary
    dict (also written to ``out_dir/train_summary.json``). Rerunning with the same arguments after
    an interruption resumes from the newest checkpoint. With ``positive_label``, the decision
    threshold on P(positive) that maximises its F1 on ``dev_records`` (all of them) is stored in
    ``label_task.json`` and used by evaluation and serving. ``init_adapter``: a saved adapter
    of the same shape to continue instead of a fresh LoRA init (``zimo.train.warm_start``).
    """
    from zimo.models import load_tokenizer, resolve_model_dir

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = setup_threads(cfg)
    base_dir = resolve_model_dir(cfg.base)
    tok = load_tokenizer(base_dir)
    system = cfg.system if cfg.system is not None else DEFAULT_SYSTEM
    prompt = LabelPrompt(tok, list(labels), cfg.instruction, system=system)
    prompt.max_text_tokens = _text_budget(prompt, cfg.max_length)

    pick = balanced_subset if cfg.balance_labels else stratified_subset
    train_sel = pick(
        [r for r in train_records if r.get("label") in labels], cfg.max_train_rows, cfg.seed
    )
    train_ex, skipped_train = build_examples(train_sel, prompt, "train")
    dev_sel = stratified_subset(
        [r for r in dev_records if r.get("label") in labels], cfg.max_dev_rows, cfg.seed
    )
    dev_ex, _ = build_examples(dev_sel, prompt, "dev")
    skipped_train["unknown_label"] += sum(1 for r in train_records if r.get("label") not in labels)

    fitter, model, info = make_fitter(
        cfg, base_dir, train_ex, dev_ex, out_dir, tok.pad_token_id, progress=progress,
        run_key=f"label:{labels}:{prompt.instruction}:{system}:{len(train_ex)}:{len(dev_ex)}"
                f":{init_adapter}",
        init_adapter=init_adapter,
    )  # fmt: skip

    summary = fitter.fit()
    decision = None
    if positive_label in labels and fitter.rank == 0:
        decision = _dev_decision(
            model, tok, prompt, dev_records, labels, positive_label, fitter.bf16
        )
    save_weights(fitter, model, tok, cfg, out_dir)
    if fitter.rank == 0:
        _write_task(out_dir, cfg, labels, prompt, decision)
    summary.update(
        {
            "task": "label",
            "method": cfg.method,
            "base": cfg.base,
            "base_dir": str(base_dir),
            "labels": list(labels),
            "train_rows": len(train_ex),
            "dev_rows": len(dev_ex),
            "skipped_train_rows": skipped_train,
            "truncated_rows": skipped_train["truncated"],
            "mean_row_tokens": round(float(np.mean([e.n_tokens for e in train_ex])), 1),
            "device": str(fitter.device),
            "dtype": "bf16-frozen/fp32-trainable" if fitter.bf16 else "fp32",
            **info,
            "decision": decision,
            "threads": threads,
            "cpu": cpu_info()["model"],
            "wall_seconds": round(time.perf_counter() - t_start, 2),
        }
    )
    if fitter.rank == 0:
        write_json(out_dir / "train_summary.json", summary)
    return summary


def _dev_decision(
    model, tok, prompt: LabelPrompt, dev_records: list[dict], labels, positive: str, bf16: bool
) -> dict[str, Any] | None:
    """Score the whole dev split with the trained model and pick the P(positive) threshold."""
    from zimo.infer.label import LabelScorer, dev_threshold

    dev = [r for r in dev_records if r.get("label") in labels and (r.get("text") or "").strip()]
    if len(dev) < 10:
        return None
    model.eval()
    scorer = LabelScorer(
        model,
        tok,
        list(labels),
        prompt.instruction,
        system=prompt.system,
        max_text_tokens=prompt.max_text_tokens,
        autocast=bf16,
    )
    with torch.inference_mode():
        proba = scorer.predict_proba([r["text"] for r in dev], batch_size=16)
    y = np.array([labels.index(r["label"]) for r in dev])
    thr = dev_threshold(y, proba, labels.index(positive))
    if thr is None:
        return None
    return {"positive_label": positive, "decision_threshold": thr, "dev_rows": len(dev)}


def _write_task(out_dir: Path, cfg: TrainConfig, labels, prompt, decision) -> None:
    """``label_task.json``: the exact prompt and decision rule, for eval, serving and export."""
    write_json(
        out_dir / "label_task.json",
        {
            "labels": list(labels),
            "instruction": prompt.instruction,
            "system": prompt.system,
            "max_text_tokens": prompt.max_text_tokens,
            "base": cfg.base,
            "method": cfg.method,
            **(decision or {}),
        },
    )


__all__ = ["train_label", "build_examples", "stratified_subset"]
