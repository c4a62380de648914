"""The record every stage passes along, and its provenance fields.

A record is a plain dict so it round-trips through Parquet, JSONL and Ray unchanged::

    {"id": str, "text": str | None, "messages": list[{"role","content"}] | None,
     "label": str | None,
     "meta": {"source": str, "offset": int | None, "origin": "human|teacher|synthetic|log",
              "generator": str | None, "license": str | None, "created_at": str}}

``origin`` is set at ingest and travels with the record forever (the pollution guard relies
on it). Rejected records keep all their fields plus ``reject_step`` and ``reject_reason``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

ORIGINS = ("human", "teacher", "synthetic", "log")
SYNTHETIC_ORIGINS = ("teacher", "synthetic", "log")


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def record_id(source: str, offset: int | str, text: str = "") -> str:
    """Stable id from where a record came from (and its text, so edits change it)."""
    h = hashlib.sha1(f"{source}\0{offset}\0{text}".encode()).hexdigest()
    return h[:16]


def make_record(
    text: str | None,
    *,
    source: str,
    offset: int | None,
    label: str | None = None,
    messages: list[dict[str, str]] | None = None,
    origin: str = "human",
    generator: str | None = None,
    license: str | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
    meta: dict[str, Any] = {
        "source": source,
        "offset": offset,
        "origin": origin,
        "generator": generator,
        "license": license,
        "created_at": now_iso(),
    }
    if extra_meta:
        meta.update(extra_meta)
    key = text if text is not None else repr(messages)
    return {
        "id": record_id(source, offset if offset is not None else "", key or ""),
        "text": text,
        "messages": messages,
        "label": label,
        "meta": meta,
    }
