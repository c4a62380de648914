"""Plain text and Markdown: one record per file, long files in paragraph-aligned chunks.

Text is read in bounded pieces, never a whole line at a time: a 300 MB file without a single
newline is read like any other. A record ends at a blank line once it holds ``CHUNK_CHARS``; if
no blank line comes by ``HARD_CHARS`` it ends at the last line break, else the last sentence
end, else the last space (and only for text with none of these, at ``HARD_CHARS`` exactly), so
every record fits the default length step (at most 200,000 characters) and no text is lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import new_record, quarantine

# Files longer than this become several records, split at blank lines.
CHUNK_CHARS = 100_000
# No record is longer than this (or than ``max_record_chars``): split within the text.
HARD_CHARS = 150_000
# A sentence ends at . ! ? (ASCII or full-width CJK) followed by space or a closing quote.
_SENTENCE_END = re.compile(r"(?:[.!?]['\")\]]*\s)|[。！？；…]['\"」』）]*")
_SPACE = re.compile(r"\s")


def _cut(text: str, hard: int) -> int:
    """Where to end a record taken from the start of ``text`` (len > hard): the best
    boundary in ``text[:hard]`` that keeps at least half of it."""
    window = text[:hard]
    floor = hard // 2
    for sep in ("\n\n", "\n"):
        i = window.rfind(sep, floor)
        if i >= 0:
            return i + len(sep)
    last = None
    for m in _SENTENCE_END.finditer(window, floor):
        last = m.end()
    if last is not None:
        return last
    for m in _SPACE.finditer(window, floor):
        last = m.end()
    return last if last is not None else hard


def read_text(
    f: IO[str], source: str, spec: ReadSpec, fmt: str = "txt"
) -> Iterator[dict[str, Any]]:
    """Stream the text in bounded pieces and group it into records (see the module doc)."""
    soft = min(spec.max_record_chars, CHUNK_CHARS)
    hard = max(soft, min(spec.max_record_chars, HARD_CHARS))
    parts: list[str] = []
    size = 0
    start = 0  # line number where the current record starts
    line_no = 0
    at_line_start = True
    emitted = False

    def record(text: str, offset: int) -> dict[str, Any] | None:
        text = text.strip("\n")
        if not text.strip():
            return None
        return new_record(text, source=source, offset=offset, spec=spec, fmt=fmt)

    while True:
        piece = f.readline(hard)  # at most ``hard`` characters, even without newlines
        if not piece:
            break
        ends = piece.endswith("\n")
        if at_line_start and ends and not piece.strip() and size >= soft:
            rec = record("".join(parts), start)  # a paragraph break after enough text
            if rec is not None:
                emitted = True
                yield rec
            parts, size, start = [], 0, line_no + 1
        else:
            if not parts:
                start = line_no
            parts.append(piece)
            size += len(piece)
            while size > hard:
                text = "".join(parts)
                cut = _cut(text, hard)
                rec = record(text[:cut], start)
                if rec is not None:
                    emitted = True
                    yield rec
                start = line_no
                rest = text[cut:]
                parts, size = ([rest], len(rest)) if rest else ([], 0)
        if ends:
            line_no += 1
        at_line_start = ends
    rec = record("".join(parts), start)
    if rec is not None:
        emitted = True
        yield rec
    if not emitted:
        yield quarantine(source, 0, "no_text", format=fmt)
