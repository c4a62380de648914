"""The ``guard:`` section of ``zimo.yaml``: how AI-written text is scored, flagged and capped."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScoreName = Literal[
    "auto",
    "combined",
    "logrank",
    "loglik",
    "entropy",
    "fast_detectgpt",
    "binoculars",
    "lrr",
]


class GuardConfig(BaseModel):
    """Pollution guard settings (the ``guard:`` section of ``zimo.yaml``).

    ``threshold`` None means: take it from the calibration (shipped with Zimo for the embedded
    models, or ``calibration:`` if given), which was set for ``target_fpr`` on a dev split.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        "auto",
        description="scorer LM: auto (gecko-zh for Chinese, gecko for English), a preset or a path",
    )
    score: ScoreName = Field(
        "auto",
        description="which score decides guard_flag: auto = the one each model's calibration "
        "names (combined for gecko-zh; a zero-shot score for gecko, where no fitted one "
        "transferred), or one score for every model",
    )
    style_adapter: str = Field(
        "auto",
        description="machine-style LoRA merged into the scorer (zimo.guard.style): auto = the one "
        "Zimo ships for the model, if any; off; or an adapter folder (recalibrate for it)",
    )
    threshold: float | None = Field(
        None, description="flag records whose score is above this; None = from the calibration"
    )
    target_fpr: float = Field(
        0.01, gt=0, lt=1, description="false-positive rate the calibrated threshold aims at"
    )
    calibration: Path | None = Field(
        None,
        description="a calibration JSON written by `calibrate`, or a folder of them named "
        "<model>.json (one per language with model: auto); None = Zimo's shipped ones",
    )
    action: Literal["flag", "drop"] = Field(
        "flag", description="flag: keep and mark; drop: reject flagged records at curation"
    )
    max_synthetic_share: float = Field(
        0.5, ge=0, le=1, description="cap on (declared synthetic + flagged) share of a training mix"
    )
    policy: Literal["accumulate", "replace"] = Field(
        "accumulate",
        description="accumulate: keep all human data, cap synthetic; replace: synthetic may "
        "replace human data (known to collapse over generations; for experiments)",
    )
    token_budget: int = Field(
        256,
        ge=8,
        le=4096,
        description="tokens per scoring window (the calibration's; each window starts fresh)",
    )
    max_tokens: int = Field(
        1024, ge=8, le=65536, description="tokens scored per record, in windows of token_budget"
    )
    min_tokens: int = Field(
        48, ge=1, description="records shorter than this get no flag (score not trusted)"
    )
    batch_size: int = Field(8, ge=1, le=256)
    threads: int | None = Field(
        None,
        ge=1,
        description="intra-op CPU threads; None = the cores idle right now (on an oversubscribed "
        "machine extra threads spin-wait for each other and run several times slower)",
    )
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: bf16 only where the CPU has bf16 hardware and it measures faster"
    )
