"""Spam and adult content: shipped word lists applied to lines and to whole documents.

The lists (``zimo/data/lexicons``, sources and licences in its README) are matched as one
regular expression per language: Chinese terms as substrings, English terms on word
boundaries. A *line* is spam when it carries two distinct terms, or one term and is short and
not a sentence (a keyword header, a link label); ``page_lines`` drops such lines. A *document*
is rejected when what remains of it still carries spam throughout (several distinct terms at a
density that ordinary text does not reach): a page behind a spam header keeps its article, a
spam page goes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import Field

from zimo.data.pipeline import DOC_FORMATS, Filter, Step
from zimo.data.step_spec import StepSpec

CATEGORIES = {
    "adult": ("adult_zh.txt", "adult_en.txt"),
    "gambling": ("gambling_zh.txt", "spam_en.txt"),
}
_SENT_END = tuple("。！？!?.…；;”\"'）)")


def _read(name: str) -> list[str]:
    text = resources.files("zimo.data.lexicons").joinpath(name).read_text(encoding="utf-8")
    return [w.strip().lower() for w in text.split("\n") if w.strip()]


@lru_cache(maxsize=1)
def lexicon() -> list[tuple[str, re.Pattern[str]]]:
    """``[(category, pattern)]``; loaded once per process."""
    out = []
    for cat, files in CATEGORIES.items():
        words = [w for f in files for w in _read(f)]
        cjk = sorted({w for w in words if re.search("[\u4e00-\u9fff]", w)}, key=len, reverse=True)
        latin = sorted(set(words) - set(cjk), key=len, reverse=True)
        parts = []
        if cjk:
            parts.append("|".join(map(re.escape, cjk)))
        if latin:
            # Word boundaries for Latin terms ("ass" must not hit "class"); a term glued to CJK
            # text (ag真人) still counts, hence the lookarounds instead of \b.
            parts.append(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, latin)) + r")(?![a-z0-9])")
        out.append((cat, re.compile("|".join(parts))))
    return out


def spam_hits(text: str) -> dict[str, list[str]]:
    """Matched terms per category (lowercased), in order of appearance."""
    low = text.lower()
    hits: dict[str, list[str]] = {}
    for cat, pat in lexicon():
        found = pat.findall(low)
        if found:
            hits[cat] = found
    return hits


def line_spam(line: str) -> str | None:
    """The spam category of one line, or None."""
    hits = spam_hits(line)
    if not hits:
        return None
    cat, terms = max(hits.items(), key=lambda kv: len(set(kv[1])))
    s = line.strip()
    found = [t for ts in hits.values() for t in ts]
    sentence = s.endswith(_SENT_END) or len(s) > 200
    # Keyword stuffing is dense; a news sentence about a crime may use two such words.
    dense = sum(len(t) for t in found) >= 0.15 * len(s)
    if len(set(found)) >= 2 and (dense or not sentence):
        return cat
    # One term: a keyword line or a link label, not a sentence that happens to use the word.
    if len(s) <= 40 and not sentence:
        return cat
    return None


def doc_spam(text: str, min_terms: int = 3, min_per_kchar: float = 2.0) -> str | None:
    """The spam category of a whole document, or None."""
    hits = spam_hits(text)
    if not hits:
        return None
    cat, terms = max(hits.items(), key=lambda kv: len(kv[1]))
    distinct = len(set(terms))
    per_kchar = 1000 * len(terms) / max(1, len(text))
    if distinct >= min_terms and per_kchar >= min_per_kchar:
        return cat
    return None


class SpamFilter(Filter):
    """Drop documents that are spam through and through; reasons ``spam:adult``,
    ``spam:gambling``. Only document formats are judged: SMS or label tables have their own
    spam labels, which this step must not erase."""

    name = "spam"

    def __init__(self, min_terms: int = 3, min_per_kchar: float = 2.0,
                 formats: list[str] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.min_terms = min_terms
        self.min_per_kchar = min_per_kchar
        self.formats = set(formats if formats is not None else DOC_FORMATS)

    def filter(self, rec: dict[str, Any]) -> bool | tuple[bool, str]:
        if rec.get("text") is None or (rec.get("meta") or {}).get("format") not in self.formats:
            return True
        cat = doc_spam(rec["text"], self.min_terms, self.min_per_kchar)
        if cat is None:
            return True
        self.stats.extra[cat] += 1
        return False, f"spam:{cat}"


class SpamSpec(StepSpec):
    """Reject documents full of adult or gambling spam terms (shipped word lists)."""

    step: Literal["spam"] = "spam"
    min_terms: int = Field(default=3, ge=1)  # distinct terms
    min_per_kchar: float = Field(default=2.0, ge=0)  # term hits per 1,000 characters
    formats: list[str] = Field(default_factory=lambda: list(DOC_FORMATS))

    def build(self) -> Step:
        return SpamFilter(self.min_terms, self.min_per_kchar, self.formats)
