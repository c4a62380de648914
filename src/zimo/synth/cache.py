"""Disk cache of teacher calls, keyed by the exact request.

SQLite in WAL mode, one row per finished call, committed as soon as the answer arrives: a
rerun costs nothing, and a run killed halfway keeps every call that finished. Only successful
answers are stored (errors are retried next time).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def request_key(body: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the request body (model, messages, parameters).

    The base URL is left out on purpose: the same model behind a new port or proxy gives the
    same answers, and a test server on a fresh port must still hit the cache.
    """
    canon = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


class TeacherCache:
    """``get(key)`` / ``put(key, ...)`` over an SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # autocommit (isolation_level=None): each put is its own durable transaction.
        self._db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS calls (
                key TEXT PRIMARY KEY,
                model TEXT NOT NULL,
                template TEXT,
                request TEXT NOT NULL,
                response TEXT NOT NULL,
                prompt_tokens INTEGER,
                completion_tokens INTEGER,
                cost REAL,
                created REAL NOT NULL
            )"""
        )

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(
        self,
        key: str,
        *,
        model: str,
        template: str | None,
        request: dict[str, Any],
        response: dict[str, Any],
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    template,
                    json.dumps(request, ensure_ascii=False),
                    json.dumps(response, ensure_ascii=False),
                    response.get("prompt_tokens"),
                    response.get("completion_tokens"),
                    response.get("cost"),
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
