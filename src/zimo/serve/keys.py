"""API keys for ``zimo serve``: stored hashed in SQLite, with per-key model allow-lists and rates.

A key looks like ``zk-<id>-<secret>``: the 8-hex-digit ``id`` is public (it goes into logs and
metrics), the 32-byte ``secret`` is shown once at creation and never stored. The database keeps
``sha256(salt || secret)``; a fast hash is enough because the secret is 256 random bits (slow
hashes such as scrypt protect low-entropy passwords, and would add tens of ms per request).
Each request reads the key row again, so ``zimo keys revoke`` in another process takes effect
at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zimo.records import now_iso

PREFIX = "zk"

_SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    models TEXT,
    rate_per_minute INTEGER,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
)"""


@dataclass(frozen=True)
class ApiKey:
    """A key's public record (never the secret)."""

    id: str
    name: str
    models: list[str] | None  # None = every model
    rate_per_minute: int | None
    admin: bool
    created_at: str
    revoked_at: str | None
    last_used_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "models": self.models,
            "rate_per_minute": self.rate_per_minute,
            "admin": self.admin,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def split_key(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else None."""
    parts = token.strip().split("-", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 8 or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyStore:
    """The key database (thread-safe; one connection per store)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.execute(_SCHEMA)
        try:  # the secret hashes are nobody else's business
            self.path.chmod(0o600)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        rate_per_minute: int | None = None,
        admin: bool = False,
    ) -> tuple[str, ApiKey]:
        """Create a key; returns ``(full key, record)`` — the full key is shown only now."""
        if not name.strip():
            raise ValueError("a key needs a name")
        if rate_per_minute is not None and rate_per_minute < 1:
            raise ValueError("rate_per_minute must be >= 1")
        with self._lock, self._db:
            while True:
                kid = secrets.token_hex(4)
                if not self._db.execute("SELECT 1 FROM api_keys WHERE id=?", (kid,)).fetchone():
                    break
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_bytes(16)
            created = now_iso()
            self._db.execute(
                "INSERT INTO api_keys (id, name, salt, hash, models, rate_per_minute, admin,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kid,
                    name.strip(),
                    salt,
                    _digest(salt, secret),
                    json.dumps(models) if models is not None else None,
                    rate_per_minute,
                    int(admin),
                    created,
                ),
            )
        rec = ApiKey(kid, name.strip(), models, rate_per_minute, admin, created, None)
        return f"{PREFIX}-{kid}-{secret}", rec

    def _rec(self, row: tuple) -> ApiKey:
        kid, name, models, rate, admin, created, revoked, used = row
        return ApiKey(
            kid,
            name,
            json.loads(models) if models else None,
            rate,
            bool(admin),
            created,
            revoked,
            used,
        )

    _COLS = "id, name, models, rate_per_minute, admin, created_at, revoked_at, last_used_at"

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        sql = f"SELECT {self._COLS} FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id").fetchall()
        return [self._rec(r) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLS} FROM api_keys WHERE id=?", (key_id,)
            ).fetchone()
        return self._rec(row) if row else None

    def count_active(self) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL"
            ).fetchone()[0]

    def revoke(self, key_id: str) -> bool:
        """Revoke by id (or by full key); False when no active key matched."""
        parts = split_key(key_id)
        kid = parts[0] if parts else key_id
        with self._lock, self._db:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL",
                (now_iso(), kid),
            )
        return cur.rowcount > 0

    def verify(self, token: str) -> tuple[ApiKey | None, str]:
        """``(key, '')`` for a valid active key, else ``(None, reason)``."""
        parts = split_key(token)
        if parts is None:
            return None, "malformed"
        kid, secret = parts
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLS}, salt, hash FROM api_keys WHERE id=?", (kid,)
            ).fetchone()
        if row is None:
            return None, "unknown"
        rec, salt, digest = self._rec(row[:8]), row[8], row[9]
        if not hmac.compare_digest(_digest(salt, secret), digest):
            return None, "wrong"
        if not rec.active:
            return None, "revoked"
        return rec, ""

    def touch(self, key_id: str) -> None:
        """Record last use (best effort; a busy database must not fail a request)."""
        try:
            with self._lock, self._db:
                self._db.execute(
                    "UPDATE api_keys SET last_used_at=? WHERE id=?", (now_iso(), key_id)
                )
        except sqlite3.Error:
            pass
