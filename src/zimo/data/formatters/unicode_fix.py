"""Repair mojibake and broken unicode with ftfy."""

from __future__ import annotations

from typing import Literal

from zimo.data.pipeline import Formatter, Step
from zimo.data.step_spec import StepSpec


class FixUnicode(Formatter):
    """ftfy's fixes, minus the ones that would damage Chinese text.

    ftfy by default straightens curly quotes and maps full-width characters to half-width;
    both are standard in Chinese (“引号”, ，。), so we turn those off and leave width to
    :class:`~zimo.data.formatters.normalize.Normalize`, which knows about CJK punctuation.
    """

    name = "fix_unicode"

    def __init__(self, unescape_html: bool = True) -> None:
        super().__init__()
        # Imported here: reading zimo.yaml imports every step module, and ftfy takes ~0.1 s.
        import ftfy

        self._fix_text = ftfy.fix_text
        self.config = ftfy.TextFixerConfig(
            unescape_html="auto" if unescape_html else False,
            uncurl_quotes=False,
            fix_character_width=False,
            explain=False,
        )

    def format(self, text: str) -> str:
        if text.isascii() and "&" not in text and "\x1b" not in text:
            return text  # fast path: nothing ftfy could fix
        return self._fix_text(text, config=self.config)


class FixUnicodeSpec(StepSpec):
    """Repair mojibake and broken unicode with ftfy (keeps CJK quotes and full-width punctuation)."""

    step: Literal["fix_unicode"] = "fix_unicode"
    unescape_html: bool = True

    def build(self) -> Step:
        return FixUnicode(unescape_html=self.unescape_html)
