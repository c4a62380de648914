"""What a trained sub-model's folder says about itself: the typed boundary between the train
stage and everything that reads its artifact (eval, the gateway, export, the cascade).

- ``zimo_model.json`` (:class:`SubModelMeta`): name, kind, task, base model, method, labels and
  where the adapter is; written by the train stage of every kind.
- ``label_task.json`` (:class:`LabelTask`): the exact label prompt and decision rule a language
  sub-model was trained with (system prompt, instruction, text truncation, dev threshold), so
  eval, serving and export score with the prompt training used, not today's config.

Both keep keys they do not know (a kind may add its own, e.g. an image model's input size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from zimo.fileio import read_json_optional, write_json_atomic

MODEL_META = "zimo_model.json"
LABEL_TASK = "label_task.json"


class SubModelMeta(BaseModel):
    """``zimo_model.json`` of a train artifact."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None  # the project's name; served as the model name
    submodel: str | None = None  # the sub-model's own name inside a project
    kind: str = "lm"  # lm, classical, tabular, image (zimo.kinds)
    task: str = "label"  # label or chat (language models)
    base: str | None = None  # base model of a language sub-model
    method: str = "lora"
    labels: list[str] | None = None
    positive_label: str | None = None
    instruction: str | None = None
    system: str | None = None  # None: training's default system prompt
    adapter: str | None = None  # adapter folder inside the artifact; None for full weights
    artifact: str | None = None

    @classmethod
    def read(cls, folder: str | Path) -> SubModelMeta:
        """The metadata of ``folder``; ``FileNotFoundError`` when it has none, ``ValueError``
        (a pydantic ``ValidationError`` or a JSON error) when it is malformed."""
        import json

        path = Path(folder) / MODEL_META
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def read_optional(cls, folder: str | Path) -> SubModelMeta | None:
        """As :meth:`read`, or None where the folder has no metadata."""
        raw = read_json_optional(Path(folder) / MODEL_META)
        return cls.model_validate(raw) if raw else None

    def write(self, folder: str | Path) -> None:
        # Only the keys the writer set: the file says what the stage knew, nothing invented.
        write_json_atomic(
            Path(folder) / MODEL_META, self.model_dump(mode="json", exclude_unset=True)
        )

    def adapter_dir(self, folder: str | Path) -> Path | None:
        """The adapter folder inside the artifact ``folder`` (None for full weights)."""
        return Path(folder) / self.adapter if self.adapter else None


class LabelTask(BaseModel):
    """``label_task.json``: the label prompt and decision rule training used."""

    model_config = ConfigDict(extra="allow")
    labels: list[str] | None = None
    instruction: str | None = None
    system: str | None = None
    max_text_tokens: int | None = None
    positive_label: str | None = None
    decision_threshold: float | None = None

    # What serving, eval and export apply on top of zimo_model.json.
    SERVED: ClassVar[tuple[str, ...]] = (
        "labels",
        "instruction",
        "system",
        "max_text_tokens",
        "positive_label",
        "decision_threshold",
    )

    @classmethod
    def read_optional(cls, folder: str | Path) -> LabelTask | None:
        raw = read_json_optional(Path(folder) / LABEL_TASK)
        return cls.model_validate(raw) if raw else None

    def served(self) -> dict[str, Any]:
        """The served keys this file sets (a key absent from the file is left out)."""
        return {k: getattr(self, k) for k in self.SERVED if k in self.model_fields_set}


def served_label_task(folder: str | Path) -> dict[str, Any]:
    """The served keys of ``folder``'s ``label_task.json``; empty when there is none."""
    task = LabelTask.read_optional(folder)
    return task.served() if task else {}
