"""Plain text and Markdown: one record per file, long files in paragraph-aligned chunks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import bounded_lines, new_record, quarantine

# Files longer than this become several records, split at blank lines.
CHUNK_CHARS = 100_000


def read_text(
    f: IO[str], source: str, spec: ReadSpec, fmt: str = "txt"
) -> Iterator[dict[str, Any]]:
    """Stream lines (bounded memory), group them into documents of up to ``CHUNK_CHARS``."""
    limit = min(spec.max_record_chars, CHUNK_CHARS)
    buf: list[str] = []
    size = 0
    start = 0
    emitted = False

    def flush() -> dict[str, Any] | None:
        text = "\n".join(buf).strip("\n")
        return (
            new_record(text, source=source, offset=start, spec=spec, fmt=fmt)
            if text.strip()
            else None
        )

    for line_no, line in bounded_lines(f, spec.max_record_chars):
        if line is None:
            yield quarantine(source, line_no, "line_too_long", format=fmt)
            continue
        blank = not line.strip()
        if buf and (size + len(line) > spec.max_record_chars or (blank and size >= limit)):
            rec = flush()
            if rec is not None:
                emitted = True
                yield rec
            buf, size, start = [], 0, line_no + (1 if blank else 0)
            if blank:
                continue
        if not buf:
            start = line_no
        buf.append(line)
        size += len(line) + 1
    rec = flush()
    if rec is not None:
        emitted = True
        yield rec
    if not emitted:
        yield quarantine(source, 0, "no_text", format=fmt)
