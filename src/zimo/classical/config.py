"""``train: {method: classical}``: a TF-IDF + logistic regression label sub-model.

Character n-grams need no tokenizer, so the same settings work for Chinese and English; word
n-grams add whole-word evidence where words are separated by spaces.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClassicalTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["classical"] = "classical"
    name: str | None = Field(
        None, exclude=True, description="the sub-model's name (default: the method)"
    )
    char_ngrams: tuple[int, int] | None = Field((1, 3), description="null = no char n-grams")
    word_ngrams: tuple[int, int] | None = Field((1, 2), description="null = no word n-grams")
    min_df: int = Field(1, ge=1)
    C: float = Field(10.0, gt=0, description="inverse regularisation of the logistic regression")
    class_weight: Literal["balanced"] | None = "balanced"
    calibration: Literal["sigmoid", "isotonic", "none"] = Field(
        "sigmoid", description="probability calibration by cross-validation on the train split"
    )
    seed: int = 0
