"""Record lists to and from Parquet, atomically.

Parquet (pyarrow) is the artifact format: columnar, typed, readable by pandas, DuckDB, Spark
and Ray Data. ``meta`` is a struct column, so provenance stays queryable (``meta.origin``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from zimo.fileio import atomic_path


def _table(records: list[dict[str, Any]]) -> pa.Table:
    if not records:
        return pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types inside nested fields (say an offset that is a number here, a string
        # there): keep every field, serialising the nested columns as JSON text.
        flat = [
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                for k, v in r.items()
            }
            for r in records
        ]
        return pa.Table.from_pylist(flat)


def write_records(path: Path, records: list[dict[str, Any]]) -> int:
    """Write records to ``path`` (temp file + rename). Returns the row count."""
    with atomic_path(Path(path)) as tmp:
        pq.write_table(_table(records), tmp)
    return len(records)


def read_records(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        for key in ("meta", "messages"):
            v = r.get(key)
            if isinstance(v, str) and v[:1] in "{[":
                try:
                    r[key] = json.loads(v)
                except json.JSONDecodeError:
                    pass
    return rows
