"""Train a table's sub-model: LightGBM with early stopping on dev, quantile models for a
prediction interval, and the baselines the report puts beside it.

Everything a prediction needs is written to one folder: ``model.txt`` (LightGBM's own text
format), ``lower.txt``/``upper.txt`` (interval), ``features.json`` (the fitted feature steps),
``baselines.json`` and ``linear.joblib``. Seeded and single-machine deterministic
(``deterministic=True``, fixed thread count).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zimo.fileio import atomic_path, write_json_atomic
from zimo.tabular.columns import TablePlan, as_numeric, normalise_missing
from zimo.tabular.config import LightGBMTrainConfig, TabularConfig
from zimo.tabular.features import FeatureBuilder


def target_values(df: pd.DataFrame, plan: TablePlan) -> np.ndarray:
    """Regression: floats. Classification: codes into ``plan.classes`` (-1 = not a class)."""
    if plan.objective == "regression":
        return as_numeric(df[plan.target])[0].to_numpy(float)
    index = {c: i for i, c in enumerate(plan.classes or [])}
    raw = normalise_missing(df[plan.target])
    return np.array([index.get(str(v), -1) if isinstance(v, str) or v == v else -1 for v in raw])


def threads_for(n_cells: int) -> int:
    """LightGBM's OpenMP threads: one for a small table, where spinning threads cost more than
    they save (a 1k-row table took 49 s on two busy cores, under 1 s on one), else the cores."""
    return 1 if n_cells < 200_000 else min(os.cpu_count() or 1, 8)


def lgb_params(cfg: LightGBMTrainConfig, plan: TablePlan, objective: str | None = None,
               n_cells: int = 10**9) -> dict:  # fmt: skip
    params: dict[str, Any] = {
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_child_samples": cfg.min_child_samples,
        "bagging_fraction": cfg.subsample,
        "bagging_freq": 1 if cfg.subsample < 1 else 0,
        "feature_fraction": cfg.colsample,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,  # deterministic=True needs one histogram layout
        "num_threads": cfg.threads or threads_for(n_cells),
        "verbosity": -1,
    }
    if objective is not None:
        params["objective"] = objective
    elif plan.objective == "regression":
        params["objective"] = "regression"
    elif plan.objective == "binary":
        params["objective"] = "binary"
    else:
        params["objective"] = "multiclass"
        params["num_class"] = len(plan.classes or [])
    return params


def _linear_baseline(plan: TablePlan, fb: FeatureBuilder, X: np.ndarray, y: np.ndarray, seed: int):
    """Ridge / logistic regression on standardised numbers and one-hot categories: what a
    careful analyst's first model looks like, so LightGBM's gain over it is meaningful."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cat = fb.categorical
    num = [i for i in range(X.shape[1]) if i not in cat]
    parts = [("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num)]
    if cat:
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cat,
            )  # fmt: skip
        )
    pre = ColumnTransformer(parts)
    if plan.objective == "regression":
        est = Ridge(alpha=1.0)
    else:
        est = LogisticRegression(max_iter=2000, random_state=seed)
    model = make_pipeline(pre, est)
    model.fit(X, y)
    return model


def train_tabular(
    train_df: pd.DataFrame,
    dev_df: pd.DataFrame,
    plan: TablePlan,
    cfg: LightGBMTrainConfig,
    tab: TabularConfig,
    out_dir: Path,
    *,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    import joblib
    import lightgbm as lgb

    out_dir.mkdir(parents=True, exist_ok=True)
    fb = FeatureBuilder(plan).fit(train_df)
    X_tr, _ = fb.transform(train_df)
    X_dv, unseen_dev = fb.transform(dev_df)
    y_tr, y_dv = target_values(train_df, plan), target_values(dev_df, plan)
    if len(dev_df) == 0:
        raise ValueError("the dev split is empty: raise `split.dev` for early stopping")
    n_cells = X_tr.shape[0] * max(X_tr.shape[1], 1)
    params = lgb_params(cfg, plan, n_cells=n_cells)
    t0 = time.perf_counter()
    curve: list[dict] = []

    def record(env) -> None:
        for _data, metric, value, _ in env.evaluation_result_list:
            curve.append({"round": env.iteration + 1, "metric": metric, "dev": float(value)})
        if progress and (env.iteration % 10 == 0):
            progress({"step": env.iteration + 1, "total_steps": cfg.max_rounds,
                      "loss": float(env.evaluation_result_list[0][2])})  # fmt: skip

    if cfg.engine == "dask":
        from zimo.tabular.dask_engine import train_dask

        booster = train_dask(
            X_tr, y_tr, X_dv, y_dv, params=params, num_boost_round=cfg.max_rounds,
            early_stopping_rounds=cfg.early_stopping_rounds, categorical=fb.categorical,
            n_workers=cfg.dask_workers,
        )  # fmt: skip
        best = booster.best_iteration or booster.current_iteration()
    else:
        dtrain = lgb.Dataset(X_tr, y_tr, feature_name=_safe_names(fb.feature_names),
                             categorical_feature=fb.categorical, free_raw_data=False)  # fmt: skip
        ddev = lgb.Dataset(X_dv, y_dv, reference=dtrain)
        booster = lgb.train(
            params, dtrain, num_boost_round=cfg.max_rounds, valid_sets=[ddev],
            valid_names=["dev"],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False), record],
        )  # fmt: skip
        best = booster.best_iteration or booster.current_iteration()
    fit_s = time.perf_counter() - t0
    booster.save_model(str(out_dir / "model.txt"), num_iteration=best)
    summary: dict[str, Any] = {
        "engine": cfg.engine,
        "best_iteration": int(best),
        "fit_s": round(fit_s, 3),
        "train_rows": int(len(train_df)),
        "dev_rows": int(len(dev_df)),
        "features": len(fb.feature_names),
        "unseen_categories_dev": unseen_dev,
    }
    if plan.objective == "regression" and tab.interval:
        alpha = (1 - tab.interval) / 2
        for name, q in (("lower", alpha), ("upper", 1 - alpha)):
            qb = lgb.train(
                lgb_params(cfg, plan, "quantile", n_cells) | {"alpha": q},
                lgb.Dataset(
                    X_tr,
                    y_tr,
                    feature_name=_safe_names(fb.feature_names),
                    categorical_feature=fb.categorical,
                ),  # fmt: skip
                num_boost_round=int(best),
            )
            qb.save_model(str(out_dir / f"{name}.txt"))
        summary["interval"] = tab.interval
    # Baselines, fitted on the same train split.
    if plan.objective == "regression":
        baselines = {"mean": float(np.mean(y_tr))}
    else:
        counts = np.bincount(y_tr[y_tr >= 0], minlength=len(plan.classes or []))
        baselines = {"prior": (counts / counts.sum()).tolist()}
    write_json_atomic(out_dir / "baselines.json", baselines)
    linear = _linear_baseline(plan, fb, X_tr, y_tr, cfg.seed)
    with atomic_path(out_dir / "linear.joblib") as tmp:
        joblib.dump(linear, tmp)
    write_json_atomic(out_dir / "features.json", fb.to_json())
    write_json_atomic(out_dir / "train_curve.json", curve)
    return summary


def _safe_names(names: list[str]) -> list[str]:
    """LightGBM rejects some characters in feature names (JSON specials); keep the order."""
    out = []
    for n in names:
        s = "".join(ch if ch.isalnum() or ch in "_.-()" else "_" for ch in n)
        out.append(s)
    # Two names that became equal would confuse importance tables: number them.
    seen: dict[str, int] = {}
    for i, s in enumerate(out):
        if s in seen:
            out[i] = f"{s}_{i}"
        seen[s] = i
    return out
