"""train: fit one sub-model on the train split. ``run_lm`` fine-tunes a language model (resumes
from checkpoints in the work dir); ``run_classical`` fits the TF-IDF + logistic regression one.
Which runs is chosen by the sub-model's kind (``zimo.kinds``)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from zimo.dataset_io import read_records
from zimo.errors import DataError
from zimo.stages.base import StageContext, StageResult
from zimo.submodel_meta import SubModelMeta


def _splits(ctx: StageContext) -> tuple[list[dict], list[dict]]:
    # With a guard stage, train on its capped training mix instead of the raw train split.
    source = ctx.input("guard") if "guard" in ctx.inputs else ctx.input("split")
    train = read_records(source / "train.parquet")
    dev = read_records(ctx.input("split") / "dev.parquet")
    if not train:
        raise DataError("the train split is empty", "add data or lower `split.test`/`split.dev`")
    return train, dev


def write_analytic_meta(ctx: StageContext, tcfg, *, task: str, kind: str, **fields) -> None:
    """``zimo_model.json`` of an analytic sub-model: what serving and export read."""
    from zimo.config import submodel_name

    SubModelMeta(name=ctx.project.config.name, submodel=submodel_name(tcfg), task=task,
                 kind=kind, method=tcfg.method, **fields, adapter=None,
                 artifact=ctx.artifact).write(ctx.work)  # fmt: skip


def run_classical(ctx: StageContext, ccfg) -> StageResult:
    from zimo.classical.model import train_classical

    cfg = ctx.project.config
    train, dev = _splits(ctx)
    positive = cfg.positive_label if cfg.eval.decision == "dev_threshold" else None
    with ctx.console.status("  fitting TF-IDF + logistic regression…"):
        try:
            summary = train_classical(train, dev, cfg.labels, ccfg, ctx.work,
                                      positive_label=positive)  # fmt: skip
        except ValueError as e:
            raise DataError(str(e), "check the train split's labels") from None
    write_analytic_meta(ctx, ccfg, task="label", kind="classical", labels=cfg.labels,
                        positive_label=cfg.positive_label)  # fmt: skip
    return StageResult(rows={"train_rows": summary["train_rows"]}, summary=summary)


def run_lm(ctx: StageContext, tcfg) -> StageResult:
    from zimo.config import submodel_name

    cfg = ctx.project.config
    train, dev = _splits(ctx)
    if cfg.instruction and not tcfg.instruction:
        tcfg = tcfg.model_copy(update={"instruction": cfg.instruction})
    with _progress_bar(ctx) as progress:
        if cfg.task == "label":
            from zimo.train import warm_start
            from zimo.train.label import train_label

            positive = cfg.positive_label if cfg.eval.decision == "dev_threshold" else None
            earlier = [ctx.workspace.artifact_dir(ctx.stage, a)
                       for a in ctx.workspace.artifacts(ctx.stage) if a != ctx.artifact]  # fmt: skip
            init, rows, warm = warm_start.plan(tcfg, train, earlier)
            if warm:
                ctx.console.print(f"  warm start: {warm['warm_start']}")
            summary = train_label(rows, dev, cfg.labels, tcfg, ctx.work, progress=progress,
                                  positive_label=positive, init_adapter=init)  # fmt: skip
            if warm:  # train_summary.json is written by train_label: it says how, too
                from zimo.train.setup import write_json

                summary.update(warm)
                write_json(ctx.work / "train_summary.json", summary)
            warm_start.record(ctx.work, tcfg, train)
        else:
            from zimo.train.chat import train_chat

            summary = train_chat(train, dev, tcfg, ctx.work, progress=progress)
    # What serving and export need to know about this sub-model, next to the adapter.
    SubModelMeta(
        name=cfg.name,
        submodel=submodel_name(tcfg),
        kind="lm",
        task=cfg.task,
        base=tcfg.base,
        method=tcfg.method,
        labels=cfg.labels,
        positive_label=cfg.positive_label,
        instruction=tcfg.instruction,
        system=tcfg.system,
        adapter="adapter" if tcfg.method in ("lora", "qlora") else None,
        artifact=ctx.artifact,
    ).write(ctx.work)
    # Checkpoints exist only to resume an interrupted run; the finished artifact drops them.
    import shutil

    shutil.rmtree(ctx.work / "checkpoints", ignore_errors=True)
    rows = {"train_rows": len(train)}
    if isinstance(summary, dict) and "steps" in summary:
        rows["steps"] = int(summary["steps"])
    return StageResult(rows=rows, summary=summary if isinstance(summary, dict) else {})


@contextmanager
def _progress_bar(ctx: StageContext, unit: str = "tok/s", rate_key: str = "tokens_per_s"):
    """A rich bar fed by the trainer's per-step callback: step, loss, throughput, ETA.

    ``rate_key`` names the row field with the throughput and ``unit`` its label: LMs report
    tokens/s, image trainers images/s."""
    columns = (
        TextColumn("  train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[tps]} " + unit),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=ctx.console, transient=False) as bar:
        task = bar.add_task("train", total=None, loss="-", tps="-")

        def update(row: dict) -> None:
            loss = row.get("loss")
            tps = row.get(rate_key)
            bar.update(
                task,
                completed=row.get("step", 0),
                total=row.get("total_steps"),
                loss=f"{loss:.4f}" if isinstance(loss, float) else "-",
                tps=f"{tps:.0f}" if isinstance(tps, int | float) else "-",
            )

        yield update
