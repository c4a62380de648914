"""PDF: the text layer via pypdf (scanned PDFs without one are quarantined, not OCR'd)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import new_record, quarantine


def read_pdf(data: bytes, source: str, spec: ReadSpec) -> Iterator[dict[str, Any]]:
    """One record per document (or per group of pages when the text is very long)."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # warnings on every slightly-off file
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            yield quarantine(source, 0, "encrypted_pdf", format="pdf")
            return
        pages = []
        for page in reader.pages:
            pages.append((page.extract_text() or "").strip())
    except Exception as e:  # noqa: BLE001 - pypdf raises many types for broken files
        yield quarantine(source, 0, "corrupt_pdf", f"{type(e).__name__}: {e}", format="pdf")
        return
    if not any(pages):
        yield quarantine(source, 0, "no_text_layer", format="pdf", pages=len(pages))
        return
    group: list[str] = []
    first = 0
    size = 0
    for i, page in enumerate(pages):
        if group and size + len(page) > spec.max_record_chars:
            yield new_record(
                "\n\n".join(group),
                source=source,
                offset=first,
                spec=spec,
                fmt="pdf",
                extra={"pages": len(group)},
            )
            group, size, first = [], 0, i
        group.append(page[: spec.max_record_chars])
        size += len(page)
    yield new_record(
        "\n\n".join(group),
        source=source,
        offset=first,
        spec=spec,
        fmt="pdf",
        extra={"pages": len(group)},
    )
