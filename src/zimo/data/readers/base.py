"""Shared pieces of the readers: quarantine records, binary sniffing, encoding detection.

A reader yields records; input it cannot use becomes a *quarantine* record (same schema, with
``reject_step="read"`` and a ``reject_reason``) so one bad file never fails a run and every
skip is counted in the report.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.records import make_record

SNIFF_BYTES = 64 * 1024

# Magic numbers of common binary formats (so a .txt that is really a PNG is caught early).
_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"\x7fELF",
    b"MZ",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"%PDF",
    b"BZh",
    b"\xfd7zXZ",
    b"7z\xbc\xaf",
    b"Rar!",
    b"\x00\x00\x01\x00",
    b"OggS",
    b"ID3",
    b"PAR1",
    b"SQLite format 3",
)


def quarantine(
    source: str, offset: int | None, reason: str, preview: str = "", **meta: Any
) -> dict[str, Any]:
    """A record that stands for unusable input: kept in the rejects with a reason."""
    rec = make_record(preview[:300], source=source, offset=offset, extra_meta=meta or None)
    rec["reject_step"] = "read"
    rec["reject_reason"] = reason
    return rec


def is_quarantined(rec: dict[str, Any]) -> bool:
    return "reject_step" in rec


def looks_binary(sample: bytes) -> bool:
    """NUL bytes (outside UTF-16 text) or a known binary magic number."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    if sample.startswith(_MAGIC):
        return True
    if b"\x00" in sample:
        return True
    # Many C0 control bytes (other than tab/newline/formfeed/escape) = not text.
    ctrl = sum(1 for b in sample[:4096] if b < 32 and b not in (9, 10, 12, 13, 27))
    return ctrl > max(8, len(sample[:4096]) // 50)


def _utf8_bad_share(sample: bytes) -> float:
    # Decode incrementally so a multi-byte character cut at the sample's end is not an error.
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = dec.decode(sample, final=False)
    return text.count("\ufffd") / max(1, len(text))


def detect_encoding(sample: bytes) -> tuple[str | None, str]:
    """Guess the encoding of ``sample``; returns ``(encoding, why)``, encoding None = give up.

    UTF-8 (with or without BOM) first; UTF-8 with a few stray bad bytes is still UTF-8 (bad
    bytes become U+FFFD); otherwise charset-normalizer decides — GBK/GB2312 are widened to
    GB18030, their superset, since Chinese Windows exports often mix them.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "bom"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "bom"
    bad = _utf8_bad_share(sample)
    if bad == 0:
        return "utf-8", "valid"
    from charset_normalizer import from_bytes

    best = from_bytes(sample[:SNIFF_BYTES]).best()
    if best is not None and best.encoding and best.chaos < 0.25:
        enc = best.encoding.lower().replace("_", "-")
        if enc in ("gb2312", "gbk", "cp936", "hz"):
            enc = "gb18030"
        return enc, f"detected (chaos {best.chaos:.2f})"
    if bad < 0.01:
        return "utf-8", "utf-8 with a few invalid bytes"
    return None, "undecodable"


def open_text(raw: IO[bytes], sample: bytes, encoding: str) -> IO[str]:
    """A text stream over ``raw`` (bad bytes become U+FFFD rather than stopping the read)."""
    buffered = raw if isinstance(raw, io.BufferedIOBase) else io.BufferedReader(raw)  # type: ignore[arg-type]
    return io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline=None)


def bounded_lines(f: IO[str], max_chars: int) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line_no, line)``; a line longer than ``max_chars`` is skipped in bounded memory
    and yielded as ``(line_no, None)`` so the caller can quarantine it."""
    line_no = 0
    while True:
        line = f.readline(max_chars + 1)
        if not line:
            return
        if len(line) > max_chars and not line.endswith("\n"):
            # Skip the rest of this line in chunks: never hold it whole.
            while True:
                rest = f.readline(1 << 20)
                if not rest or rest.endswith("\n"):
                    break
            yield line_no, None
        else:
            yield line_no, line.rstrip("\n")
        line_no += 1


def new_record(
    text: str | None,
    *,
    source: str,
    offset: int | None,
    spec: ReadSpec,
    fmt: str,
    label: Any = None,
    messages: list[dict[str, str]] | None = None,
    origin: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """make_record with the reader's defaults (origin, license) and ``meta.format``."""
    meta = {"format": fmt}
    if extra:
        meta.update(extra)
    return make_record(
        text,
        source=source,
        offset=offset,
        label=None if label is None else str(label),
        messages=messages,
        origin=origin or spec.origin,
        license=spec.license,
        extra_meta=meta,
    )
