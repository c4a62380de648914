"""train: fine-tune the sub-model on the train split (resumes from checkpoints in the work dir)."""

from __future__ import annotations

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from zimo.build import StageContext, StageResult
from zimo.dataset_io import read_records
from zimo.errors import DataError
from zimo.workspace import write_json_atomic

MODEL_META = "zimo_model.json"


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.project.config
    # With a guard stage, train on its capped training mix instead of the raw train split.
    source = ctx.input("guard") if "guard" in ctx.inputs else ctx.input("split")
    train = read_records(source / "train.parquet")
    dev = read_records(ctx.input("split") / "dev.parquet")
    if not train:
        raise DataError("the train split is empty", "add data or lower `split.test`/`split.dev`")
    tcfg = cfg.train
    if cfg.instruction and not tcfg.instruction:
        tcfg = tcfg.model_copy(update={"instruction": cfg.instruction})
    with _progress_bar(ctx) as progress:
        if cfg.task == "label":
            from zimo.train.label import train_label

            positive = cfg.positive_label if cfg.eval.decision == "dev_threshold" else None
            summary = train_label(
                train, dev, cfg.labels, tcfg, ctx.work, progress=progress, positive_label=positive
            )
        else:
            from zimo.train.chat import train_chat

            summary = train_chat(train, dev, tcfg, ctx.work, progress=progress)
    # What serving and export need to know about this sub-model, next to the adapter.
    meta = {
        "name": cfg.name,
        "task": cfg.task,
        "base": cfg.train.base,
        "method": cfg.train.method,
        "labels": cfg.labels,
        "positive_label": cfg.positive_label,
        "instruction": tcfg.instruction,
        "system": tcfg.system,
        "adapter": "adapter" if cfg.train.method in ("lora", "qlora") else None,
        "artifact": ctx.artifact,
    }
    write_json_atomic(ctx.work / MODEL_META, meta)
    # Checkpoints exist only to resume an interrupted run; the finished artifact drops them.
    import shutil

    shutil.rmtree(ctx.work / "checkpoints", ignore_errors=True)
    rows = {"train_rows": len(train)}
    if isinstance(summary, dict) and "steps" in summary:
        rows["steps"] = int(summary["steps"])
    return StageResult(rows=rows, summary=summary if isinstance(summary, dict) else {})


@contextmanager
def _progress_bar(ctx: StageContext):
    """A rich bar fed by the trainer's per-step callback: step, loss, tokens/s, ETA."""
    columns = (
        TextColumn("  train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=ctx.console, transient=False) as bar:
        task = bar.add_task("train", total=None, loss="-", tps="-")

        def update(row: dict) -> None:
            loss = row.get("loss")
            tps = row.get("tokens_per_s")
            bar.update(
                task,
                completed=row.get("step", 0),
                total=row.get("total_steps"),
                loss=f"{loss:.4f}" if isinstance(loss, float) else "-",
                tps=f"{tps:.0f}" if isinstance(tps, int | float) else "-",
            )

        yield update
