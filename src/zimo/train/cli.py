"""CLI of the training area.

- ``zimo models`` (registered through the ``zimo.commands`` entry point);
- ``python -m zimo.train.cli PROJECT``: train one project's sub-model outside the build DAG, for
  multi-process launchers (``torchrun``, ``accelerate launch -m zimo.train.cli ...``): every
  rank runs this same module, joins the process group from the launcher's environment, trains
  its share of each batch, and rank 0 writes the outputs. See ``docs/training.md``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from zimo.workspace import Layout


def register(app: typer.Typer) -> None:
    """Add ``models`` to the ``zimo`` app."""

    @app.command("models")
    def models_cmd(
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        convert: str = typer.Option(
            None, "--convert", help="convert an embedded preset (gecko, gecko-zh) now"
        ),
    ) -> None:
        """List base-model presets and whether their weights are on this machine."""
        from rich.console import Console
        from rich.table import Table

        from zimo.models import list_presets, resolve_model_dir

        if convert:
            path = resolve_model_dir(convert)
            typer.echo(f"{convert}: {path}")
            return
        rows = list_presets()
        if as_json:
            typer.echo(json.dumps(rows, indent=1))
            return
        table = Table("name", "size", "embedded", "available", "source", "description")
        for r in rows:
            table.add_row(
                r["name"],
                r["size"],
                "yes" if r["embedded"] else "no",
                "[green]yes[/]" if r["available"] else "[red]no[/]",
                r["source"],
                r["description"],
            )
        Console().print(table)


def _split_files(root: Path) -> tuple[Path, Path]:
    """train/dev parquet of the project's newest split artifact (``zimo split`` makes it)."""
    from zimo.errors import ZimoError
    from zimo.workspace import Workspace

    ids = Workspace(root).artifacts("split")
    if not ids:
        raise ZimoError(
            f"project {root} has no split yet",
            f"run `zimo split {root}` once (one process) before launching training",
        )
    d = Workspace(root).artifact_dir("split", ids[0])
    return d / "train.parquet", d / "dev.parquet"


def launch_train(
    project: Path,
    out: Path | None = None,
    train_file: Path | None = None,
    dev_file: Path | None = None,
) -> dict:
    """Train ``project``'s sub-model with its ``train:`` settings; returns the summary.

    Safe to run on every rank of a launcher: only rank 0 writes outputs and shows progress.
    """
    from zimo.config import load_project
    from zimo.dataset_io import read_records
    from zimo.errors import DataError

    proj = load_project(project)
    cfg = proj.config
    if train_file is None:
        train_file, default_dev = _split_files(proj.root)
        dev_file = dev_file or default_dev
    train = read_records(Path(train_file))
    dev = read_records(Path(dev_file)) if dev_file else []
    if not train:
        raise DataError(f"no training rows in {train_file}", "check the file or rerun zimo split")
    tcfg = cfg.train
    if cfg.instruction and not tcfg.instruction:
        tcfg = tcfg.model_copy(update={"instruction": cfg.instruction})
    out = Path(out) if out else Layout(proj.root).launch_train
    rank0 = int(os.environ.get("RANK", "0")) == 0
    from contextlib import nullcontext

    from zimo.train.progress import rich_train_progress

    with rich_train_progress("train") if rank0 else nullcontext(None) as progress:
        if cfg.task == "label":
            from zimo.train.label import train_label

            return train_label(train, dev, cfg.labels, tcfg, out, progress=progress)
        from zimo.train.chat import train_chat

        return train_chat(train, dev, tcfg, out, progress=progress)


launch_app = typer.Typer(add_completion=False, help="Train a project under torchrun/accelerate.")


@launch_app.callback()
def _group() -> None:
    """Train a project's sub-model on every rank of a launcher (``fit PROJECT``)."""


@launch_app.command()
def fit(
    project: Path = typer.Argument(..., help="project folder (holds zimo.yaml)"),
    out: Path = typer.Option(
        None, "--out", "-o", help="output folder (default .zimo/launch/train)"
    ),
    train_file: Path = typer.Option(None, "--train", help="train parquet (default: newest split)"),
    dev_file: Path = typer.Option(None, "--dev", help="dev parquet (default: newest split)"),
) -> None:
    """Train PROJECT's sub-model; run the same command on every rank."""
    from zimo.errors import ZimoError

    try:
        summary = launch_train(project, out, train_file, dev_file)
    except ZimoError as e:
        typer.echo(f"error: {e.one_line()}", err=True)
        sys.exit(e.exit_code)
    if int(os.environ.get("RANK", "0")) == 0:
        keys = ("steps", "final_loss", "final_dev_loss", "tokens_per_s", "world_size")
        typer.echo(json.dumps({k: summary.get(k) for k in keys}))


if __name__ == "__main__":
    launch_app()
