"""synth: instruction data or labels from a teacher model (or the gateway's request log).

The teacher cache lives in ``<project>/.zimo/cache/teacher.sqlite``, outside the artifact, so a
changed setting that gives the stage a new artifact id still reuses every paid call.
"""

from __future__ import annotations

from zimo.dataset_io import read_records
from zimo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    from zimo.synth.run import run_synth

    cfg = ctx.project.config
    synth, teacher = cfg.synth, cfg.teacher
    inputs = None
    if synth.mode in ("answer", "label"):
        inputs = read_records(ctx.input("curate") / "curated.parquet")
        if synth.mode == "label":
            inputs = [r for r in inputs if not r.get("label")] or inputs
    elif synth.mode == "self_instruct" and synth.self_instruct.seed_tasks:
        inputs = str((ctx.project.root / synth.self_instruct.seed_tasks).resolve())
    elif synth.mode == "distill" and synth.distill.log_db:
        inputs = str((ctx.project.root / synth.distill.log_db).expanduser().resolve())
    cache = ctx.workspace.layout.teacher_cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    summary = run_synth(
        synth, teacher, out_dir=ctx.work, inputs=inputs, cache_path=cache, labels=cfg.labels
    )
    rows = {k: int(v) for k, v in summary.items() if k in ("kept", "rejected") and v is not None}
    return StageResult(rows=rows, summary={k: summary.get(k) for k in ("kept", "cost", "stopped")})
