"""``zimo init``, ``zimo build``, one command per build stage, and ``zimo status``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
out = Console()
ProjectArg = typer.Argument(..., help="project folder (holds zimo.yaml)")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(build)
    for name, doc in STAGES:
        app.command(name=name)(_stage_command(name, doc))
    app.command()(status)


def build(
    project: Path = ProjectArg,
    force: list[str] = typer.Option(
        [], "--force", "-f", help="rerun this stage (and what depends on it)"
    ),
    flywheel: bool = typer.Option(
        False, "--flywheel", help="first add the big tier's logged answers (route.mode: cascade)"
    ),
) -> None:
    """Run the pipeline; stages whose inputs and config did not change are skipped."""
    from zimo.build import build as run_build

    if flywheel:
        from zimo.flywheel import run_flywheel

        r = run_flywheel(project, console=console)
        console.print(f"flywheel round {r['round']}: {r['new_rows']} new teacher rows")
    report = run_build(project, force=force, console=console)
    print_done(project, report)


def print_done(project: Path, report: dict) -> None:
    from zimo.stages.dag import artifact_path

    console.print(
        f"[bold]done[/bold] in {report['seconds']:.1f}s — ran: {', '.join(report['ran']) or 'nothing'}"
        f"; fresh: {', '.join(report['skipped']) or 'none'}"
    )
    ev = artifact_path(project, "eval") if "eval" in report["ids"] else None
    if ev and (ev / "report.html").is_file() and "eval" in report["ran"] + report["skipped"]:
        typer.echo(f"report: {ev / 'report.html'}")  # plain: a long path must not wrap


def _stage_command(name: str, doc: str):
    def command(
        project: Path = ProjectArg,
        force: bool = typer.Option(False, "--force", "-f", help=f"rerun {name} even if fresh"),
    ) -> None:
        from zimo.build import build as run_build

        report = run_build(project, target=name, force=[name] if force else [], console=console)
        print_done(project, report)

    command.__doc__ = doc
    return command


STAGES = [
    ("ingest", "Read the project's data files into records (bad rows quarantined)."),
    ("split", "Make the seeded, stratified train/dev/test split."),
    ("train", "Fine-tune the sub-model (runs earlier stages first if needed)."),
    ("eval", "Evaluate the sub-model against the base model and a classical baseline."),
]


def status(
    project: Path = ProjectArg,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Every stage's state (fresh / stale / missing), artifact id and the eval headline."""
    from zimo.build import status as get_status

    st = get_status(project)
    if as_json:
        out.print_json(json.dumps(st, ensure_ascii=False, default=str))
        return
    table = Table(title=f"{st['project']} ({st['task']})", title_justify="left")
    table.add_column("stage")
    table.add_column("state")
    table.add_column("artifact")
    table.add_column("last run")
    colors = {"fresh": "green", "stale": "yellow", "missing": "red"}
    for s in st["stages"]:
        last = s.get("last_run") or {}
        table.add_row(
            s["name"],
            f"[{colors[s['state']]}]{s['state']}[/]",
            s["artifact"],
            f"{last.get('state', '')} {last.get('finished_at') or ''}",
        )
    out.print(table)
    for system, vals in st.get("metrics", {}).get("eval", {}).items():
        nums = ", ".join(f"{k}={v:.4f}" for k, v in vals.items() if isinstance(v, float))
        out.print(f"  {system}: {nums}")


def init(
    directory: Path = typer.Argument(..., help="folder to create the project in"),
    template: str = typer.Option("classify", help="classify | instruct | tabular | image"),
    data: Path | None = typer.Option(
        None, "--data", help="tabular: the table (CSV, Parquet…); image: a folder/manifest/zip"
    ),
    target: str | None = typer.Option(None, "--target", help="tabular: the column to predict"),
) -> None:
    """Create a project folder with a commented zimo.yaml to start from."""
    from zimo.templates import write_template

    path = write_template(directory, template, data=data, target=target)
    where = f"images are read from {data}" if template == "image" and data else (
        f"put your data in {directory / 'data'}")  # fmt: skip
    out.print(f"created {path}; {where} and run `zimo build {directory}`")
