"""The flywheel's teacher rows: the big tier's logged answers, kept as training rows.

``zimo flywheel`` appends to ``.zimo/flywheel/rows.jsonl`` (:mod:`zimo.flywheel`); the split
stage adds them to the train split and the cascade's calibration reads them, both through
:func:`read_rows`, so the file has one reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zimo.fileio import iter_jsonl, read_jsonl
from zimo.records import make_record
from zimo.workspace import Layout


def raw_rows(root: Path) -> list[dict[str, Any]]:
    """The rows as written: ``{text, label, teacher, request_id, time}``."""
    return read_jsonl(Layout(root).flywheel_rows)


def read_rows(root: Path) -> list[dict[str, Any]]:
    """The flywheel's training rows as records (empty when it never ran)."""
    path = Layout(root).flywheel_rows
    if not path.is_file():
        return []
    out = []
    for i, row in iter_jsonl(path):
        rec = make_record(row["text"], source="flywheel", offset=i - 1, label=row["label"],
                          origin="teacher", generator=row.get("teacher"),
                          extra_meta={"request_id": row.get("request_id")})  # fmt: skip
        rec["meta"]["created_at"] = row.get("time")  # stable ids and hashes across reads
        out.append(rec)
    return out
