"""Does an exported GGUF label texts like the served sub-model? Checked with the real engines.

The reference is what ``zimo serve`` answers with its default engine: the trained LoRA
adapter on the base, through :mod:`zimo.serve.backends.transformers_peft` (the prompt and
decision rule of the sub-model's ``label_task.json``: system prompt, text truncation,
positive label and dev-tuned ``decision_threshold``). The candidate is the exported GGUF
served by :mod:`zimo.serve.backends.llamacpp` (the engine Ollama and phones run), given the
same sub-model metadata. Both go through the engines' own job queues, exactly as requests
would, so a difference anywhere (tokenisation, template, scoring, threshold, quantisation)
shows up as a disagreement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ZimoError


async def _label_all(backend: Any, model: str, texts: list[str]) -> list[Any]:
    from zimo.serve.backends.base import Job, SamplingParams

    jobs = []
    for t in texts:
        ids = backend.encode_chat(model, [{"role": "user", "content": t}])
        jobs.append(backend.submit(Job(model, ids, SamplingParams(), kind="label")))
    return list(await asyncio.gather(*(j.future for j in jobs)))


def start_engine(kind: str, sub: Any, *, base: str, threads: int | None = None) -> Any:
    """A started serving engine (``transformers`` or ``llamacpp``) serving ``sub``."""
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig

    cfg: dict[str, Any] = {"kind": kind, "base": base, "threads": threads}
    if kind == "llamacpp":
        cfg["n_ctx"] = 1024  # a label prompt is < 400 tokens (text clipped to max_text_tokens)
    be = make_backend(BackendConfig(**cfg))
    be.start()
    be.add_model(sub)
    return be


def label_texts(backend: Any, model: str, texts: list[str]) -> tuple[list[str], list[dict]]:
    """Labels and label probabilities of ``texts`` from a started engine (its job queue)."""
    results = asyncio.run(_label_all(backend, model, texts))
    return [r.text for r in results], [r.label_probs for r in results]


def label_with_engine(
    kind: str,
    sub: Any,
    texts: list[str],
    *,
    base: str,
    threads: int | None = None,
) -> dict[str, Any]:
    """Labels and label probabilities of ``texts`` from one serving engine (``kind``)."""
    t0 = time.perf_counter()
    be = start_engine(kind, sub, base=base, threads=threads)
    load_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        labels, probs = label_texts(be, sub.name, texts)
        score_s = time.perf_counter() - t1
    finally:
        be.close()
    return {"labels": labels, "probs": probs, "load_s": load_s, "score_s": score_s}


def _metrics(truth: list[str], pred: list[str], labels: list[str], positive: str | None) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    out = {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
    }
    if positive:
        out[f"{positive}_f1"] = float(
            f1_score(truth, pred, labels=[positive], average="macro", zero_division=0)
        )
    return out


def served_label_agreement(
    train_dir: str | Path,
    gguf_path: str | Path,
    texts: list[str],
    truth: list[str] | None = None,
    *,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    keep_predictions: bool = False,
    chunk: int = 32,
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """Compare the served sub-model in ``train_dir`` with ``gguf_path`` on ``texts``.

    Returns ``agreement`` (share of texts with the same label), per-engine label counts,
    accuracy / F1 against ``truth`` when given, the largest P(label) difference, the texts
    that disagree (with both engines' probabilities) and timings; with ``keep_predictions``
    also every label and probability (``predictions``). With ``time_budget_s`` it stops
    after the chunk that crosses the budget and reports the rows done (``n``,
    ``stopped_early``). Needs llama-cpp-python.
    """
    from zimo.serve.backends.llamacpp import require_llama_cpp
    from zimo.serve.registry import load_submodel

    require_llama_cpp()
    sub = load_submodel(train_dir)
    if sub.task != "label":
        raise ZimoError(f"{train_dir} is not a label sub-model", "this check needs a label task")
    base = str(sub.metadata.get("base") or "gecko")
    exported = sub.model_copy(
        update={"adapter_dir": None, "metadata": {**sub.metadata, "gguf": str(gguf_path)}}
    )
    t0 = time.perf_counter()
    served_be = start_engine("transformers", sub, base=base, threads=threads)
    t1 = time.perf_counter()
    gguf_be = start_engine("llamacpp", exported, base=base, threads=threads)
    t2 = time.perf_counter()
    served = {"labels": [], "probs": [], "load_s": t1 - t0, "score_s": 0.0}
    gguf = {"labels": [], "probs": [], "load_s": t2 - t1, "score_s": 0.0}
    stopped = False
    try:
        # Both engines side by side, chunk by chunk: timings share the same machine state,
        # and a time budget still leaves a complete comparison of the rows done so far.
        for i in range(0, len(texts), chunk):
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                stopped = True
                break
            part = texts[i : i + chunk]
            for be, name, acc in ((served_be, sub.name, served), (gguf_be, exported.name, gguf)):
                t = time.perf_counter()
                labels, probs = label_texts(be, name, part)
                acc["score_s"] += time.perf_counter() - t
                acc["labels"] += labels
                acc["probs"] += probs
            if progress:
                progress(len(part))
    finally:
        served_be.close()
        gguf_be.close()
    texts = texts[: len(served["labels"])]
    truth = truth[: len(texts)] if truth is not None else None
    same = [a == b for a, b in zip(served["labels"], gguf["labels"], strict=True)]
    pos = sub.metadata.get("positive_label")
    probe = pos or sub.labels[-1]
    diffs = [abs(a[probe] - b[probe]) for a, b in zip(served["probs"], gguf["probs"], strict=True)]
    out: dict[str, Any] = {
        "n": len(texts),
        "stopped_early": stopped,
        "agreement": sum(same) / max(len(texts), 1),
        "disagreements": [
            {
                "index": i,
                "text": texts[i][:200],
                "served": served["labels"][i],
                "gguf": gguf["labels"][i],
                f"p_{probe}_served": round(served["probs"][i][probe], 4),
                f"p_{probe}_gguf": round(gguf["probs"][i][probe], 4),
            }
            for i, ok in enumerate(same)
            if not ok
        ],
        f"max_abs_p_{probe}_diff": float(max(diffs, default=0.0)),
        f"mean_abs_p_{probe}_diff": float(np.mean(diffs)) if diffs else 0.0,
        "decision_threshold": sub.metadata.get("decision_threshold"),
        "positive_label": pos,
        "label_counts": {
            "served": {lab: served["labels"].count(lab) for lab in sub.labels},
            "gguf": {lab: gguf["labels"].count(lab) for lab in sub.labels},
        },
        "seconds": {
            "served_load": round(served["load_s"], 1),
            "served_score": round(served["score_s"], 1),
            "gguf_load": round(gguf["load_s"], 1),
            "gguf_score": round(gguf["score_s"], 1),
        },
    }
    if keep_predictions:
        out["predictions"] = {
            "served": {"labels": served["labels"], "probs": served["probs"]},
            "gguf": {"labels": gguf["labels"], "probs": gguf["probs"]},
        }
    if truth is not None:
        out["served_metrics"] = _metrics(truth, served["labels"], sub.labels, pos)
        out["gguf_metrics"] = _metrics(truth, gguf["labels"], sub.labels, pos)
    return out
