"""Find what to export in a project: the trained model, its metadata and the test texts.

Kept apart from the CLI so the ``export`` build stage and ``zimo export`` share it; it finds
the artifacts through :func:`zimo.stages.dag.artifact_path`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zimo.config import load_project
from zimo.errors import ZimoError
from zimo.export.config import ExportConfig
from zimo.stages.dag import artifact_path
from zimo.submodel_meta import MODEL_META, SubModelMeta, served_label_task
from zimo.workspace import Layout


@dataclass
class ProjectExport:
    """Everything ``export_model`` needs, read from a project's workspace."""

    source: Path  # adapter folder, or a full model folder
    base: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    label_texts: list[str] | None = None
    config: ExportConfig = field(default_factory=ExportConfig)
    default_root: Path | None = None  # exports go to <root>/<format>-<quant> by default


def resolve_project(project_dir: str | Path) -> ProjectExport:
    """The trained sub-model of a project, or a one-line error saying to train first."""
    project = load_project(project_dir)
    train_dir = artifact_path(project.root, "train")
    if train_dir is None or not (train_dir / MODEL_META).is_file():
        raise ZimoError(
            f"project {project.name!r} has no trained model to export",
            f"train it first: `zimo build {project_dir}` (or `zimo train {project_dir}`)",
        )
    pe = from_artifacts(
        project,
        train_dir,
        split_dir=artifact_path(project.root, "split"),
        eval_dir=artifact_path(project.root, "eval"),
    )
    pe.default_root = Layout(project.root).exports
    return pe


def from_artifacts(
    project: Any, train_dir: Path, split_dir: Path | None = None, eval_dir: Path | None = None
) -> ProjectExport:
    """Build the export inputs from a project's train (and split/eval) artifact folders.

    The ``export`` build stage calls this with ``ctx.input("train")`` etc.
    """
    cfg = project.config.export_settings()
    meta = SubModelMeta.read(train_dir)
    source = meta.adapter_dir(train_dir) or train_dir
    metadata: dict[str, Any] = {
        k: getattr(meta, k) for k in ("name", "task", "labels", "instruction", "base")
    }
    # The same served keys the gateway applies (zimo.serve.registry.load_submodel).
    metadata.update(served_label_task(train_dir))
    metadata["name"] = metadata.get("name") or project.name
    if project.config.description:
        metadata["description"] = project.config.description
    label_texts = None
    if split_dir is not None:
        from zimo.dataset_io import read_records

        train_file, test_file = split_dir / "train.parquet", split_dir / "test.parquet"
        if train_file.is_file():
            from zimo.export.card import data_summary

            metadata["data"] = data_summary(read_records(train_file))
        if meta.task == "label" and test_file.is_file() and cfg.label_texts_max:
            texts = [r["text"] for r in read_records(test_file) if r.get("text")]
            label_texts = texts[: cfg.label_texts_max]
    if eval_dir is not None and (eval_dir / "metrics.json").is_file():
        data = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
        if isinstance(data.get("headline"), dict):
            metadata["eval"] = data["headline"]
    return ProjectExport(
        source=source,
        base=meta.base,
        metadata=metadata,
        label_texts=label_texts,
        config=cfg,
    )


def export_all(
    pe: ProjectExport,
    root: Path,
    *,
    formats: list[str] | None = None,
    quant: str | None = None,
    output: str | Path | None = None,
    verify: bool | None = None,
) -> list[dict[str, Any]]:
    """Run :func:`export_model` for each format; ``<root>/<format>-<quant>`` by default."""
    from zimo.export.api import export_model

    cfg = pe.config
    formats = formats or list(cfg.formats)
    quant = quant or cfg.quant
    verify = cfg.verify if verify is None else verify
    output = output or cfg.output
    reports = []
    for fmt in formats:
        tag = fmt if fmt == "hf" else f"{fmt}-{quant}"
        if output is None:
            out = root / tag
        elif len(formats) > 1:
            out = Path(output) / tag
        else:
            out = Path(output)
        reports.append(
            export_model(
                pe.source,
                pe.base,
                fmt,
                quant,
                out,
                label_texts=pe.label_texts,
                metadata=pe.metadata,
                verify=verify,
            )
        )
    return reports


def export_project(
    project_dir: str | Path,
    *,
    formats: list[str] | None = None,
    quant: str | None = None,
    output: str | Path | None = None,
    verify: bool | None = None,
) -> list[dict[str, Any]]:
    """Export a project's trained model in each configured format; returns the reports.

    Arguments override the project's ``export:`` section. With several formats and an
    explicit ``output``, each format goes to ``<output>/<format>``.
    """
    pe = resolve_project(project_dir)
    return export_all(
        pe, pe.default_root, formats=formats, quant=quant, output=output, verify=verify
    )
