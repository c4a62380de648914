"""The ``image:`` section of zimo.yaml and the ``train:`` entries of image sub-models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zimo.image.prompts import DEFAULT_TEMPLATES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageConfig(_Strict):
    """How images are read, checked, deduplicated and sized (task: image)."""

    path_field: str = Field("path", description="manifests: the column with the image path")
    caption_field: str = Field("caption", description="manifests: an optional free-text caption")
    image_size: int | Literal["auto"] = Field(
        "auto",
        description="side of the square the encoder sees; auto: the median short side of the "
        "images, between 32 and 96 (upscaling adds cost, not detail)",
    )
    min_side: int = Field(8, ge=1, description="images with a shorter side are quarantined")
    max_pixels: int = Field(40_000_000, ge=1, description="larger images are quarantined")
    max_file_mb: float = Field(25.0, gt=0, description="larger files are quarantined")
    near_dup_bits: int = Field(
        4, ge=0, le=16, description="perceptual hashes this close (of 64 bits) are duplicates"
    )
    templates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TEMPLATES),
        min_length=1,
        description="label prompts; {} is replaced by the label name",
    )
    flip: bool = Field(True, description="mirror images in training (off for text and scans)")
    grid_per_label: int = Field(8, ge=0, le=64, description="examples per label in the report")

    @model_validator(mode="after")
    def _templates(self) -> ImageConfig:
        for t in self.templates:
            if t.count("{}") != 1:
                raise ValueError(f"template {t!r} must contain {{}} exactly once")
        return self


class ImageTrainConfig(_Strict):
    """``train: {method: image}``: the embedded default, a small CNN trained into the frozen
    MiniLM text space."""

    method: Literal["image"] = "image"
    name: str | None = None
    budget_cpu_s: float = Field(
        600.0, gt=0, description="CPU-seconds of training (process time: 300 s on 2 cores)"
    )
    max_epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=8)
    lr: float = Field(0.1, gt=0)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1, max_length=5)
    seed: int = 0
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: bf16 where the CPU has it in hardware (AVX512-BF16/AMX)"
    )
    baseline_cnn: bool = Field(
        True, description="also train the same-budget CNN from scratch for the eval report"
    )


class ClipLoraConfig(_Strict):
    """``train: {method: clip, head: lora, lora: {...}}``: LoRA adapters on the CLIP's towers,
    trained against the label prompts under a CPU-time budget like the embedded default."""

    r: int = Field(8, ge=1, le=256, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1)
    text_tower: bool = Field(
        False, description="also adapt the text tower's attention (label vectors then move too)"
    )
    budget_cpu_s: float = Field(
        600.0, gt=0, description="CPU-seconds of training (process time: 300 s on 2 cores)"
    )
    max_epochs: int = Field(10, ge=1)
    lr: float = Field(5e-4, gt=0, description="peak AdamW learning rate")
    seed: int = 0


class ClipTrainConfig(_Strict):
    """``train: {method: clip}``: a CLIP checkpoint already on this machine (nothing is
    downloaded). ``source: transformers``: a folder with a ``CLIPModel``, or a hub id in the
    local cache. ``source: open_clip``: an open_clip ``model_name`` (or a model config .json)
    and a local ``checkpoint`` file of its weights (needs the ``clip`` extra)."""

    method: Literal["clip"] = "clip"
    name: str | None = None
    source: Literal["transformers", "open_clip"] = Field(
        "transformers", description="which library's checkpoint `checkpoint` is"
    )
    checkpoint: str = Field(description="transformers: a CLIPModel folder or a cached hub id; "
                            "open_clip: the weights file (pretrained=path)")  # fmt: skip
    model_name: str | None = Field(
        None, description="open_clip only: the architecture (e.g. ViT-B-32) or a model config .json"
    )
    head: Literal["zero_shot", "linear_probe", "lora"] = Field(
        "linear_probe", description="zero_shot: label prompts only; linear_probe: a logistic "
        "regression on the frozen image features; lora: LoRA on the image tower's attention "
        "(and the text tower's with lora.text_tower), trained against the label prompts"
    )  # fmt: skip
    lora: ClipLoraConfig = Field(default_factory=ClipLoraConfig)
    batch_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> ClipTrainConfig:
        if "lora" in self.model_fields_set and self.head != "lora":
            raise ValueError(f"`lora:` settings apply only with head: lora (head is {self.head})")
        if self.source == "open_clip" and not self.model_name:
            raise ValueError(
                "source: open_clip needs model_name (e.g. ViT-B-32, or a .json config)"
            )
        if self.source == "transformers" and self.model_name:
            raise ValueError("model_name applies only to source: open_clip (a transformers "
                             "checkpoint carries its own config)")  # fmt: skip
        return self


class ImageEvalConfig(_Strict):
    """``eval:`` of an image project."""

    n_boot: int = Field(1000, ge=100, description="bootstrap resamples for the CIs")
    worst_mistakes: int = Field(24, ge=0, le=200, description="grid of the most confident errors")


def image_config(project) -> ImageConfig:
    """A project's ``image:`` section, or the defaults when it has none."""
    return project.config.image or ImageConfig()
