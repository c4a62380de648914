"""Heuristic quality rules in the spirit of Gopher / C4, made CJK-aware.

Chinese has no spaces, so "words" here are Latin/digit runs *or single CJK characters*, and
n-gram repetition is measured on those units; ratios are over non-space characters.

Documents (pages, files) are judged a little differently from rows (SMS, labelled texts): an
article restates its lead in a caption or a summary and repeats long names ("the Hong Kong
section of the Guangzhou-Shenzhen-Hong Kong Express Rail Link"), and a tutorial repeats the
same command-line flags in every command. So in documents a repeated n-gram counts once it
occurs three times (a passage said twice is ordinary writing, three times is a template), and
code lines and lines without a letter or digit (table rules) are left out of the repeated
lines and n-grams.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from zimo.data.pipeline import DOC_FORMATS, Filter, Step, record_text
from zimo.data.step_spec import StepSpec

# Combining marks (Devanagari, Thai, Arabic vowel signs …) are not ``\w`` in Python's ``re``:
# without them a Hindi word falls apart into single consonants that repeat everywhere.
_MARKS = "".join(
    chr(c) for c in range(0x300, 0x10000) if unicodedata.category(chr(c)).startswith("M")
)
_UNIT = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|(?:[^\W_]|["
    + re.escape(_MARKS)
    + r"])+"
)
# Command lines and code: a tutorial repeats `-e ENV=dev \` in every command.
_CODE_LINE = re.compile(r"[\\{};=$]|^-{1,2}\w")
_WORDISH = re.compile(r"[^\W_]")


_CJK_UNIT = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def units(text: str) -> list[str]:
    """Tokens for repetition checks: Latin/digit words, and each CJK character on its own."""
    return _UNIT.findall(text.lower())


def _symbol_digit_letter(text: str) -> tuple[int, int, int, int]:
    symbols = digits = letters = total = 0
    for ch in text:
        if ch.isspace():
            continue
        total += 1
        if ch.isdigit():
            digits += 1
        elif ch.isalpha():
            letters += 1
        else:
            cat = unicodedata.category(ch)
            if cat[0] == "S" or ch in "#*|~_=^<>":
                symbols += 1
    return symbols, digits, letters, total


def _top_ngram_frac(toks: list[str], n: int) -> float:
    if len(toks) < n + 1:
        return 0.0
    grams = Counter(zip(*(toks[i:] for i in range(n)), strict=False))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(len(t) for t in toks)
    return count * sum(len(t) for t in gram) / max(1, total)


def _dup_ngram_frac(toks: list[str], n: int, min_count: int = 2) -> float:
    """Share of characters inside n-grams that occur at least ``min_count`` times."""
    if len(toks) < n * 2:
        return 0.0
    grams = list(zip(*(toks[i:] for i in range(n)), strict=False))
    counts = Counter(grams)
    covered = [False] * len(toks)
    for i, g in enumerate(grams):
        if counts[g] >= min_count:
            for j in range(i, i + n):
                covered[j] = True
    total = sum(len(t) for t in toks)
    return sum(len(t) for t, c in zip(toks, covered, strict=True) if c) / max(1, total)


class QualityFilter(Filter):
    """Reasons: ``symbol_ratio``, ``digit_ratio``, ``few_letters``, ``repeated_lines``,
    ``repeated_ngrams``. Texts shorter than ``min_chars_to_judge`` pass (SMS, titles)."""

    name = "quality"

    def __init__(
        self,
        min_chars_to_judge: int = 50,
        max_symbol_ratio: float = 0.25,
        max_digit_ratio: float = 0.35,
        max_dup_line_frac: float = 0.3,
        max_dup_line_char_frac: float = 0.2,
        max_top_ngram_frac: float = 0.2,
        max_dup_ngram_frac: float = 0.3,
        min_letter_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.min_chars = min_chars_to_judge
        self.max_symbol_ratio = max_symbol_ratio
        self.max_digit_ratio = max_digit_ratio
        self.max_dup_line_frac = max_dup_line_frac
        self.max_dup_line_char_frac = max_dup_line_char_frac
        self.max_top_ngram_frac = max_top_ngram_frac
        self.max_dup_ngram_frac = max_dup_ngram_frac
        self.min_letter_ratio = min_letter_ratio

    def filter(self, rec: dict[str, Any]) -> bool | tuple[bool, str]:
        text = record_text(rec)
        symbols, digits, letters, total = _symbol_digit_letter(text)
        if total < self.min_chars:
            return True
        if symbols / total > self.max_symbol_ratio:
            return False, "symbol_ratio"
        if digits / total > self.max_digit_ratio:
            return False, "digit_ratio"
        if letters / total < self.min_letter_ratio:
            return False, "few_letters"
        doc = (rec.get("meta") or {}).get("format") in DOC_FORMATS
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        if doc:
            # Table rules ("-", "***") and code are not repeated text.
            lines = [ln for ln in lines if not _CODE_LINE.search(ln) and _WORDISH.search(ln)]
        if len(lines) >= 3:
            counts = Counter(lines)
            dup_lines = sum(c for c in counts.values() if c > 1)
            dup_chars = sum(len(ln) * c for ln, c in counts.items() if c > 1)
            if dup_lines / len(lines) > self.max_dup_line_frac:
                return False, "repeated_lines"
            if dup_chars / max(1, sum(len(ln) for ln in lines)) > self.max_dup_line_char_frac:
                return False, "repeated_lines"
        # In documents the n-gram rules read the prose: code repeats by nature (see above).
        prose = "\n".join(lines) if doc else text
        toks = units(prose[:20000])  # a long document's head is representative; caps the cost
        # A CJK character is about 2/3 of a word, and phrases like 的情况下 recur in normal
        # prose: use n-grams twice as long there (checked on real zh answers: ~5% flagged
        # with (4, 6, 8)/10 against ~15% with the word sizes).
        cjk = sum(1 for t in toks if len(t) == 1 and _CJK_UNIT.match(t))
        scale = 2 if cjk > len(toks) / 2 else 1
        for n in (2, 3, 4):
            if _top_ngram_frac(toks, n * scale) > self.max_top_ngram_frac:
                return False, "repeated_ngrams"
        if _dup_ngram_frac(toks, 5 * scale, 3 if doc else 2) > self.max_dup_ngram_frac:
            return False, "repeated_ngrams"
        return True


class QualitySpec(StepSpec):
    """Gopher-style quality rules, CJK-aware (symbol/digit ratio, repeated lines and n-grams)."""

    step: Literal["quality"] = "quality"
    min_chars_to_judge: int = Field(default=50, ge=0)  # shorter texts (SMS, titles) pass
    max_symbol_ratio: float = 0.25
    max_digit_ratio: float = 0.35
    max_dup_line_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_top_ngram_frac: float = 0.2
    max_dup_ngram_frac: float = 0.3
    min_letter_ratio: float = 0.5

    def build(self) -> Step:
        return QualityFilter(**self.model_dump(exclude={"step", "enabled"}))
