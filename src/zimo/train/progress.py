"""A rich progress bar for training: step, loss, tokens/s, ETA (pass ``bar`` as ``progress``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from zimo.train.loop import ProgressFn


@contextmanager
def rich_train_progress(description: str = "train") -> Iterator[ProgressFn]:
    """Context manager yielding a ``progress`` callback for ``train_label`` / ``train_chat``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TextColumn("{task.fields[dev]}"),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None, loss="-", tps="-", dev="")

        def update(row: dict[str, Any]) -> None:
            dev = f"dev {row['dev_loss']:.4f}" if "dev_loss" in row else None
            fields = {"loss": f"{row['loss']:.4f}", "tps": f"{row['avg_tokens_per_s']:.0f}"}
            if dev:
                fields["dev"] = dev
            bar.update(task, total=row["total_steps"], completed=row["step"], **fields)

        yield update
