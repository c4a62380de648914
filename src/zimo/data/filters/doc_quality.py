"""A quality score per document, Gopher-style, recorded in ``meta.quality_score`` (0–1).

The ``quality`` step rejects on single hard rules (too many symbols, repeated n-grams); this one
grades what is left of a page: does it read as prose? Four signals, each mapped to 0–1 and
averaged:

* sentences: share of lines that end like a sentence (。！？.!?), against 0.5 — menus, tag
  lists and link lists end in nothing;
* function words: stop-word density (jieba tokens for Chinese, words for English), against
  0.15 for Chinese and 0.30 for English (prose is above; keyword spam is near zero);
* letters: share of non-space characters that are letters or CJK, against 0.75;
* length: characters of text, against 200 (a lone title is not a document).

Text with more than 1% U+FFFD replacement characters (bytes lost in a wrong decoding, which
``fix_unicode`` cannot undo) is rejected as ``mojibake``. Documents below ``min_score`` are
rejected as ``low_quality_score``. Only document formats are scored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from zimo.data.formatters.page_lines import (
    _CJK,
    _LATIN_WORD,
    _SENT_END,
    pick_stoplist,
    stop_density,
)
from zimo.data.pipeline import DOC_FORMATS, Filter, Step
from zimo.data.step_spec import StepSpec

_CLOSERS = "”’\"'）)】」』》 "


def quality_signals(text: str) -> dict[str, float]:
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    head = text[:5000]
    cjk = len(_CJK.findall(head))
    words = len(_LATIN_WORD.findall(head))
    zh = cjk >= words
    ends = sum(1 for ln in lines if ln.rstrip(_CLOSERS).endswith(_SENT_END))
    nonspace = [ch for ch in head if not ch.isspace()]
    letters = sum(1 for ch in nonspace if ch.isalpha())
    return {
        "sentence_lines": ends / max(1, len(lines)),
        "stop_density": (
            stop_density(re.sub(r"\s+", " ", head), zh, None if zh else pick_stoplist(head))
            if head.strip()
            else 0.0
        ),
        "letters": letters / max(1, len(nonspace)),
        "chars": float(len(text)),
        "zh": float(zh),
        "replacement": text.count("\ufffd") / max(1, len(text)),
    }


def quality_score(sig: dict[str, float]) -> float:
    parts = [
        min(1.0, sig["sentence_lines"] / 0.5),
        min(1.0, sig["stop_density"] / (0.15 if sig["zh"] else 0.30)),
        min(1.0, sig["letters"] / 0.75),
        min(1.0, sig["chars"] / 200),
    ]
    return round(sum(parts) / len(parts), 3)


class DocQuality(Filter):
    """Score documents; reasons ``low_quality_score`` and ``mojibake``."""

    name = "doc_quality"

    def __init__(self, min_score: float = 0.4, max_replacement: float = 0.01,
                 formats: list[str] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.min_score = min_score
        self.max_replacement = max_replacement
        self.formats = set(formats) if formats is not None else {"html", "txt", "md", "pdf"}

    def filter(self, rec: dict[str, Any]) -> bool | tuple[bool, str]:
        meta = rec.get("meta")
        if rec.get("text") is None or (meta or {}).get("format") not in self.formats:
            return True
        sig = quality_signals(rec["text"])
        score = quality_score(sig)
        rec["meta"]["quality_score"] = score
        if sig["replacement"] > self.max_replacement:
            return False, "mojibake"
        if score < self.min_score:
            return False, "low_quality_score"
        return True


class DocQualitySpec(StepSpec):
    """Record a 0–1 prose score in ``meta.quality_score``; reject below ``min_score``."""

    step: Literal["doc_quality"] = "doc_quality"
    min_score: float = Field(default=0.4, ge=0, le=1)
    max_replacement: float = Field(default=0.01, ge=0, le=1)  # share of U+FFFD: mojibake
    formats: list[str] = Field(default_factory=lambda: list(DOC_FORMATS))

    def build(self) -> Step:
        return DocQuality(self.min_score, self.max_replacement, self.formats)


# Every kind of personal data the ``pii`` step knows (zimo.data.formatters.pii), all on by default.
