"""Find the trained sub-models of projects, for serving and export.

A sub-model is the ``train`` artifact of a project: ``adapter/`` (PEFT) or full weights plus
``zimo_model.json`` (base, task, labels, instruction). The current (fresh) artifact wins;
otherwise the newest one, so a server keeps answering while a retrain is under way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zimo.errors import ZimoError


def submodel_of(project_dir: str | Path) -> dict[str, Any]:
    """The newest trained sub-model of one project, as a dict with ``dir`` and its metadata."""
    from zimo.config import load_project
    from zimo.stages.dag import artifact_path

    project = load_project(project_dir)
    train_dir = artifact_path(project.root, "train")
    if train_dir is None or not (train_dir / "zimo_model.json").is_file():
        raise ZimoError(
            f"project {project.name!r} has no trained sub-model yet",
            f"run `zimo build {project_dir}` first",
        )
    meta = json.loads((train_dir / "zimo_model.json").read_text(encoding="utf-8"))
    meta["dir"] = str(train_dir)
    meta["adapter_dir"] = str(train_dir / meta["adapter"]) if meta.get("adapter") else None
    meta["project"] = str(project.root)
    meta.setdefault("name", project.name)
    return meta


def submodels_of(project_dirs: list[str | Path]) -> list[dict[str, Any]]:
    return [submodel_of(p) for p in project_dirs]
