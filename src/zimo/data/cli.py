"""``zimo curate --input DIR --output DIR [--engine local|ray] [--config FILE]`` (ad-hoc use).

The project form (``zimo curate <project>``) lives in :mod:`zimo.cli`; when that command
already exists, :func:`register` leaves it alone and the lead's command can call
:func:`run_adhoc` for the folder form.
"""

from __future__ import annotations

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
    """Add ``zimo curate`` (folder form) unless the app already has a ``curate`` command."""
    names = {
        c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands
    }
    if "curate" in names:
        return

    @app.command("curate")
    def curate(
        input: Path = typer.Option(..., "--input", "-i", help="folder (or file) to curate"),
        output: Path = typer.Option(..., "--output", "-o", help="where curated.parquet etc. go"),
        engine: str = typer.Option("local", help="local (processes) | ray (Ray Data)"),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="YAML with a curate: section"
        ),
        workers: int | None = typer.Option(None, help="processes (default: all cores)"),
    ) -> None:
        """Curate a folder of mixed files: clean, deduplicate, redact PII, report."""
        run_adhoc(input, output, engine, config, workers)
