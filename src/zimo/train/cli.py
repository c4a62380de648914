"""CLI commands of the training area: ``zimo models`` (the lead's cli.py calls ``register``)."""

from __future__ import annotations

import json

import typer


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
