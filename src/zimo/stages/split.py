"""split: seeded, stratified train/dev/test split of the curated records."""

from __future__ import annotations

from collections import Counter

from zimo.build import StageContext, StageResult
from zimo.data.split import split_records
from zimo.dataset_io import read_records, write_records


def run(ctx: StageContext) -> StageResult:
    records = read_records(ctx.input("curate") / "curated.parquet")
    cfg = ctx.project.config.split
    parts = split_records(records, dev=cfg.dev, test=cfg.test, seed=cfg.seed, stratify=cfg.stratify)
    rows = {}
    mix = {}
    for name, recs in parts.items():
        rows[name] = write_records(ctx.work / f"{name}.parquet", recs)
        mix[name] = dict(Counter(str(r.get("label")) for r in recs))
    return StageResult(rows=rows, summary={"labels": mix})
