"""Drop empty, too-short and too-long records, counting characters (CJK-aware)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from zimo.data.pipeline import Filter, Step, record_text
from zimo.data.step_spec import StepSpec


def char_length(text: str) -> int:
    """Characters that are not whitespace: one Chinese character counts as one, like a letter.

    Whitespace tokens would count a whole Chinese paragraph as one "word", so length rules
    count characters instead.
    """
    return len(text) - sum(text.count(c) for c in " \n\t")


class LengthFilter(Filter):
    """Reasons: ``empty``, ``too_short`` (< min_chars), ``too_long`` (> max_chars)."""

    name = "length"

    def __init__(self, min_chars: int = 1, max_chars: int = 200_000) -> None:
        super().__init__()
        self.min_chars = min_chars
        self.max_chars = max_chars

    def filter(self, rec: dict[str, Any]) -> bool | tuple[bool, str]:
        n = char_length(record_text(rec))
        if n == 0:
            return False, "empty"
        if n < self.min_chars:
            return False, "too_short"
        if n > self.max_chars:
            return False, "too_long"
        return True


class LengthSpec(StepSpec):
    """Drop empty, too-short and too-long records (counted in characters, not words)."""

    step: Literal["length"] = "length"
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=200_000, ge=1)

    def build(self) -> Step:
        return LengthFilter(min_chars=self.min_chars, max_chars=self.max_chars)
