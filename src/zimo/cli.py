"""The `zimo` command: a thin typer + rich layer over the library.

User errors print one line (``error: what is wrong; how to fix it``) and exit non-zero
(2 for config/usage errors); tracebacks only with ``--debug``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from zimo.errors import ConfigError, ZimoError

# Never reach for a model hub at run time; keep library chatter out of the user's terminal.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    name="zimo",
    help="Zimo (子模): build small private sub-models beside big ones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
STATE = {"debug": False}

ProjectArg = typer.Argument(..., help="project folder (holds zimo.yaml)")


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
) -> None:
    STATE["debug"] = debug
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Our own progress bars replace the libraries' tqdm bars and warnings."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "peft", "torch", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


@app.command()
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
    _print_done(project, report)


def _print_done(project: Path, report: dict) -> None:
    from zimo.build import artifact_path

    console.print(
        f"[bold]done[/bold] in {report['seconds']:.1f}s — ran: {', '.join(report['ran']) or 'nothing'}"
        f"; fresh: {', '.join(report['skipped']) or 'none'}"
    )
    ev = artifact_path(project, "eval") if "eval" in report["ids"] else None
    if ev and (ev / "report.html").is_file() and "eval" in report["ran"] + report["skipped"]:
        typer.echo(f"report: {ev / 'report.html'}")  # plain: a long path must not wrap


def _stage_command(name: str, doc: str) -> None:
    def command(
        project: Path = ProjectArg,
        force: bool = typer.Option(False, "--force", "-f", help=f"rerun {name} even if fresh"),
    ) -> None:
        from zimo.build import build as run_build

        report = run_build(project, target=name, force=[name] if force else [], console=console)
        _print_done(project, report)

    command.__doc__ = doc
    app.command(name=name)(command)


for _name, _doc in [
    ("ingest", "Read the project's data files into records (bad rows quarantined)."),
    ("split", "Make the seeded, stratified train/dev/test split."),
    ("train", "Fine-tune the sub-model (runs earlier stages first if needed)."),
    ("eval", "Evaluate the sub-model against the base model and a classical baseline."),
]:
    _stage_command(_name, _doc)


@app.command()
def curate(
    project: Path | None = typer.Argument(None, help="project folder (holds zimo.yaml)"),
    input: Path | None = typer.Option(None, "--input", "-i", help="ad hoc: folder of files"),
    output: Path | None = typer.Option(None, "--output", "-o", help="ad hoc: output folder"),
    engine: str = typer.Option("local", help="local | ray"),
    force: bool = typer.Option(False, "--force", "-f", help="rerun curate even if fresh"),
) -> None:
    """Clean, deduplicate and redact a project's data, or a folder (--input/--output)."""
    if project is None:
        if input is None or output is None:
            raise ConfigError("give a project folder, or both --input DIR and --output DIR")
        from zimo.data.curate import curate_path

        stats = curate_path(input, output, None, engine=engine)
        # Whole and unstyled: scripts parse this JSON (rich would wrap it and read "[..]" as markup).
        typer.echo(json.dumps(stats, indent=1, ensure_ascii=False, default=str))
        return
    from zimo.build import build as run_build

    report = run_build(project, target="curate", force=["curate"] if force else [], console=console)
    _print_done(project, report)


@app.command()
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


@app.command()
def models() -> None:
    """List the base-model presets and whether their weights are here."""
    from zimo.models import list_presets

    table = Table(title="base models", title_justify="left")
    for col in ("name", "model", "size", "embedded", "available"):
        table.add_column(col)
    for p in list_presets():
        table.add_row(
            p["name"],
            str(p.get("description", "")),
            str(p.get("size", "")),
            "yes" if p.get("embedded") else "no",
            "[green]yes[/]" if p.get("available") else "[red]no[/]",
        )
    out.print(table)


@app.command()
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


# Subcommands owned by the stage packages; each package exposes register(app).
_PLUGINS = [
    "zimo.synth.cli",
    "zimo.route.cli",
    "zimo.serve.cli",
    "zimo.export.cli",
    "zimo.guard.cli",
    "zimo.eval.cli",
]


def _register_plugins() -> None:
    for mod in _PLUGINS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # that package is not part of this build
            raise
        module.register(app)


_register_plugins()


def main() -> None:
    from zimo import interrupts

    interrupts.install()
    try:
        rc = app(standalone_mode=False)
        # typer turns Ctrl-C into an exit code of 130 instead of raising KeyboardInterrupt.
        if rc == 130:
            raise KeyboardInterrupt
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except ZimoError as e:
        if STATE["debug"]:
            raise
        console.print(
            f"[bold red]error:[/bold red] {e.one_line()}", highlight=False, soft_wrap=True
        )
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted; nothing half-written was kept — run the same command to resume")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001
        import click

        if isinstance(e, click.exceptions.ClickException):
            console.print(f"[bold red]error:[/bold red] {e.format_message()}", soft_wrap=True)
            sys.exit(2)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if STATE["debug"]:
            raise
        console.print(
            f"[bold red]error:[/bold red] unexpected {type(e).__name__}: {e} "
            "(run with --debug for the traceback and report it)",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(1)
