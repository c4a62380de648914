"""The stages of a table project: ingest (typed table + quarantine + column plan), split
(random, by time or by group), train (LightGBM), eval (against the baselines, HTML report)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from zimo.errors import ConfigError, DataError
from zimo.fileio import write_bytes_atomic, write_json_atomic
from zimo.stages.base import StageContext, StageResult

TABLE = "table.parquet"
PLAN = "plan.json"


def _write_frame(df: pd.DataFrame, path: Path) -> None:
    """Parquet, written atomically; object columns as strings so mixed cells round-trip."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(lambda v: None if v is None or v != v else str(v))
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    write_bytes_atomic(path, buf.getvalue())


def run_ingest(ctx: StageContext) -> StageResult:
    from zimo.tabular.columns import as_numeric, infer_plan, normalise_missing, read_frame

    cfg = ctx.project.config
    tab = cfg.tabular
    df, rejects = read_frame(ctx.project.data_path(), cfg.data.format)
    plan = infer_plan(df, tab.target, objective=tab.objective, kinds=tab.columns,
                      exclude=tab.exclude)  # fmt: skip
    # Rows whose target is missing (or not a number, for a regression) cannot teach anything.
    y = normalise_missing(df[tab.target])
    bad = y.isna()
    why = pd.Series("target missing", index=df.index)
    if plan.objective == "regression":
        num, _ = as_numeric(df[tab.target])
        not_num = num.isna() & ~bad
        why[not_num] = "target is not a number"
        bad |= not_num
    for i in np.flatnonzero(bad.to_numpy()):
        rejects.append({"row": int(i) + 2, "reason": f"{why.iloc[i]} ({tab.target})",
                        "raw": json.dumps(df.iloc[i].to_dict(), default=str)[:500]})  # fmt: skip
    df = df[~bad].reset_index(drop=True)
    if len(df) < 20:
        raise DataError(f"only {len(df)} usable rows in the table", "a model needs at least 20")
    _write_frame(df, ctx.work / TABLE)
    write_json_atomic(ctx.work / PLAN, plan.to_json())
    with open(ctx.work / "rejects.jsonl", "w", encoding="utf-8") as f:
        for r in rejects:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    reasons: dict[str, int] = {}
    for r in rejects:
        key = r["reason"].split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if rejects:
        ctx.console.print(f"  [yellow]quarantined {len(rejects)} bad row(s)[/yellow]: "
                          + "; ".join(f"{k} ×{v}" for k, v in reasons.items()))  # fmt: skip
    excluded = {c.name: c.reason for c in plan.columns if c.kind == "excluded"}
    for name, reason in excluded.items():
        ctx.console.print(f"  [dim]column {name!r} not used: {reason}[/dim]")
    return StageResult(
        rows={"rows": len(df), "rejects": len(rejects)},
        summary={
            "objective": plan.objective,
            "reject_reasons": reasons,
            "excluded": excluded,
            "notes": plan.notes,
        },  # fmt: skip
    )


def _load_plan(ingest_dir: Path):
    from zimo.tabular.columns import TablePlan

    return TablePlan.from_json(json.loads((ingest_dir / PLAN).read_text(encoding="utf-8")))


def split_table(df: pd.DataFrame, plan, scfg) -> dict[str, np.ndarray]:
    """Row indices per split: random (stratified for classes), by time, or by group."""
    from zimo.tabular.columns import as_datetime, normalise_missing

    n = len(df)
    rng = np.random.default_rng(scfg.seed)
    n_test, n_dev = max(1, round(scfg.test * n)), max(1, round(scfg.dev * n)) if scfg.dev else 0
    if scfg.by:
        if scfg.by not in df.columns:
            raise ConfigError(f"split.by column {scfg.by!r} is not in the data",
                              f"columns are: {', '.join(df.columns[:30])}")  # fmt: skip
        t, share = as_datetime(df[scfg.by])
        key = t.astype("int64").to_numpy(float) if share >= 0.95 else None
        if key is None:
            from zimo.tabular.columns import as_numeric

            num, nshare = as_numeric(df[scfg.by])
            if nshare < 0.95:
                raise DataError(f"split.by column {scfg.by!r} is neither a date nor a number",
                                "pick a time column")  # fmt: skip
            key = num.to_numpy(float)
        key = np.where(np.isnan(key) | (key < -9e18), -np.inf, key)
        order = np.argsort(key, kind="stable")
        return {"train": np.sort(order[: n - n_test - n_dev]),
                "dev": np.sort(order[n - n_test - n_dev : n - n_test]),
                "test": np.sort(order[n - n_test :])}  # fmt: skip
    if scfg.group:
        if scfg.group not in df.columns:
            raise ConfigError(f"split.group column {scfg.group!r} is not in the data",
                              f"columns are: {', '.join(df.columns[:30])}")  # fmt: skip
        groups = normalise_missing(df[scfg.group]).fillna("__missing__").astype(str).to_numpy()
        uniq = np.unique(groups)
        rng.shuffle(uniq)
        sizes = pd.Series(groups).value_counts()
        assign: dict[str, str] = {}
        filled = {"test": 0, "dev": 0}
        for g in uniq:
            if filled["test"] < n_test:
                assign[g] = "test"
            elif filled["dev"] < n_dev:
                assign[g] = "dev"
            else:
                assign[g] = "train"
            if assign[g] in filled:
                filled[assign[g]] += int(sizes[g])
        where = np.array([assign[g] for g in groups])
        return {s: np.flatnonzero(where == s) for s in ("train", "dev", "test")}
    if plan.objective != "regression" and scfg.stratify:
        from sklearn.model_selection import train_test_split

        idx = np.arange(n)
        y = normalise_missing(df[plan.target]).astype(str).to_numpy()
        strat = y if pd.Series(y).value_counts().min() >= 2 else None
        rest, test = train_test_split(idx, test_size=n_test, random_state=scfg.seed, stratify=strat)
        if not n_dev:
            return {"train": np.sort(rest), "dev": np.array([], int), "test": np.sort(test)}
        strat2 = (
            y[rest] if strat is not None and pd.Series(y[rest]).value_counts().min() >= 2 else None
        )
        train, dev = train_test_split(
            rest, test_size=n_dev, random_state=scfg.seed, stratify=strat2
        )
        return {"train": np.sort(train), "dev": np.sort(dev), "test": np.sort(test)}
    perm = rng.permutation(n)
    return {"test": np.sort(perm[:n_test]), "dev": np.sort(perm[n_test : n_test + n_dev]),
            "train": np.sort(perm[n_test + n_dev :])}  # fmt: skip


def run_split(ctx: StageContext) -> StageResult:
    df = pd.read_parquet(ctx.input("ingest") / TABLE)
    plan = _load_plan(ctx.input("ingest"))
    parts = split_table(df, plan, ctx.project.config.split)
    rows = {}
    for name, idx in parts.items():
        _write_frame(df.iloc[idx], ctx.work / f"{name}.parquet")
        rows[name] = len(idx)
    if rows["train"] < 10 or rows["test"] < 1:
        raise DataError(f"the split left {rows['train']} train / {rows['test']} test rows",
                        "add rows or lower split.test / split.dev")  # fmt: skip
    how = (
        "by time"
        if ctx.project.config.split.by
        else "by group"
        if ctx.project.config.split.group
        else "random"
    )
    return StageResult(rows=rows, summary={"how": how})


def run_train(ctx: StageContext, tcfg) -> StageResult:
    from zimo.tabular.learn import train_tabular

    cfg = ctx.project.config
    plan = _load_plan(ctx.input("ingest"))
    train = pd.read_parquet(ctx.input("split") / "train.parquet")
    dev = pd.read_parquet(ctx.input("split") / "dev.parquet")
    from zimo.stages.train import _progress_bar, write_analytic_meta

    with _progress_bar(ctx) as progress:
        try:
            summary = train_tabular(
                train, dev, plan, tcfg, cfg.tabular, ctx.work, progress=progress
            )
        except ValueError as e:
            raise DataError(str(e), "check the table and the split") from None
    write_analytic_meta(ctx, tcfg, task="tabular", kind="tabular", objective=plan.objective,
                        target=plan.target, classes=plan.classes, inputs=plan.inputs)  # fmt: skip
    return StageResult(rows={"train_rows": summary["train_rows"],
                             "rounds": summary["best_iteration"]}, summary=summary)  # fmt: skip


def run_eval(ctx: StageContext) -> StageResult:
    from zimo.tabular.evaluate import evaluate_tabular

    test = pd.read_parquet(ctx.input("split") / "test.parquet")
    result = evaluate_tabular(ctx.project, test, ctx.input("train"), ctx.work, console=ctx.console)
    ctx.console.print(
        f"  report: {ctx.workspace.artifact_dir('eval', ctx.artifact) / 'report.html'}"
    )
    return StageResult(rows={"test_rows": len(test)}, summary={"headline": result["headline"]})
