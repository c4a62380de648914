"""The ``export:`` section of ``zimo.yaml``, for each kind of sub-model.

Kept apart from the exporters so :mod:`zimo.config` can validate the section at load time
without importing the GGUF writer or pandas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zimo.errors import ConfigError, section_error


class ExportConfig(BaseModel):
    """The ``export:`` section of ``zimo.yaml``."""

    model_config = ConfigDict(extra="forbid")

    formats: list[Literal["hf", "gguf", "ollama"]] = Field(
        default_factory=lambda: ["gguf"], min_length=1, description="what to write"
    )
    quant: Literal["f16", "q8_0", "q4_k_m"] = Field(
        "q8_0", description="GGUF quantisation (q4_k_m needs the zimo[llamacpp] extra)"
    )
    output: str | None = Field(
        None, description="output folder (default: <project>/.zimo/exports/<format>-<quant>)"
    )
    verify: bool = Field(True, description="load the export back and compare (recommended)")
    label_texts_max: int = Field(
        200, ge=0, description="test-split texts used for the label-agreement check"
    )


def export_config(raw: Any) -> ExportConfig:
    """Validate the ``export:`` section; a bad key is a one-line ConfigError naming it."""
    try:
        return ExportConfig.model_validate(raw or {})
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        key = "export." + ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            known = ", ".join(ExportConfig.model_fields)
            raise ConfigError(f"unknown key '{key}' in zimo.yaml", f"allowed: {known}") from None
        raise ConfigError(f"'{key}' in zimo.yaml: {err['msg'].lower()}", "fix the value") from None


class AnalyticExportConfig(BaseModel):
    """The ``export:`` section for a project whose primary sub-model is analytic."""

    model_config = ConfigDict(extra="forbid")

    formats: list[Literal["onnx", "lightgbm"]] = Field(default_factory=lambda: ["onnx"],
                                                      min_length=1)  # fmt: skip
    output: str | None = Field(None, description="default: <project>/.zimo/exports/<format>")
    # No `verify` switch: an analytic export is always checked against the model (it is cheap),
    # and a key that is accepted and then ignored would mislead.
    check_rows: int = Field(2000, ge=1, description="test rows used for the agreement check")


def analytic_export_config(raw: Any) -> AnalyticExportConfig:
    try:
        return AnalyticExportConfig.model_validate(raw or {})
    except ValidationError as e:
        raise section_error("export", e, AnalyticExportConfig) from None
