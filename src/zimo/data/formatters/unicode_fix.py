"""Repair mojibake and broken unicode with ftfy."""

from __future__ import annotations

import ftfy

from zimo.data.pipeline import Formatter


class FixUnicode(Formatter):
    """ftfy's fixes, minus the ones that would damage Chinese text.

    ftfy by default straightens curly quotes and maps full-width characters to half-width;
    both are standard in Chinese (“引号”, ，。), so we turn those off and leave width to
    :class:`~zimo.data.formatters.normalize.Normalize`, which knows about CJK punctuation.
    """

    name = "fix_unicode"

    def __init__(self, unescape_html: bool = True) -> None:
        super().__init__()
        self.config = ftfy.TextFixerConfig(
            unescape_html="auto" if unescape_html else False,
            uncurl_quotes=False,
            fix_character_width=False,
            explain=False,
        )

    def format(self, text: str) -> str:
        if text.isascii() and "&" not in text and "\x1b" not in text:
            return text  # fast path: nothing ftfy could fix
        return ftfy.fix_text(text, config=self.config)
