"""Evaluation of label tasks: the sub-model side by side with the untuned base model
(zero-shot, same prompt) and a classical baseline (TF-IDF + logistic regression).

Every system yields class probabilities for the same test rows, so the same metrics apply:
accuracy, macro-F1, per-class F1, confusion, calibration (ECE), latency and cost.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from zimo.fileio import write_json_atomic
from zimo.infer.label import decide, dev_threshold
from zimo.submodel_meta import LabelTask, SubModelMeta


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-class confidence with equal-width bins (Guo et al. 2017)."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def label_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    labels: list[str],
    positive: str | None,
    pred: np.ndarray | None = None,
) -> dict[str, Any]:
    pred = proba.argmax(axis=1) if pred is None else pred
    idx = list(range(len(labels)))
    per = f1_score(y_true, pred, labels=idx, average=None, zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=idx, average="macro", zero_division=0)),
        "per_class_f1": {lab: float(v) for lab, v in zip(labels, per, strict=True)},
        "confusion": confusion_matrix(y_true, pred, labels=idx).tolist(),
        "ece": expected_calibration_error(y_true, proba),
    }
    if positive:
        out[f"{positive}_f1"] = out["per_class_f1"][positive]
    return out


def tfidf_logreg(train_texts, train_y, test_texts, seed: int = 0, latency_samples: int = 32):
    """The classical baseline: word 1-2-grams + char 2-5-grams TF-IDF, logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced", random_state=seed),
    )
    t0 = time.perf_counter()
    model.fit(train_texts, train_y)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = model.predict_proba(test_texts)
    batch_s = time.perf_counter() - t0
    single = []
    for t in test_texts[:latency_samples]:
        t1 = time.perf_counter()
        model.predict_proba([t])
        single.append(time.perf_counter() - t1)
    return model, proba, {"fit_s": fit_s, "batch_s": batch_s, "single_s": single}


def _latency(single: list[float], batch_s: float, n: int, price_per_hour: float) -> dict:
    per_req = batch_s / max(n, 1)
    return {
        "latency_ms_p50": float(np.percentile(single, 50) * 1000) if single else None,
        "latency_ms_p95": float(np.percentile(single, 95) * 1000) if single else None,
        "throughput_rps": float(n / batch_s) if batch_s > 0 else None,
        # Local compute priced by machine time: batched seconds per request × price.
        "cost_per_1k": float(per_req * 1000 * price_per_hour / 3600),
    }


def _lm_systems(project, train_dir: Path, texts_of: dict[str, list[str]], console):
    """Probabilities from the fine-tuned adapter and from the same base with it disabled, each
    on its own list of texts (``texts_of[system]``)."""
    import torch
    from peft import PeftModel

    from zimo.infer.label import LabelScorer
    from zimo.models import load_causal_lm

    cfg = project.config
    meta = SubModelMeta.read(train_dir)
    model, tok = load_causal_lm(meta.base)
    if meta.adapter:
        model = PeftModel.from_pretrained(model, str(meta.adapter_dir(train_dir)))
    model.eval()
    from zimo.infer import fastpath

    # int8 base weights where the CPU has no fast bf16 (zimo.hw.cpu_prefers_int8, ZIMO_INT8).
    # The fine-tuned system runs a copy with the (fixed) adapter merged into its layers before
    # quantising (fastpath.merged_int8: one int8 GEMM per layer instead of GEMM + LoRA); the
    # zero-shot system needs the unmerged base, so both are kept, sharing every layer the
    # adapter does not touch. The float weights are kept only until the merge has read them.
    device = str(next(model.parameters()).device)
    merge = bool(meta.adapter) and "finetuned" in texts_of
    tuned, weights = fastpath.prepare_for_label_scoring(model, tok, device, merge=merge)
    merged = tuned if weights["merged"] else None
    bs = cfg.eval.batch_size
    out: dict[str, tuple[np.ndarray, dict]] = {}
    order = [s for s in ("finetuned", "base_zero_shot") if s in texts_of]
    with Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        for name in order:
            texts = texts_of[name]
            task = trained_label_task(train_dir, cfg)
            scorer = LabelScorer(
                merged if name == "finetuned" and merged is not None else model,
                tok,
                cfg.labels,
                task.instruction,
                system=task.system,
                max_text_tokens=task.max_text_tokens or 256,
                frozen=True,
            )
            task = progress.add_task(f"eval {name}", total=len(texts))

            def run(batch_texts, _scorer=scorer):
                return _scorer.predict_proba(batch_texts, batch_size=bs)

            ctx = (
                model.disable_adapter()
                if name == "base_zero_shot" and meta.adapter
                else nullcontext()
            )
            with ctx, torch.inference_mode():
                t0 = time.perf_counter()
                parts = []
                for i in range(0, len(texts), bs * 4):
                    parts.append(run(texts[i : i + bs * 4]))
                    progress.update(task, advance=len(texts[i : i + bs * 4]))
                batch_s = time.perf_counter() - t0
                single = []
                for t in texts[: cfg.eval.latency_samples]:
                    t1 = time.perf_counter()
                    run([t])
                    single.append(time.perf_counter() - t1)
            out[name] = (
                np.concatenate(parts),
                {
                    "batch_s": batch_s,
                    "single_s": single,
                    "weights": ("int8, adapter merged" if scorer.model is merged else "int8")
                    if weights["int8"]
                    else ("bf16" if scorer.uses_bf16 else "fp32"),
                },
            )
    return out


def trained_label_task(train_dir: Path, cfg) -> LabelTask:
    """The exact prompt the adapter was trained with, so zero-shot and fine-tuned see the same
    (from the project's config for an artifact older than ``label_task.json``)."""
    from zimo.prompts import DEFAULT_SYSTEM

    task = LabelTask.read_optional(train_dir)
    if task is not None:
        return task
    return LabelTask(
        instruction=(cfg.lm_train() and cfg.lm_train().instruction) or cfg.instruction,
        system=(cfg.lm_train() and cfg.lm_train().system) or DEFAULT_SYSTEM,
    )


def evaluate_label_project(
    project,
    train: list[dict],
    test: list[dict],
    train_dir: Path | None,
    out_dir: Path,
    console=None,
    dev: list[dict] | None = None,
    classical: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Score every configured system on the test split; write metrics.json and report.html.

    With a ``positive_label`` and ``eval.decision: dev_threshold`` each system's decision
    threshold on P(positive) is chosen on the dev split (never on test), as a deployed
    classifier would be tuned."""
    console = console or Console(stderr=True)
    cfg = project.config
    labels = cfg.labels
    lab_idx = {lab: i for i, lab in enumerate(labels)}
    if cfg.eval.max_test_rows and len(test) > cfg.eval.max_test_rows:
        rng = np.random.default_rng(cfg.split.seed)
        keep = sorted(rng.choice(len(test), cfg.eval.max_test_rows, replace=False))
        test = [test[i] for i in keep]
    texts = [r["text"] for r in test]
    y = np.array([lab_idx[r["label"]] for r in test])
    dev = [r for r in (dev or []) if r.get("label") in lab_idx]
    pos = lab_idx[cfg.positive_label] if cfg.positive_label else None
    calibrate = pos is not None and cfg.eval.decision == "dev_threshold" and len(dev) >= 10
    dev_texts = [r["text"] for r in dev] if calibrate else []
    y_dev = np.array([lab_idx[r["label"]] for r in dev]) if calibrate else np.array([])
    thresholds: dict[str, float | None] = {}
    # The threshold training chose on the same dev split and ships with the sub-model, if any.
    stored = trained_label_task(train_dir, cfg).decision_threshold if train_dir else None

    def scored(name: str, proba_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split test/dev probabilities, fit the dev threshold, return (proba, pred) on test."""
        proba, p_dev = proba_all[: len(texts)], proba_all[len(texts) :]
        if calibrate and name == "finetuned" and stored is not None:
            # Evaluate exactly the rule that serving applies.
            thresholds[name] = float(stored)
        else:
            thresholds[name] = dev_threshold(y_dev, p_dev, pos) if calibrate else None
        return proba, decide(proba, pos, thresholds[name])

    price = cfg.eval.machine_price_per_hour
    overlap = len({r["text"] for r in train} & set(texts))
    systems: dict[str, dict[str, Any]] = {}
    probas: dict[str, np.ndarray] = {}
    preds: dict[str, np.ndarray] = {}
    if "tfidf_logreg" in cfg.eval.systems:
        _, proba_all, t = tfidf_logreg(
            [r["text"] for r in train],
            [lab_idx[r["label"]] for r in train],
            texts + dev_texts,
            seed=cfg.split.seed,
        )
        proba, pred = scored("tfidf_logreg", proba_all)
        probas["tfidf_logreg"] = proba
        preds["tfidf_logreg"] = pred
        systems["tfidf_logreg"] = {
            **label_metrics(y, proba, labels, cfg.positive_label, pred),
            **_latency(t["single_s"], t["batch_s"], len(texts) + len(dev_texts), price),
        }
    for name, folder in (classical or {}).items():
        probas[name], preds[name], thresholds[name], systems[name] = _classical_system(
            folder, texts, y, cfg, price
        )
    # The LM systems need a trained LM sub-model (base_zero_shot runs its base with the
    # adapter switched off); a project of classical sub-models only has neither.
    lm = [s for s in cfg.eval.systems if s in ("finetuned", "base_zero_shot")] if train_dir else []
    if lm:
        # A fine-tuned model that ships its dev threshold needs no dev pass.
        per_system = {
            s: texts if s == "finetuned" and stored is not None else texts + dev_texts for s in lm
        }
        for name, (proba_all, t) in _lm_systems(project, train_dir, per_system, console).items():
            proba, pred = scored(name, proba_all)
            probas[name] = proba
            preds[name] = pred
            systems[name] = {
                **label_metrics(y, proba, labels, cfg.positive_label, pred),
                **_latency(t["single_s"], t["batch_s"], len(per_system[name]), price),
                "weights": t["weights"],
            }
    for name, thr in thresholds.items():
        systems[name]["decision_threshold"] = thr
    order = [s for s in ("finetuned", *(classical or {}), "base_zero_shot", "tfidf_logreg")
             if s in systems]  # fmt: skip
    head_keys = ["accuracy", "macro_f1", "ece", "latency_ms_p50", "cost_per_1k"]
    if cfg.positive_label:
        head_keys.insert(0, f"{cfg.positive_label}_f1")
    headline = {s: {k: systems[s][k] for k in head_keys} for s in order}
    disagreements = _disagreements(texts, y, labels, order, preds) if len(probas) > 1 else []
    result = {
        "task": "label",
        "labels": labels,
        "positive_label": cfg.positive_label,
        "test_rows": len(texts),
        "train_test_overlap": overlap,
        "systems": {s: systems[s] for s in order},
        "headline": headline,
        "disagreements": disagreements[:50],
        "assumptions": _assumptions(cfg, price, len(dev_texts) if calibrate else None),
    }
    if overlap:
        console.print(f"  [yellow]warning: {overlap} test texts also appear in train[/yellow]")
    write_json_atomic(out_dir / "metrics.json", result)
    from zimo.eval.report import write_label_report

    write_label_report(out_dir / "report.html", project, result, train_dir, classical)
    _print_table(console, result)
    return result


def _classical_system(folder: Path, texts: list[str], y: np.ndarray, cfg, price: float):
    """A classical sub-model scored as served, with the threshold it ships with:
    ``(proba, pred, threshold, metrics)``."""
    from zimo.classical.model import ClassicalPredictor

    cp = ClassicalPredictor(folder)
    t0 = time.perf_counter()
    proba = cp.predict_proba(texts)
    batch_s = time.perf_counter() - t0
    single = []
    for t in texts[: max(cfg.eval.latency_samples, 1)]:
        t1 = time.perf_counter()
        cp.label(t)
        single.append(time.perf_counter() - t1)
    pred = cp.decide(proba)
    metrics = {**label_metrics(y, proba, cfg.labels, cfg.positive_label, pred),
               **_latency(single, batch_s, len(texts), price)}  # fmt: skip
    return proba, pred, cp.threshold, metrics


def _disagreements(texts: list[str], y: np.ndarray, labels: list[str], order: list[str],
                   preds: dict[str, np.ndarray]) -> list[dict[str, Any]]:  # fmt: skip
    """Test texts on which the systems answer differently, with the gold label."""
    out = []
    for i in range(len(texts)):
        answers = {s: labels[int(preds[s][i])] for s in order}
        if len(set(answers.values())) > 1:
            out.append({"text": texts[i], "gold": labels[int(y[i])], **answers})
    return out


def _assumptions(cfg, price: float, n_dev: int | None) -> dict[str, Any]:
    decision = (
        f"P({cfg.positive_label}) >= a threshold chosen per system on the dev split "
        f"({n_dev} rows) to maximise {cfg.positive_label} F1"
        if n_dev is not None
        else "argmax of the label probabilities"
    )
    return {
        "machine_price_per_hour": price,
        "cost": "local systems: batched seconds per request × machine price per hour",
        "latency": "single-request wall time on this machine, first test rows",
        "decision": decision,
    }


def _print_table(console: Console, result: dict[str, Any]) -> None:
    from rich.table import Table

    head = result["headline"]
    if not head:
        return
    keys = list(next(iter(head.values())).keys())
    table = Table(title="evaluation on the test split", title_justify="left")
    table.add_column("system")
    for k in keys:
        table.add_column(k, justify="right")
    for s, vals in head.items():
        table.add_row(s, *[_fmt(vals[k]) for k in keys])
    console.print(table)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)
