"""Chat / instruction training: the tokenizer's chat template, loss on assistant turns only.

Records carry ``messages`` (``[{"role", "content"}, ...]``); Alpaca-style records with
``instruction`` / ``input`` / ``output`` are turned into a user + assistant pair. Assistant
token spans are found by rendering the conversation turn by turn, so the loss covers exactly
the assistant's tokens (and its end-of-turn token), whatever the template.

``train_chat`` writes the same outputs as ``train_label`` (``adapter/`` or ``model/``,
``train_log.jsonl``, ``checkpoints/``, ``train_summary.json``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import DataError
from zimo.hw import cpu_info
from zimo.prompts import ensure_chat_template
from zimo.train.batches import Example
from zimo.train.config import TrainConfig
from zimo.train.fitting import make_fitter, save_weights
from zimo.train.loop import ProgressFn
from zimo.train.setup import (
    setup_threads,
    write_json,
)


def record_messages(r: dict) -> list[dict[str, str]] | None:
    """Messages of a record (``messages``, or Alpaca ``instruction``/``input``/``output``)."""
    if r.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
    if r.get("instruction") and r.get("output"):
        user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}]
    return None


def _ids(tok, messages, gen: bool) -> list[int]:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def chat_example(tok, messages: list[dict], max_length: int) -> tuple[Example | None, str]:
    """Tokenise one conversation; returns (example or None, status: ok|truncated|reason)."""
    full = _ids(tok, messages, False)
    pos: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(_ids(tok, messages[:i], True))
        end = len(_ids(tok, messages[: i + 1], False))
        # Drop trailing whitespace tokens after the end-of-turn marker.
        while end > start and not tok.decode(full[end - 1 : end]).strip():
            end -= 1
        pos += [j - 1 for j in range(max(start, 1), end)]
    if not pos:
        return None, "no assistant turn"
    status = "ok"
    if len(full) > max_length:
        full = full[:max_length]
        pos = [p for p in pos if p + 1 < max_length]
        status = "truncated"
        if not pos:
            return None, "assistant turn beyond max_length"
    return Example(ids=full[:-1], pos=pos, targets=[full[p + 1] for p in pos]), status


def pack(examples: list[Example], max_length: int) -> list[Example]:
    """Greedily concatenate short rows up to ``max_length`` tokens (fewer, fuller rows).

    Packed rows attend across their parts (as in common packing trainers); with length
    bucketing on, padding is already small, so packing mainly helps many very short rows.
    """
    out: list[Example] = []
    cur: Example | None = None
    for e in sorted(examples, key=lambda e: e.n_tokens):
        if cur is not None and cur.n_tokens + e.n_tokens <= max_length:
            off = cur.n_tokens
            cur = Example(
                cur.ids + e.ids, cur.pos + [p + off for p in e.pos], cur.targets + e.targets
            )
        else:
            if cur is not None:
                out.append(cur)
            cur = Example(list(e.ids), list(e.pos), list(e.targets))
    if cur is not None:
        out.append(cur)
    return out


def build_chat_examples(records: list[dict], tok, cfg: TrainConfig, what: str):
    out, counts = [], {"ok": 0, "truncated": 0}
    for r in records:
        msgs = record_messages(r)
        if not msgs:
            counts["no messages"] = counts.get("no messages", 0) + 1
            continue
        ex, status = chat_example(tok, msgs, cfg.max_length)
        counts[status] = counts.get(status, 0) + 1
        if ex is not None:
            out.append(ex)
    if what == "train" and not out:
        raise DataError(
            f"no usable training conversations ({len(records)} given: {counts})",
            "records need `messages` with an assistant turn (or instruction/output)",
        )
    return out, counts


def train_chat(
    train_records: list[dict],
    dev_records: list[dict],
    cfg: TrainConfig,
    out_dir: str | Path,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fine-tune ``cfg.base`` on conversations; loss on assistant tokens only."""
    from zimo.models import load_tokenizer, resolve_model_dir

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = setup_threads(cfg)
    base_dir = resolve_model_dir(cfg.base)
    tok = load_tokenizer(base_dir)
    fallback = ensure_chat_template(tok)
    rng = np.random.default_rng(cfg.seed)
    if cfg.max_train_rows and len(train_records) > cfg.max_train_rows:
        train_records = [train_records[i] for i in rng.choice(len(train_records), cfg.max_train_rows, replace=False)]  # fmt: skip
    if cfg.max_dev_rows and len(dev_records) > cfg.max_dev_rows:
        dev_records = list(dev_records)[: cfg.max_dev_rows]
    train_ex, counts = build_chat_examples(train_records, tok, cfg, "train")
    dev_ex, _ = build_chat_examples(dev_records, tok, cfg, "dev")
    n_rows = len(train_ex)
    if cfg.packing:
        train_ex = pack(train_ex, cfg.max_length)

    fitter, model, info = make_fitter(
        cfg, base_dir, train_ex, dev_ex, out_dir, tok.pad_token_id, progress=progress,
        run_key=f"chat:{n_rows}:{len(dev_ex)}",
    )  # fmt: skip
    summary = fitter.fit()
    save_weights(fitter, model, tok, cfg, out_dir)
    summary.update(
        {
            "task": "chat",
            "method": cfg.method,
            "base": cfg.base,
            "train_conversations": n_rows,
            "train_rows": len(train_ex),
            "dev_rows": len(dev_ex),
            "row_status": counts,
            "truncated_rows": counts.get("truncated", 0),
            "fallback_chat_template": fallback,
            "device": str(fitter.device),
            **info,
            "threads": threads,
            "cpu": cpu_info()["model"],
            "wall_seconds": round(time.perf_counter() - t_start, 2),
        }
    )
    if fitter.rank == 0:
        write_json(out_dir / "train_summary.json", summary)
    return summary
