"""``zimo curate PROJECT`` (the build's curate stage) and ``zimo curate --input DIR --output
DIR [--engine local|ray] [--config FILE]`` (a folder, ad hoc)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from zimo.errors import ConfigError


def load_curate_config(path: Path | None) -> Any:
    """A CurateConfig from a YAML file: either a whole zimo.yaml (its ``curate:`` section) or
    just the section. Errors name the key, as for zimo.yaml."""
    from pydantic import ValidationError

    from zimo.data.curate_config import CurateConfig

    if path is None:
        return CurateConfig()
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ConfigError(
            f"cannot read curate config {str(path)!r}: {e.strerror}", "check --config"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(
            f"{path} is not valid YAML: {e}".split("\n")[0], "fix the YAML syntax"
        ) from e
    if isinstance(data, dict) and "curate" in data:
        data = data["curate"] or {}
    try:
        return CurateConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in ("curate", *err["loc"]))
        raise ConfigError(
            f"{path}: `{key}`: {err['msg']}", "see src/zimo/data/API.md for the keys"
        ) from e


def print_summary(stats: dict[str, Any], console: Console | None = None) -> None:
    """A per-step table: in, kept, changed, dropped with reasons."""
    console = console or Console()
    table = Table(
        title=f"curate: {stats['kept']} kept, {stats['rejected']} rejected", title_justify="left"
    )
    for col in ("step", "in", "kept", "changed", "dropped", "reasons"):
        table.add_column(col)
    for s in stats["steps"]:
        reasons = ", ".join(f"{k} {v}" for k, v in list(s["dropped_by_reason"].items())[:5])
        table.add_row(
            s["name"], str(s["seen"]), str(s["kept"]), str(s["changed"]), str(s["dropped"]), reasons
        )
    console.print(table)
    console.print(f"report: {Path(stats['output']) / 'report.html'}")


def run_adhoc(
    input: Path,
    output: Path,
    engine: str = "local",
    config: Path | None = None,
    workers: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Curate a folder into ``output`` and print the summary table."""
    from zimo.data.curate import curate_path

    stats = curate_path(input, output, load_curate_config(config), engine=engine, workers=workers)
    print_summary(stats, console)
    return stats


def register(app: typer.Typer) -> None:
    app.command("curate")(curate)


def curate(
    project: Path | None = typer.Argument(None, help="project folder (holds zimo.yaml)"),
    input: Path | None = typer.Option(None, "--input", "-i", help="ad hoc: folder (or file)"),
    output: Path | None = typer.Option(None, "--output", "-o", help="ad hoc: output folder"),
    engine: str = typer.Option("local", help="local (processes) | ray (Ray Data)"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="ad hoc: YAML with a curate: section (or a zimo.yaml)"
    ),
    workers: int | None = typer.Option(None, help="ad hoc: processes (default: all cores)"),
    force: bool = typer.Option(False, "--force", "-f", help="rerun curate even if fresh"),
) -> None:
    """Clean, deduplicate and redact a project's data, or a folder (--input/--output)."""
    if project is None:
        if input is None or output is None:
            raise ConfigError("give a project folder, or both --input DIR and --output DIR")
        stats = run_adhoc(input, output, engine, config, workers, Console(stderr=True))
        # Whole and unstyled on stdout: scripts parse this JSON (the table went to stderr).
        typer.echo(json.dumps(stats, indent=1, ensure_ascii=False, default=str))
        return
    from zimo.build import build as run_build
    from zimo.project_cli import console, print_done

    report = run_build(project, target="curate", force=["curate"] if force else [], console=console)
    print_done(project, report)
