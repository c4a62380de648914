"""eval: compare the sub-model with the untuned base and a classical baseline; write the report."""

from __future__ import annotations

from zimo.config import submodel_name
from zimo.dataset_io import read_records
from zimo.errors import DataError
from zimo.kinds import kind_of
from zimo.stages.base import StageContext, StageResult, train_stage_name


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.project.config
    split = ctx.input("split")
    train, test = read_records(split / "train.parquet"), read_records(split / "test.parquet")
    if not test:
        raise DataError("the test split is empty", "raise `split.test` in zimo.yaml")
    lm_dir, classical = _submodel_dirs(ctx)
    if cfg.task == "label":
        from zimo.eval.label_eval import evaluate_label_project

        dev = read_records(split / "dev.parquet")

        result = evaluate_label_project(
            ctx.project, train, test, lm_dir, ctx.work, console=ctx.console, dev=dev,
            classical=classical,
        )  # fmt: skip
    else:
        from zimo.eval.generate_eval import evaluate_generate_project

        result = evaluate_generate_project(
            ctx.project, train, test, lm_dir, ctx.work, console=ctx.console,
            teacher_cache=ctx.workspace.layout.teacher_cache,
        )  # fmt: skip
    ctx.console.print(
        f"  report: {ctx.workspace.artifact_dir('eval', ctx.artifact) / 'report.html'}"
    )
    return StageResult(rows={"test_rows": len(test)}, summary={"headline": result["headline"]})


def _submodel_dirs(ctx: StageContext):
    """The language-model sub-model's train artifact and the classical ones' by name."""
    lm_dir, classical = None, {}
    for i, tcfg in enumerate(ctx.project.config.submodels()):
        name = submodel_name(tcfg)
        folder = ctx.input(train_stage_name(i, name))
        if kind_of(tcfg.method).name == "lm":
            lm_dir = lm_dir or folder
        else:
            classical[name] = folder
    return lm_dir, classical
