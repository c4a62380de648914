"""train: fine-tune the sub-model on the train split (resumes from checkpoints in the work dir)."""

from __future__ import annotations

from zimo.build import StageContext, StageResult
from zimo.dataset_io import read_records
from zimo.errors import DataError
from zimo.workspace import write_json_atomic

MODEL_META = "zimo_model.json"


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.project.config
    train = read_records(ctx.input("split") / "train.parquet")
    dev = read_records(ctx.input("split") / "dev.parquet")
    if not train:
        raise DataError("the train split is empty", "add data or lower `split.test`/`split.dev`")
    if cfg.task == "label":
        from zimo.train.label import train_label

        summary = train_label(
            train, dev, cfg.labels, cfg.train, ctx.work, instruction=cfg.instruction
        )
    else:
        from zimo.train.chat import train_chat

        summary = train_chat(train, dev, cfg.train, ctx.work)
    # What serving and export need to know about this sub-model, next to the adapter.
    meta = {
        "name": cfg.name,
        "task": cfg.task,
        "base": cfg.train.base,
        "method": cfg.train.method,
        "labels": cfg.labels,
        "positive_label": cfg.positive_label,
        "instruction": cfg.instruction,
        "adapter": "adapter" if cfg.train.method == "lora" else None,
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
