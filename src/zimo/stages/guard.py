"""guard: score the train split for machine-written text and build a training mix whose
synthetic share (declared teacher/synthetic/log records + human-origin records the detector
flags) stays under ``guard.max_synthetic_share``; dev and test are left as they are."""

from __future__ import annotations

from zimo.dataset_io import read_records, write_records
from zimo.fileio import write_json_atomic
from zimo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    from zimo.guard.mix import build_mix, check_mix
    from zimo.guard.stage import guard_records

    cfg = ctx.project.config.guard
    train = read_records(ctx.input("split") / "train.parquet")
    kept, rejected, summary = guard_records(train, cfg)
    mix, report = build_mix(kept, cfg, seed=ctx.project.config.split.seed)
    check_mix(mix, cfg)  # refuses a mix with no human data at all, naming the records
    left = {x["id"]: x["reason"] for x in report.left_out}
    rejects = rejected + [
        r | {"reject_step": "guard_mix", "reject_reason": left[str(r.get("id"))]}
        for r in kept
        if str(r.get("id")) in left
    ]
    write_records(ctx.work / "train.parquet", mix)
    write_records(ctx.work / "rejects.parquet", rejects)
    write_json_atomic(ctx.work / "guard_report.json", {"score": summary, "mix": report.to_dict()})
    ctx.console.print(
        f"  training mix: {report.n_mix} rows, synthetic share {report.synthetic_share:.0%} "
        f"(cap {report.max_synthetic_share:.0%}); left out {len(report.left_out)}, "
        f"dropped as machine-written {len(rejected)}"
    )
    return StageResult(
        rows={"train": len(mix), "left_out": len(report.left_out), "dropped": len(rejected)},
        summary={"synthetic_share": report.synthetic_share, "by_origin": report.by_origin},
    )
