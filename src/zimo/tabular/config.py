"""The ``tabular:`` section and the LightGBM ``train:`` section of ``zimo.yaml``.

Example::

    task: tabular
    tabular:
      target: Time_taken(min)
      objective: auto            # regression | binary | multiclass, chosen from the target
      columns: {City: categorical, Order_Date: datetime}   # override an inferred kind
      exclude: [Delivery_person_ID]
      tolerance: 5               # regression: share of predictions within ±5 of the truth
      interval: 0.8              # regression: an 80% prediction interval (quantile models)
    train:
      method: lightgbm
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TabularConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="the column to predict")
    objective: Literal["auto", "regression", "binary", "multiclass"] = "auto"
    columns: dict[str, Literal["numeric", "categorical", "datetime", "text", "exclude"]] = {}
    exclude: list[str] = []
    tolerance: float = Field(5.0, gt=0, description="regression: the ±band of `within_tol`")
    interval: float | None = Field(
        0.8, gt=0, lt=1, description="regression: central prediction interval (null = none)"
    )


class LightGBMTrainConfig(BaseModel):
    """LightGBM settings; the defaults are a good first model on tables of 1k-1M rows."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["lightgbm"] = "lightgbm"
    name: str | None = Field(
        None, exclude=True, description="the sub-model's name (default: the method)"
    )
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(63, ge=2, le=131072)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample: float = Field(0.8, gt=0, le=1)
    max_rounds: int = Field(5000, ge=1, description="upper bound; early stopping on dev ends it")
    early_stopping_rounds: int = Field(100, ge=1)
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="default: the machine's cores")
    engine: Literal["local", "dask"] = Field(
        "local", description="dask = LightGBM's own Dask interface on a local cluster"
    )
    dask_workers: int = Field(2, ge=1)


class TabularEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    systems: list[Literal["lightgbm", "baseline_mean", "linear"]] = [
        "lightgbm",
        "baseline_mean",
        "linear",
    ]
    bootstrap_samples: int = Field(1000, ge=100)
    latency_samples: int = Field(50, ge=0)
