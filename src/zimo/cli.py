"""The `zimo` command: a thin typer + rich layer over the library.

User errors print one line (``error: what is wrong; how to fix it``) and exit non-zero
(2 for config/usage errors); tracebacks only with ``--debug``.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from zimo.errors import ZimoError

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


def _register_commands() -> None:
    """Every command comes from an entry point of the ``zimo.commands`` group (this package's
    own areas and any installed plugin; see pyproject.toml), each a ``register(app)``. One that fails to import is
    named on stderr, not hidden: its commands are missing and the user should know why."""
    from importlib.metadata import entry_points

    found = entry_points(group="zimo.commands")
    if not found:
        console.print("[bold red]error:[/bold red] zimo's commands are not registered; "
                      "reinstall it (`pip install -e .` or `make install`)")  # fmt: skip
        return
    # The project's own commands (init, build, the stages, status) first in --help.
    for ep in sorted(found, key=lambda ep: (ep.name != "project", ep.name)):
        try:
            ep.load()(app)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not take the CLI down
            console.print(f"[yellow]warning:[/yellow] `{ep.name}` commands unavailable: "
                          f"{type(e).__name__}: {e}", highlight=False, soft_wrap=True)  # fmt: skip


_register_commands()


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


if __name__ == "__main__":  # `python -m zimo.cli ...`, as launchers and subprocess tests call it
    main()
