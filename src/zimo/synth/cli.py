"""CLI: ``zimo synth`` (ad hoc or from a project's zimo.yaml) and ``zimo logs`` helpers.

``register(app)`` adds ``synth``; ``register_logs(app)`` adds ``logs show`` / ``logs export``
(separate, so the serve package can own ``zimo logs`` if it prefers).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zimo.errors import ConfigError
from zimo.workspace import Layout


def _parse_teacher_synth(project: Path | None, config: Path | None) -> tuple[dict, dict, list]:
    teacher: dict = {}
    synth: dict = {}
    labels: list = []
    if project is not None:
        from zimo.config import load_project

        proj = load_project(project)
        teacher = dict(proj.config.teacher or {})
        synth = dict(proj.config.synth or {})
        labels = list(proj.config.labels or [])
    if config is not None:
        import yaml

        if not config.is_file():
            raise ConfigError(f"config file {config} does not exist", "pass an existing yaml file")
        raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{config} must be a mapping with teacher: and synth: keys")
        teacher.update(raw.get("teacher") or {})
        synth.update(raw.get("synth") or {})
        labels = list(raw.get("labels") or labels)
    return teacher, synth, labels


def register(app: typer.Typer) -> None:
    """Add ``zimo synth`` to ``app``."""

    @app.command("synth")
    def synth_cmd(
        project: Path | None = typer.Argument(
            None, help="project folder: read teacher: / synth: / labels: from its zimo.yaml"
        ),
        mode: str | None = typer.Option(
            None, "--mode", "-m", help="self_instruct | answer | label | distill"
        ),
        input: Path | None = typer.Option(
            None,
            "--input",
            "-i",
            help="seed tasks (self_instruct), records (answer, label), log db",
        ),
        output: Path | None = typer.Option(None, "--output", "-o", help="output folder"),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="yaml with teacher: and synth: sections"
        ),
        base_url: str | None = typer.Option(None, help="teacher base URL (…/v1)"),
        model: str | None = typer.Option(None, help="teacher model name"),
        api_key_env: str | None = typer.Option(None, help="env var with the teacher API key"),
        max_cost: float | None = typer.Option(None, help="stop when the spend reaches this"),
        local: bool | None = typer.Option(
            None, "--local/--remote", help="teacher is inside your network (no PII redaction)"
        ),
        num_instructions: int | None = typer.Option(None, help="self_instruct: how many"),
        language: str | None = typer.Option(None, help="self_instruct: en | zh"),
        labels: str | None = typer.Option(None, help="label: comma-separated label set"),
        cache: Path | None = typer.Option(None, help="teacher cache SQLite file"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    ) -> None:
        """Make training data with a teacher model, or distill the gateway request log."""
        from zimo.synth.config import parse_sections
        from zimo.synth.run import run_synth

        teacher_raw, synth_raw, label_set = _parse_teacher_synth(project, config)
        for key, val in (
            ("base_url", base_url),
            ("model", model),
            ("api_key_env", api_key_env),
            ("max_cost", max_cost),
            ("local", local),
        ):
            if val is not None:
                teacher_raw[key] = val
        if mode is not None:
            synth_raw["mode"] = mode
        si = dict(synth_raw.get("self_instruct") or {})
        if num_instructions is not None:
            si["num_instructions"] = num_instructions
        if language is not None:
            si["language"] = language
        if si:
            synth_raw["self_instruct"] = si
        if labels:
            label_set = [s.strip() for s in labels.split(",") if s.strip()]
        needs_teacher = synth_raw.get("mode", "self_instruct") != "distill"
        teacher_cfg, synth_cfg = parse_sections(teacher_raw if needs_teacher else None, synth_raw)
        if output is None:
            if project is None:
                raise ConfigError("no output folder", "pass --output DIR")
            output = Layout(project).synth_cli / synth_cfg.mode
        inputs: Path | None = input
        if inputs is None and project is not None and synth_cfg.mode in ("answer", "label"):
            from zimo.config import load_project

            inputs = load_project(project).data_path
        summary = run_synth(
            synth_cfg,
            teacher_cfg,
            out_dir=output,
            inputs=inputs,
            cache_path=cache,
            labels=label_set or None,
            progress=not no_progress,
        )
        typer.echo(
            f"{summary['produced']} records → {output}/data.parquet "
            f"({summary['rejected']} rejected: {json.dumps(summary['filtered_by_reason'])}; "
            f"cost {summary.get('cost', 0):.4f}, tokens {summary.get('tokens', 0)}"
            + (f"; stopped: {summary['stopped']}" if summary.get("stopped") else "")
            + ")"
        )
