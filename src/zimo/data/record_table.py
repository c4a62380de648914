"""Records ⇄ Arrow with one fixed schema, so shard files of a curate run concatenate.

``meta`` is a struct with the provenance fields every record has (queryable as
``meta.origin``), plus ``extra``: a JSON string with whatever else a reader or step added
(title, url, pii counts, encoding …). :func:`table_records` folds ``extra`` back into ``meta``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

META_FIELDS: list[tuple[str, pa.DataType]] = [
    ("source", pa.string()),
    ("offset", pa.int64()),
    ("origin", pa.string()),
    ("generator", pa.string()),
    ("license", pa.string()),
    ("created_at", pa.string()),
    ("format", pa.string()),
    ("lang", pa.string()),
    ("duplicate_of", pa.string()),
    ("extra", pa.string()),
]
_META_KEYS = {name for name, _ in META_FIELDS if name != "extra"}
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("messages", pa.list_(MESSAGE)),
        ("label", pa.string()),
        ("meta", pa.struct(META_FIELDS)),
    ]
)
REJECT_SCHEMA = SCHEMA.append(pa.field("reject_step", pa.string())).append(
    pa.field("reject_reason", pa.string())
)


def _meta_row(meta: dict[str, Any] | None) -> dict[str, Any]:
    meta = meta or {}
    row = {k: meta.get(k) for k in _META_KEYS}
    if row["offset"] is not None and not isinstance(row["offset"], int):
        row["offset"] = None
    for k in ("source", "origin", "generator", "license", "created_at", "format", "lang"):
        if row[k] is not None:
            row[k] = str(row[k])
    extra = {k: v for k, v in meta.items() if k not in _META_KEYS}
    row["extra"] = json.dumps(extra, ensure_ascii=False, default=str) if extra else None
    return row


def records_table(records: list[dict[str, Any]], rejects: bool = False) -> pa.Table:
    """Arrow table with :data:`SCHEMA` (or :data:`REJECT_SCHEMA`)."""
    schema = REJECT_SCHEMA if rejects else SCHEMA
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    for r in records:
        cols["id"].append(str(r.get("id")))
        cols["text"].append(r.get("text"))
        msgs = r.get("messages")
        cols["messages"].append(
            [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in msgs]
            if msgs
            else None
        )
        label = r.get("label")
        cols["label"].append(None if label is None else str(label))
        cols["meta"].append(_meta_row(r.get("meta")))
        if rejects:
            cols["reject_step"].append(r.get("reject_step"))
            cols["reject_reason"].append(r.get("reject_reason"))
    return pa.Table.from_pydict(cols, schema=schema)


def table_records(table: pa.Table) -> list[dict[str, Any]]:
    """Records back from a table written by :func:`records_table` (``extra`` unfolded)."""
    rows = table.to_pylist()
    for r in rows:
        meta = r.get("meta") or {}
        extra = meta.pop("extra", None)
        if extra:
            meta.update(json.loads(extra))
        r["meta"] = {k: v for k, v in meta.items() if v is not None or k in ("offset", "license")}
    return rows


def write_table(path: Path, records: list[dict[str, Any]], rejects: bool = False) -> None:
    """Write one Parquet file (callers make it atomic by writing into a temporary folder)."""
    pq.write_table(records_table(records, rejects), path)


def read_table_records(path: Path) -> list[dict[str, Any]]:
    return table_records(pq.read_table(path))
