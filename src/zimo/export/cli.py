"""``zimo export``: write a trained sub-model as merged weights, GGUF or an Ollama folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from zimo.errors import ConfigError, ZimoError


def _summary(report: dict) -> str:
    lines = [f"[bold]{report['format']}[/bold] export written to {report['output']}"]
    v = report.get("verify") or {}
    if report.get("kind") in ("tabular", "classical", "image"):
        for name, r in v.items():
            lines.append(f"  {name}: agreement {100 * r['agreement']:.2f}% on {r['rows']} test "
                         f"rows, max abs diff {r['max_abs_diff']:.2e}")  # fmt: skip
        return "\n".join(lines)
    for engine in ("transformers", "llama_cpp"):
        r = v.get(engine) or {}
        if "token_agreement" in r:
            line = (
                f"  {engine}: greedy-token agreement {100 * r['token_agreement']:.1f}% "
                f"(target {100 * r['target']:.0f}%)"
            )
            if "labels" in r:
                line += f", labels {100 * r['labels']['agreement']:.1f}%"
            lines.append(line)
        elif "skipped" in r:
            lines.append(f"  {engine}: skipped — {r['skipped']}")
    if "hf_reload" in report:
        lines.append(
            f"  reload check: max abs logit diff {report['hf_reload']['max_abs_logit_diff']:.1e}"
        )
    if report.get("ollama"):
        lines.append(f"  next: {report['ollama']['create_command']}")
    return "\n".join(lines)


def _train_metadata(adapter: Path) -> dict:
    """Name, task and labels from the train artifact an adapter folder sits in, if any."""
    from zimo.submodel_meta import SubModelMeta, served_label_task

    meta = SubModelMeta.read_optional(adapter.parent)
    if meta is None:
        return {}
    out = {k: getattr(meta, k) for k in ("name", "labels", "instruction") if getattr(meta, k)}
    if "task" in meta.model_fields_set:
        out["task"] = meta.task
    return {**out, **served_label_task(adapter.parent)}


def register(app: typer.Typer) -> None:
    """Add ``zimo export`` to the CLI."""

    @app.command("export")
    def export_cmd(
        project: Path | None = typer.Argument(
            None, help="project folder (holds zimo.yaml); or use --adapter"
        ),
        fmt: str | None = typer.Option(
            None, "--format", "-f", help="hf | gguf | ollama; analytic sub-models: onnx | lightgbm"
        ),
        quant: str | None = typer.Option(
            None, "--quant", "-q", help="f16 | q8_0 | q4_k_m (GGUF; q4_k_m needs zimo[llamacpp])"
        ),
        output: Path | None = typer.Option(None, "--output", "-o", help="output folder"),
        adapter: Path | None = typer.Option(
            None, "--adapter", help="a LoRA adapter (or full model) folder, instead of a project"
        ),
        base: str | None = typer.Option(None, "--base", help="base model for --adapter"),
        no_verify: bool = typer.Option(False, "--no-verify", help="skip the load-back checks"),
        as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    ) -> None:
        """Export the trained sub-model: merged safetensors, GGUF or an Ollama folder."""
        from zimo.export.api import export_model
        from zimo.export.project import export_project

        console, out = Console(stderr=True), Console()
        if (project is None) == (adapter is None):
            raise ConfigError("give a project folder or --adapter DIR (one of them)")
        if project is not None and _is_analytic(project):
            from zimo.export.analytic import export_analytic_project

            with console.status("exporting (convert, load back and compare)…"):
                reports = export_analytic_project(project, [fmt] if fmt else None, output)
            _finish(reports, as_json, out)
            return
        with console.status("exporting (merge, write, load back and compare)…"):
            if adapter is not None:
                reports = [
                    export_model(
                        adapter,
                        base,
                        fmt or "gguf",
                        quant or "q8_0",
                        output,
                        metadata=_train_metadata(adapter),
                        verify=not no_verify,
                    )
                ]
            else:
                reports = export_project(
                    project,
                    formats=[fmt] if fmt else None,
                    quant=quant,
                    output=output,
                    verify=False if no_verify else None,
                )
        _finish(reports, as_json, out)


def _is_analytic(project: Path) -> bool:
    from zimo.config import load_project
    from zimo.train.config import TrainConfig

    return not isinstance(load_project(project).config.primary(), TrainConfig)


def _finish(reports: list[dict], as_json: bool, out: Console) -> None:
    for report in reports:
        if as_json:
            out.print_json(json.dumps(report, default=str))
        else:
            out.print(_summary(report), highlight=False)
    failed = [r for r in reports if not r.get("passed", True)]
    if failed:
        r = failed[0]
        raise ZimoError(
            f"the {r['format']} export in {r['output']} is below its verification targets",
            "see export_report.json there; try --quant f16 or a larger quant",
        )
