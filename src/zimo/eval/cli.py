"""``zimo eval-answers``: score answers that were produced elsewhere, with the same report.

Teams often have answers already — from their big model's logs, another vendor, a previous
release — and want them side by side with a sub-model on the same test prompts::

    zimo eval-answers test.jsonl --system bigmodel=big.jsonl --system submodel=sub.jsonl \\
        --reference bigmodel --out report/

``test.jsonl`` rows: ``{"id", "prompt" | "messages", "reference"}`` (``output`` / ``answer``
are accepted for the reference); answer files: ``{"id", "answer"}`` (or ``output`` / ``text``).
An id without an answer counts as a failure for that system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zimo.errors import ConfigError, DataError
from zimo.fileio import iter_jsonl


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"file {path} does not exist", "check the path")
    rows = []
    try:
        for n, obj in iter_jsonl(path, strict=True):
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n} is not a JSON object", "one object per line")
            rows.append(obj)
    except ValueError as e:
        raise DataError(str(e), "fix that line") from None
    return rows


def _first(obj: dict, *keys: str):
    return next((obj[k] for k in keys if obj.get(k) is not None), None)


def load_test_items(path: Path):
    """Test items from a JSONL file (see the module docstring for the fields)."""
    from zimo.eval.generate_items import GenerateItem

    items = []
    for n, row in enumerate(_read_jsonl(path), 1):
        ref = _first(row, "reference", "output", "answer")
        msgs = row.get("messages")
        prompt = _first(row, "prompt", "instruction", "text")
        if ref is None or (not msgs and prompt is None):
            raise DataError(
                f"{path}:{n} needs a prompt (or messages) and a reference",
                'write rows like {"id": "1", "prompt": "...", "reference": "..."}',
            )
        if not msgs:
            msgs = [{"role": "user", "content": str(prompt)}]
        items.append(GenerateItem(str(row.get("id", n)), list(msgs), str(ref)))
    return items


def eval_answers(
    test: Annotated[Path, typer.Argument(help="test prompts + references (JSONL)")],
    system: Annotated[
        list[str], typer.Option("--system", "-s", help="NAME=answers.jsonl, repeatable")
    ],
    reference: Annotated[
        str | None, typer.Option(help="system the others are compared with")
    ] = None,
    train: Annotated[
        Path | None, typer.Option(help="training prompts (JSONL) to check for overlap")
    ] = None,
    metrics: Annotated[str, typer.Option(help="comma-separated")] = "chrf,rouge_l,embed_sim",
    out: Annotated[Path, typer.Option(help="folder for report.html and eval.json")] = Path(
        "eval-report"
    ),
    bootstrap_samples: Annotated[int, typer.Option()] = 1000,
) -> None:
    """Score precomputed answers of several systems on one test set; write an HTML report."""
    from rich.console import Console

    from zimo.eval.config import EvalConfig
    from zimo.eval.generate_report import write_generate_report
    from zimo.eval.generate_score import evaluate_generate, precomputed

    console = Console(stderr=True)
    items = load_test_items(test)
    runs = []
    for spec in system:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise ConfigError(
                f"--system {spec!r} is not NAME=FILE", "e.g. --system base=base.jsonl"
            )
        answers = {
            str(r.get("id")): _first(r, "answer", "output", "text") for r in _read_jsonl(Path(file))
        }
        runs.append(precomputed(name, items, answers, description=f"answers from {file}"))
    try:
        cfg = EvalConfig(
            metrics=[m.strip() for m in metrics.split(",") if m.strip()],
            bootstrap_samples=bootstrap_samples,
        )
    except ValueError as e:
        raise ConfigError(f"bad --metrics or --bootstrap-samples: {e}".splitlines()[0]) from None
    names = [r.name for r in runs]
    if reference and reference not in names:
        raise ConfigError(f"--reference {reference!r} is not one of {names}")
    train_prompts = None
    if train is not None:
        train_prompts = [it.prompt for it in load_test_items(train)]
    result = evaluate_generate(
        items, runs, config=cfg, train_prompts=train_prompts, reference=reference
    )
    paths = write_generate_report(result, out, title=f"Evaluation of {', '.join(names)}")
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"report: {paths['html']}")


def register(app: typer.Typer) -> None:
    """Add ``zimo eval-answers`` to the main CLI."""
    app.command("eval-answers")(eval_answers)
