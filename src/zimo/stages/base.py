"""The stage protocol: what a build stage is given, what it returns, how the DAG names it.

Every stage module imports these from here, and the runner (:mod:`zimo.build`) and the DAG
(:mod:`zimo.stages.dag`) build on them, so a stage never imports the runner that calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from zimo.config import Project
from zimo.workspace import Workspace


@dataclass
class StageContext:
    project: Project
    workspace: Workspace
    stage: str
    artifact: str
    work: Path
    inputs: dict[str, Path]
    console: Console

    def input(self, stage: str) -> Path:
        return self.inputs[stage]


@dataclass
class StageResult:
    rows: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stage:
    name: str
    deps: list[str]
    sections: list[str]  # config keys (top-level) that change the artifact
    version: str  # bump when the stage's code changes its output
    run: Callable[[StageContext], StageResult]
    help: str = ""
    # Extra config hashed into the artifact id: a sub-model's own `train:` entry, so changing
    # one sub-model of a list retrains only that one.
    config: Any = None


def train_stage_name(index: int, name: str) -> str:
    """The primary sub-model trains in ``train``; each further one in ``train-<name>``."""
    return "train" if index == 0 else f"train-{name}"
