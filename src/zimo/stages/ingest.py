"""ingest: read the project's data files into records (+ rejects with reasons)."""

from __future__ import annotations

from zimo.data.table import read_table
from zimo.dataset_io import write_records
from zimo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.project.config
    d = cfg.data
    path = ctx.project.data_path()
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if path.is_dir()
        else [path]
    )
    records, rejects, infos = [], [], []
    for f in files:
        if path.is_dir() and f.suffix.lower() not in (
            ".tsv",
            ".csv",
            ".jsonl",
            ".json",
            ".parquet",
        ):
            continue
        recs, rejs, info = read_table(
            f,
            fmt=d.format,
            text_field=d.text_field,
            label_field=d.label_field if cfg.task == "label" else None,
            labels=cfg.labels if cfg.task == "label" else None,
            header=d.header,
            origin=d.origin,
            generator=d.generator,
            license=d.license,
            instruction_field=d.instruction_field,
            input_field=d.input_field,
            output_field=d.output_field,
            # rows without a label are kept when a teacher will label them
            allow_unlabeled=cfg.synth is not None and cfg.synth.mode == "label",
            source_name=str(f.relative_to(ctx.project.root))
            if f.is_relative_to(ctx.project.root)
            else f.name,
        )
        records += recs
        rejects += rejs
        infos.append({"file": f.name, **info})
    write_records(ctx.work / "records.parquet", records)
    write_records(ctx.work / "rejects.parquet", rejects)
    reasons: dict[str, int] = {}
    for r in rejects:
        key = r["reject_reason"].split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if rejects:
        ctx.console.print(
            f"  [yellow]quarantined {len(rejects)} bad row(s)[/yellow]: "
            + "; ".join(f"{k} ×{v}" for k, v in reasons.items())
        )
    return StageResult(
        rows={"records": len(records), "rejects": len(rejects)},
        summary={"files": infos, "reject_reasons": reasons},
    )
