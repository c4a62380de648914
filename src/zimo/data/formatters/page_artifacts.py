"""Chinese page artefacts: pinyin / ruby annotations after characters, leftover ruby markup.

Some sites (and pages saved from reading aids) print the pinyin of words in brackets after the
characters: ``產(chǎn)業(yè)``, ``中国(zhōng guó)``. Kept, it doubles the text and teaches a model
to write it. Removed when the bracket holds pinyin syllables with tone marks or tone digits;
a toneless bracket (``(China)``, ``(AI)``) is kept unless the page already showed toned
annotations, so English glosses in ordinary text are left alone. Zero-width characters and
full/half-width mixes are ``normalize``'s job, mojibake ``fix_unicode``'s, traditional →
simplified ``chinese_convert``'s. No library on PyPI strips inline pinyin, hence this rule.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from zimo.data.pipeline import DOC_FORMATS, Formatter, Step
from zimo.data.step_spec import StepSpec

_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ"
_SYL = rf"[a-zü{_TONED}]{{1,6}}[1-5]?"
_HAN = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
# A bracket of 1–8 pinyin syllables right after a Han character.
_ANNOT = re.compile(rf"(?<={_HAN})\s?[(（]\s*({_SYL}(?:[\s'’·-]+{_SYL}){{0,7}})\s*[)）]", re.I)
_HAS_TONE = re.compile(rf"[{_TONED}]|[a-z][1-5]\b", re.I)
# <rt>…</rt> / <rp>…</rp> left in text exported from HTML.
_RUBY_TAGS = re.compile(r"<rp>[^<]{0,4}</rp>|<rt>[^<]{0,20}</rt>|</?ruby>", re.I)


def strip_pinyin(text: str) -> tuple[str, int]:
    """Text without pinyin annotations, and how many were removed."""
    if "(" not in text and "（" not in text and "<r" not in text:
        return text, 0
    text, n_ruby = _RUBY_TAGS.subn("", text)
    toned = sum(1 for m in _ANNOT.finditer(text) if _HAS_TONE.search(m.group(1)))
    # Toneless syllables only count on a page that annotates with tones at least 3 times.
    annotating = toned >= 3
    removed = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal removed
        inner = m.group(1)
        if _HAS_TONE.search(inner) or (annotating and inner.islower()):
            removed += 1
            return ""
        return m.group(0)

    return _ANNOT.sub(sub, text), removed + n_ruby


class PageArtifacts(Formatter):
    """Remove pinyin / ruby annotations from document records (counted as ``pinyin``)."""

    name = "page_artifacts"

    def __init__(self, formats: list[str] | None = None) -> None:
        super().__init__()
        self.formats = set(formats) if formats is not None else {"html", "txt", "md", "pdf"}

    def format(self, text: str) -> str:
        new, n = strip_pinyin(text)
        if n:
            self.stats.extra["pinyin"] += n
        return new

    def apply(self, rec: dict[str, Any]) -> bool:
        if rec.get("text") is None or (rec.get("meta") or {}).get("format") not in self.formats:
            return False
        return super().apply(rec)


class PageArtifactsSpec(StepSpec):
    """Remove pinyin / ruby annotations after Chinese characters (``產(chǎn)業(yè)`` → ``產業``)."""

    step: Literal["page_artifacts"] = "page_artifacts"
    formats: list[str] = Field(default_factory=lambda: list(DOC_FORMATS))

    def build(self) -> Step:
        return PageArtifacts(formats=self.formats)
