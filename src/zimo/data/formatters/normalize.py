"""Unicode width (NFKC) and whitespace normalisation, CJK-aware."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from zimo.data.pipeline import Formatter, Step
from zimo.data.step_spec import StepSpec

# Full-width ASCII punctuation (，！？：；（） …) is standard in Chinese; NFKC would make it ASCII.
_FW_PUNCT = re.compile("[\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff64]")
_CJK = re.compile("[\u3001-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Zero-width characters and BOMs carry no text.
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
# Every horizontal space (incl. NBSP, ideographic space U+3000, en/em spaces) becomes one space.
_HSPACE = re.compile("[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_CJK_SPACE_CJK = re.compile(
    "(?<=[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]) (?=[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])"
)


def nfkc_keep_cjk_punct(text: str) -> str:
    """NFKC everywhere except full-width punctuation in text that contains CJK characters."""
    if not _CJK.search(text):
        return unicodedata.normalize("NFKC", text)
    parts, last = [], 0
    for m in _FW_PUNCT.finditer(text):
        parts.append(unicodedata.normalize("NFKC", text[last : m.start()]))
        parts.append(m.group())
        last = m.end()
    parts.append(unicodedata.normalize("NFKC", text[last:]))
    return "".join(parts)


def normalize_whitespace(text: str, join_cjk_spaces: bool = False) -> str:
    """Unify line breaks and spaces, strip lines, keep at most one blank line between blocks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = text.replace("\u2029", "\n\n").replace("\x0b", "\n").replace("\x0c", "\n")
    text = _ZERO_WIDTH.sub("", text)
    text = _HSPACE.sub(" ", text)
    if join_cjk_spaces:
        text = _CJK_SPACE_CJK.sub("", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


class Normalize(Formatter):
    """Full-width letters/digits to half-width (NFKC) and clean whitespace."""

    name = "normalize"

    def __init__(
        self,
        nfkc: bool = True,
        keep_cjk_punct: bool = True,
        whitespace: bool = True,
        join_cjk_spaces: bool = False,
    ) -> None:
        super().__init__()
        self.nfkc = nfkc
        self.keep_cjk_punct = keep_cjk_punct
        self.whitespace = whitespace
        self.join_cjk_spaces = join_cjk_spaces

    def format(self, text: str) -> str:
        if self.nfkc and not text.isascii():
            text = (
                nfkc_keep_cjk_punct(text)
                if self.keep_cjk_punct
                else unicodedata.normalize("NFKC", text)
            )
        if self.whitespace:
            text = normalize_whitespace(text, self.join_cjk_spaces)
        return text


class NormalizeSpec(StepSpec):
    """NFKC (full-width letters/digits to half-width) and whitespace normalisation."""

    step: Literal["normalize"] = "normalize"
    nfkc: bool = True
    # Chinese text uses full-width punctuation (，。！？); NFKC would turn it into ASCII.
    keep_cjk_punct: bool = True
    whitespace: bool = True
    # Remove single spaces between two CJK characters (PDF text layers often insert them).
    join_cjk_spaces: bool = False

    def build(self) -> Step:
        return Normalize(
            nfkc=self.nfkc,
            keep_cjk_punct=self.keep_cjk_punct,
            whitespace=self.whitespace,
            join_cjk_spaces=self.join_cjk_spaces,
        )
