"""Which model names this server answers, and where their adapters are.

Sources of sub-models:

- explicit entries (``ServeConfig.models``: name, adapter_dir, metadata);
- project folders: the newest finished ``train`` artifact of each project
  (``<project>/.zimo/artifacts/train/<id>/`` with ``manifest.json``, ``zimo_model.json`` and
  ``adapter/``), found by :func:`discover_project`;
- ``POST /admin/models`` at run time.

A watcher polls the project folders every ``watch_s`` seconds, so a newly trained sub-model is
served without a restart (a retrained one replaces its older adapter).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zimo.serve.config import SubModel
from zimo.serve.project_models import is_cascade, served_names, train_artifacts
from zimo.submodel_meta import MODEL_META, SubModelMeta, served_label_task
from zimo.workspace import Layout

log = logging.getLogger("zimo.serve")


def load_submodel(folder: str | Path, name: str | None = None) -> SubModel:
    """A :class:`SubModel` from a trained folder (``zimo_model.json`` + ``adapter/``).

    ``folder`` may also be a bare PEFT adapter folder (with ``adapter_config.json``), then
    ``name`` is required and the task is chat.
    """
    folder = Path(folder).expanduser().resolve()
    if (folder / MODEL_META).is_file():
        sub = SubModelMeta.read(folder)
        # A null system prompt means "training's default": left out, not served as None.
        meta: dict[str, Any] = sub.model_dump(
            exclude_unset=True, exclude={"system"} if sub.system is None else None
        )
        # The prompt training really used (system, resolved instruction, decision rule).
        meta.update(served_label_task(folder))
        adapter_dir = str(sub.adapter_dir(folder)) if sub.adapter else None
        if adapter_dir is None:
            raise ValueError(
                f"{folder} holds a full fine-tune, not a LoRA adapter; serve it as its own base"
                " (backend.base) or train with method: lora"
            )
        return SubModel(name=name or sub.name or folder.name, adapter_dir=adapter_dir,
                        metadata=meta)  # fmt: skip
    if (folder / "adapter_config.json").is_file():
        if not name:
            raise ValueError(f"{folder} is a bare adapter folder: give it a model name")
        return SubModel(name=name, adapter_dir=str(folder), metadata={"task": "chat"})
    raise ValueError(f"{folder} has neither {MODEL_META} nor adapter_config.json")


def discover_project(project: str | Path) -> list[SubModel]:
    """The newest trained language sub-models of a project folder (empty when none is trained
    yet). Analytic sub-models (classical, tables) are served by ``zimo.serve.analytic``."""
    root = Path(project).expanduser().resolve()
    arts = train_artifacts(root)
    out: list[SubModel] = []
    for stage, _newest in arts:
        folder_root = Layout(root).artifacts / stage
        done = [
            p
            for p in folder_root.iterdir()
            if (p / "manifest.json").is_file() and (p / MODEL_META).is_file()
        ]
        for folder in sorted(
            done, key=lambda p: (p / "manifest.json").stat().st_mtime, reverse=True
        ):
            try:
                meta = SubModelMeta.read(folder)
                if meta.kind != "lm":
                    break
                names = served_names(meta.name or root.name, stage, meta.submodel,
                                     len(arts), always_alias=is_cascade(root))  # fmt: skip
                out += [load_submodel(folder, n) for n in names]
                break
            except (ValueError, json.JSONDecodeError) as e:
                log.warning("skipping %s: %s", folder, e)
    return out


class ModelRegistry:
    """Names → sub-models, kept in sync with the engine; thread-safe."""

    def __init__(self, backend, projects: Iterable[str | Path] = (), watch_s: float | None = None):
        self.backend = backend
        self.projects = [Path(p) for p in projects]
        self.watch_s = watch_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sources: dict[str, str] = {}  # name -> config | project:<path> | admin

    def add(self, sub: SubModel, source: str = "config") -> bool:
        """Serve ``sub``; True when it is new or changed."""
        with self._lock:
            old = self.backend.models.get(sub.name)
            if (
                old is not None
                and old.adapter_dir == sub.adapter_dir
                and old.metadata == sub.metadata
            ):
                return False
            self.backend.add_model(sub)
            self.sources[sub.name] = source
            log.info("serving %s (%s)", sub.name, source)
            return True

    def remove(self, name: str) -> bool:
        with self._lock:
            if name not in self.backend.models:
                return False
            self.backend.remove_model(name)
            self.sources.pop(name, None)
            return True

    def names(self) -> list[str]:
        return sorted(self.backend.models)

    def get(self, name: str) -> SubModel | None:
        return self.backend.models.get(name)

    def refresh(self) -> list[str]:
        """Rescan the project folders; returns the names added or updated."""
        changed = []
        for project in self.projects:
            for sub in discover_project(project):
                try:
                    if self.add(sub, source=f"project:{project}"):
                        changed.append(sub.name)
                except Exception as e:  # one broken artifact must not stop the others
                    log.warning("cannot serve %s from %s: %s", sub.name, project, e)
        return changed

    def start_watching(self) -> None:
        if not self.watch_s or not self.projects or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.watch_s):
                try:
                    self.refresh()
                except Exception as e:  # keep watching after a transient error
                    log.warning("model watcher: %s", e)

        self._thread = threading.Thread(target=loop, name="zimo-model-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
