"""Files written so a reader never sees half of one, and JSON Lines read one way everywhere.

Every writer goes through a temporary file in the same folder, fsynced, then ``os.replace``:
an interrupted run leaves the old file or the new one, never a torn one. :func:`atomic_path`
is the same for libraries that insist on writing to a path themselves (joblib, pyarrow).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed over it when the block exits cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via temp file + rename (fsynced) so readers never see a partial file."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    """JSON (indented, UTF-8, unknown types as strings) written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def write_jsonl_atomic(path: Path, rows: Any) -> None:
    """One JSON object per line, written atomically."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json_optional(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or ``{}`` when the file is missing, unreadable or not an
    object: for optional side files (``label_task.json``, ``zimo_model.json`` ...)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def iter_jsonl(path: Path, *, strict: bool = False) -> Iterator[tuple[int, Any]]:
    """``(line_number, object)`` for each non-blank line of a JSON Lines file (1-based).

    A line that is not JSON is skipped, or raises ``ValueError`` naming the line when
    ``strict`` — the caller decides whether one bad line is a quarantine or an error. A torn
    last line (a writer killed mid-append) is the usual case of a bad line.
    """
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                if strict:
                    raise ValueError(f"{path}:{i}: not JSON ({e.msg})") from None
                continue
            yield i, obj


def read_jsonl(path: Path) -> list[Any]:
    """Every JSON line of ``path`` (bad lines skipped); ``[]`` when the file is missing."""
    path = Path(path)
    return [obj for _, obj in iter_jsonl(path)] if path.is_file() else []
