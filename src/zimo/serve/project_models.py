"""Which trained sub-models a project folder holds, and the names the gateway serves them by.

A project's primary sub-model answers to the project's name; every sub-model also answers to
``<project>@<sub-model>`` (e.g. ``sms-fraud@classical``) when the project has more than one,
or when a cascade takes the project's name and its tiers need their own. Shared by the LM
registry and the analytic store, which each load the kinds they serve.
"""

from __future__ import annotations

from pathlib import Path

from zimo.submodel_meta import MODEL_META
from zimo.workspace import Layout


def train_artifacts(project: Path) -> list[tuple[str, Path]]:
    """(stage, newest finished artifact) for the project's train stages (train, train-*)."""
    root = Layout(Path(project).expanduser().resolve()).artifacts
    if not root.is_dir():
        return []
    out = []
    for stage in sorted(
        p for p in root.iterdir() if p.name == "train" or p.name.startswith("train-")
    ):
        done = [p for p in stage.iterdir()
                if (p / "manifest.json").is_file() and (p / MODEL_META).is_file()]  # fmt: skip
        if done:
            newest = max(done, key=lambda p: (p / "manifest.json").stat().st_mtime)
            out.append((stage.name, newest))
    return out


def served_names(project_name: str, stage: str, sub: str | None, n_subs: int,
                 always_alias: bool = False) -> list[str]:  # fmt: skip
    """The names one sub-model answers to (see the module docstring). ``always_alias``: also
    ``<project>@<name>`` for a project's only sub-model (analytic kinds cost nothing to alias;
    a cascade takes the project's name, so its tiers need theirs)."""
    names = [project_name] if stage == "train" else []
    if n_subs > 1 or stage != "train" or always_alias:
        names.append(f"{project_name}@{sub or stage.removeprefix('train-')}")
    return names


def is_cascade(project: Path) -> bool:
    """Whether the project serves its name through a cascade (route.mode: cascade)."""
    import yaml

    try:
        raw = yaml.safe_load((Path(project) / "zimo.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    route = raw.get("route") if isinstance(raw, dict) else None
    return isinstance(route, dict) and route.get("mode") == "cascade"
