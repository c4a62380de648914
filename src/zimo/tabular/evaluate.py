"""Evaluate a table sub-model on the test split beside its baselines; write the report.

Systems: ``lightgbm`` (the sub-model), ``baseline_mean`` (the train mean, or the majority class)
and ``linear`` (ridge / logistic regression on the same features). Every metric has a bootstrap
confidence interval; ``metrics.json`` holds them and the headline that ``zimo status`` shows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from zimo.fileio import read_json_optional, write_json_atomic


def _latency(pred, df: pd.DataFrame, n: int) -> dict[str, float | None]:
    rows = df.drop(columns=[pred.plan.target], errors="ignore").head(n).to_dict("records")
    single = []
    for row in rows:
        t0 = time.perf_counter()
        pred.answer_rows([row])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    pred.answer_rows(df.drop(columns=[pred.plan.target], errors="ignore").to_dict("records"))
    batch_s = time.perf_counter() - t0
    return {
        "latency_ms_p50": float(np.percentile(single, 50) * 1000) if single else None,
        "rows_per_s": float(len(df) / batch_s) if batch_s > 0 else None,
    }


def evaluate_tabular(project, test: pd.DataFrame, train_dir: Path, out_dir: Path,
                     console: Console | None = None) -> dict[str, Any]:  # fmt: skip
    import joblib

    from zimo.tabular import metrics as M
    from zimo.tabular.learn import target_values
    from zimo.tabular.predictor import TabularPredictor
    from zimo.tabular.report import gain_importance, shap_importance, write_report

    console = console or Console(stderr=True)
    cfg = project.config
    ecfg = cfg.eval
    pred = TabularPredictor(train_dir)
    plan = pred.plan
    y = target_values(test, plan)
    X, unseen = pred.features.transform(test)
    out = pred.predict_matrix(X, unseen)
    systems: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    base = read_json_optional(train_dir / "baselines.json")
    linear = joblib.load(train_dir / "linear.joblib")
    reg = plan.objective == "regression"
    tol = cfg.tabular.tolerance
    n_boot = ecfg.bootstrap_samples
    if "lightgbm" in ecfg.systems:
        systems["lightgbm"] = {"pred": out["prediction"]}
        if reg and "lower" in out:
            systems["lightgbm"].update(lo=out["lower"], hi=out["upper"])
        if not reg:
            systems["lightgbm"]["proba"] = out["proba"]
    if "baseline_mean" in ecfg.systems:
        if reg:
            systems["baseline_mean"] = {"pred": np.full(len(y), base["mean"])}
        else:
            prior = np.tile(np.asarray(base["prior"]), (len(y), 1))
            systems["baseline_mean"] = {"pred": prior.argmax(axis=1), "proba": prior}
    if "linear" in ecfg.systems:
        if reg:
            systems["linear"] = {"pred": linear.predict(X)}
        else:
            proba = np.zeros((len(y), len(plan.classes or [])))
            proba[:, linear.classes_] = linear.predict_proba(X)
            systems["linear"] = {"pred": proba.argmax(axis=1), "proba": proba}
    for name, s in systems.items():
        if reg:
            metrics[name] = M.regression_metrics(y, s["pred"], tolerance=tol, n_boot=n_boot)
            if "lo" in s:
                metrics[name]["interval"] = M.interval_coverage(y, s["lo"], s["hi"])
        else:
            metrics[name] = M.classification_metrics(y, s["proba"], plan.classes, n_boot=n_boot)
    if "lightgbm" in metrics and ecfg.latency_samples:
        metrics["lightgbm"].update(_latency(pred, test, ecfg.latency_samples))
    importance = {
        "gain": gain_importance(pred.booster, pred.features.feature_names),
        "shap": shap_importance(pred.booster, X, pred.features.feature_names),
    }
    keys = ["r2", "mae", "rmse", "mape", "within_tol"] if reg else ["accuracy", "macro_f1"]
    # Every system has every key (None where it does not apply), as the label headline has.
    headline = {
        name: {k: m.get(k) for k in keys + ["latency_ms_p50", "rows_per_s"]}
        for name, m in metrics.items()
    }
    notes = list(plan.notes)
    if unseen:
        notes.append("test values never seen in training (answered as missing): "
                     + ", ".join(f"{k} ×{v}" for k, v in unseen.items()))  # fmt: skip
    columns = [{"name": c.name, "kind": c.kind, "reason": c.reason} for c in plan.columns]
    write_report(out_dir, title=f"{cfg.name}: {plan.objective} of {plan.target}",
                 task=plan.objective, y_true=y, systems=systems, metrics=metrics,
                 importance=importance, columns=columns, notes=notes)  # fmt: skip
    result = {
        "task": "tabular",
        "objective": plan.objective,
        "target": plan.target,
        "test_rows": int(len(y)),
        "systems": metrics,
        "headline": headline,
        "importance": importance,
        "tolerance": tol,
    }
    write_json_atomic(out_dir / "metrics.json", result)
    from zimo.eval.label_eval import _print_table

    _print_table(console, {"headline": headline})
    return result
