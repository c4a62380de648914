"""The ``train:`` section of ``zimo.yaml``, as a pydantic model with defaults that work.

Defaults are the measured demo settings for gecko on a slow 2-core AVX2 CPU (see
``benchmarks/results/train_lora.md``): LoRA on the top layers only, a training subset, short
sequences. ``max_train_rows: null`` + more ``epochs`` trains on everything.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LoraSettings(BaseModel):
    """LoRA adapter shape. ``layers``: ``N`` = the top N decoder layers, a list = those layer
    indices, ``null`` = every layer (full depth; slowest, since backward runs through all)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    layers: int | list[int] | None = 8


class EarlyStopping(BaseModel):
    """Stop when dev loss has not improved by ``min_delta`` for ``patience`` evaluations.

    Either way the run ends on the weights of its best dev loss: those are what gets saved
    (``restored_best_step`` in the training summary says which step they come from).
    """

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class WarmStart(BaseModel):
    """Flywheel rounds continue the previous adapter on the rows new since it, plus
    ``replay_rows`` of the rows it learned, instead of retraining from scratch (LoRA label
    tasks; see ``zimo.train.warm_start``)."""

    model_config = ConfigDict(extra="forbid")

    replay_rows: int = Field(300, ge=0, description="earlier rows trained on again")


class TrainConfig(BaseModel):
    """Settings for ``zimo train``; every field has a default that works for the gecko demo."""

    model_config = ConfigDict(extra="forbid")

    # Not part of the artifact id (exclude): a name changes how it is served, not what trains.
    name: str | None = Field(
        None, exclude=True, description="the sub-model's name (default: the method)"
    )
    base: str = "gecko"
    method: Literal["lora", "qlora", "full"] = Field(
        "lora", description="qlora = LoRA on a 4-bit (bitsandbytes NF4) base: CUDA only"
    )
    task: Literal["label", "chat"] = "label"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    full_layers: int | None = Field(
        None, ge=1, description="method full: train only the top N decoder layers (null = all)"
    )

    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    max_train_rows: int | None = Field(600, ge=1)
    max_dev_rows: int | None = Field(100, ge=1)
    balance_labels: bool = Field(
        False, description="label task: take the training subset class-balanced (else stratified)"
    )

    lr: float = Field(5e-4, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = Field(0.05, ge=0, description="fraction of steps (<1) or a step count (>=1)")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(128, ge=16, description="tokens per training row; longer rows are cut")

    # Label task prompt (the same prompt is used at inference).
    instruction: str | None = None
    system: str | None = None

    # Speed tricks (each measured; "auto" = use where it pays on this machine).
    bucketing: bool = True
    share_prefix: bool = Field(
        True, description="compute the prompt prefix that every row shares once per batch"
    )
    packing: bool = True  # chat task: pack short conversations into one row
    # CPU: bf16 frozen base + autocast where the CPU has bf16 and it measures faster. CUDA: auto =
    # bf16 autocast where the GPU supports it, else fp16 autocast with loss scaling; false = fp32.
    bf16: Literal["auto"] | bool = "auto"
    cache_frozen: Literal["auto"] | bool = "auto"
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = the process's CUDA GPU when there is one, else the CPU"
    )

    warm_start: WarmStart | None = Field(
        None, description="continue the previous adapter when only teacher rows were added"
    )

    seed: int = 0
    checkpoint_every: int = Field(50, ge=1)
    eval_every: int | None = Field(None, ge=1, description="steps between dev-loss evaluations")
    early_stopping: EarlyStopping | None = None

    @field_validator("lora")
    @classmethod
    def _layers_positive(cls, v: LoraSettings) -> LoraSettings:
        if isinstance(v.layers, int) and v.layers < 1:
            raise ValueError("lora.layers must be >= 1 (top N layers) or a list of indices")
        return v
