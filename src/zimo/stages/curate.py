"""curate: run the configured curation steps over the ingested records."""

from __future__ import annotations

from zimo.data.curate_config import build_steps
from zimo.data.pipeline import run_steps
from zimo.dataset_io import read_records, write_records
from zimo.errors import DataError
from zimo.fileio import write_json_atomic
from zimo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    records = read_records(ctx.input("ingest") / "records.parquet")
    steps = build_steps(ctx.project.config.curate)
    result = run_steps(records, steps)
    kept = list(result.kept)
    rejects = list(result.rejected)
    write_records(ctx.work / "curated.parquet", kept)
    write_records(ctx.work / "rejects.parquet", rejects)
    stats = result.stats_dict()
    write_json_atomic(
        ctx.work / "report.json", {"steps": stats, "kept": len(kept), "rejected": len(rejects)}
    )
    try:  # the HTML report is a nicety: never fail the stage for it
        from zimo.data.report import write_report

        write_report(ctx.work, stats=stats, kept=kept, rejects=rejects, before=records)
    except Exception as e:  # noqa: BLE001
        ctx.console.print(f"  [dim]curate report skipped: {e}[/dim]")
    if not kept:
        raise DataError(
            f"curation dropped every record ({len(rejects)} rejected)",
            "loosen the `curate:` steps in zimo.yaml (see .zimo/work/curate-*/report.json)",
        )
    dropped = {s["name"]: s["dropped"] for s in stats if s["dropped"]}
    if dropped:
        ctx.console.print("  dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    return StageResult(
        rows={"kept": len(kept), "rejected": len(rejects)},
        summary={"dropped_by_step": dropped},
    )
