"""split: seeded, stratified train/dev/test split of the curated records."""

from __future__ import annotations

from collections import Counter

from zimo.data.split import split_records
from zimo.dataset_io import read_records, write_records
from zimo.stages.base import StageContext, StageResult
from zimo.teacher_rows import read_rows


def run(ctx: StageContext) -> StageResult:
    records = read_records(ctx.input("curate") / "curated.parquet")
    if "synth" in ctx.inputs:
        records = _with_teacher_data(
            records, read_records(ctx.input("synth") / "data.parquet"), ctx.project.config.task
        )
    cfg = ctx.project.config.split
    parts = split_records(records, dev=cfg.dev, test=cfg.test, seed=cfg.seed, stratify=cfg.stratify)
    # The flywheel's teacher rows (the big model's logged answers) join the train split only:
    # dev and test stay human-labelled, so thresholds and reports measure real quality.
    teacher = [r for r in read_rows(ctx.project.root) if ctx.project.config.task != "label"
               or r.get("label") in (ctx.project.config.labels or [])]  # fmt: skip
    if teacher:
        held = {r["text"] for r in parts["dev"] + parts["test"]}
        parts["train"] = parts["train"] + [r for r in teacher if r["text"] not in held]
    rows = {}
    mix = {}
    for name, recs in parts.items():
        rows[name] = write_records(ctx.work / f"{name}.parquet", recs)
        mix[name] = dict(Counter(str(r.get("label")) for r in recs))
    return StageResult(rows=rows, summary={"labels": mix})


def _with_teacher_data(curated: list[dict], synth: list[dict], task: str) -> list[dict]:
    """Teacher records join the curated ones. A label task keeps only labelled rows; a teacher
    label fills in a curated row that had none (same id), it never overrides a human label."""
    if task == "label":
        by_id = {r["id"]: r for r in synth}
        merged = [r if r.get("label") else by_id.pop(r["id"], r) for r in curated]
        merged += list(by_id.values())
        return [r for r in merged if r.get("label")]
    return curated + synth
