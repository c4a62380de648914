"""Kinds of sub-model, and the one place a new kind plugs in.

A kind is a family of ``train.method`` values with the same life cycle: how it trains (a build
stage), how the gateway loads it, how it exports. The build, the gateway and ``zimo export``
ask this table instead of testing methods themselves, so adding a kind is a new folder with
those three functions and one line here. Entry points are "module:attribute" strings, imported
only when used, so the table does not pull torch or LightGBM into every command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Kind:
    name: str
    methods: tuple[str, ...]
    serves: Literal["lm", "text", "table", "image"]  # LM chat | chat labels | table rows | images
    train: str  # run(ctx, cfg) -> StageResult
    load: str | None = None  # Predictor(folder), for kinds the gateway answers in-process
    export: str | None = None  # export(folder, fmt, out, ctx) -> report dict
    formats: tuple[str, ...] = ()
    export_stage: str = "zimo.export.analytic:run_stage"  # run(ctx) -> StageResult


KINDS: tuple[Kind, ...] = (
    Kind(
        "lm",
        ("lora", "qlora", "full"),
        "lm",
        "zimo.stages.train:run_lm",
        formats=("hf", "gguf", "ollama"),
        export_stage="zimo.export.stage:run",
    ),  # fmt: skip
    Kind(
        "classical",
        ("classical",),
        "text",
        "zimo.stages.train:run_classical",
        "zimo.classical.model:ClassicalPredictor",
        "zimo.export.analytic:export_classical",
        ("onnx",),
    ),  # fmt: skip
    Kind(
        "tabular",
        ("lightgbm",),
        "table",
        "zimo.stages.tabular:run_train",
        "zimo.tabular.predictor:TabularPredictor",
        "zimo.export.analytic:export_tabular",
        ("onnx", "lightgbm"),
    ),  # fmt: skip
    Kind(
        "image",
        ("image", "clip"),
        "image",
        "zimo.stages.image:run_train",
        "zimo.image.predictor:ImagePredictor",
        "zimo.image.export:export_image",
        ("onnx",),
    ),  # fmt: skip
)


def kind_of(method: str) -> Kind:
    for k in KINDS:
        if method in k.methods:
            return k
    raise KeyError(method)


def resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
