"""API keys for ``zimo serve``: stored hashed in SQLite, with per-key model allow-lists and rates.

A key looks like ``zk-<id>-<secret>``: the 8-hex-digit ``id`` is public (it goes into logs and
metrics), the 32-byte ``secret`` is shown once at creation and never stored. The database keeps
``sha256(salt || secret)``; a fast hash is enough because the secret is 256 random bits (slow
hashes such as scrypt protect low-entropy passwords, and would add tens of ms per request).
Each request reads the key row again, so ``zimo keys revoke`` in another process takes effect
at once.

A key may carry a budget for the big tier (``big_budget_usd`` per ``budget_period``: a UTC day,
a calendar month, or in total). Its spend is kept in the same file (``key_spend``, one row per
key and period) and changed only by single SQL statements, so several gateway processes sharing
the file never overspend together: a call first reserves its estimated cost, which succeeds only
if it fits what is left, and settles to the actual cost when the answer comes back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
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

# Columns added after the first release: ALTER TABLE adds them to older key files, whose rows
# read as NULL (no budget).
_ADDED_COLUMNS = {"big_budget_usd": "REAL", "budget_period": "TEXT"}

_SPEND_SCHEMA = """CREATE TABLE IF NOT EXISTS key_spend (
    key_id TEXT NOT NULL,
    period TEXT NOT NULL,
    spent_usd REAL NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period)
)"""

BUDGET_PERIODS = ("day", "month", "total")


def period_id(period: str, now: float) -> str:
    """The accounting bucket of ``now`` (UTC): ``2026-12-07``, ``2026-12`` or ``total``."""
    if period == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(now))
    if period == "month":
        return time.strftime("%Y-%m", time.gmtime(now))
    if period == "total":
        return "total"
    raise ValueError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}, not {period!r}")


@dataclass(frozen=True)
class Hold:
    """Spend reserved for one upstream call, settled when the call ends."""

    key_id: str
    period: str
    usd: float


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
    big_budget_usd: float | None = None  # None = no cap on big-tier spend
    budget_period: str | None = None  # day | month | total (set with the budget)

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
            "big_budget_usd": self.big_budget_usd,
            "budget_period": self.budget_period,
        }


# The key of the request being answered. It travels with the request's task, so a virtual
# model that calls another (auto → cascade) reaches the caller's budget without every handler
# passing it along.
request_key: ContextVar[ApiKey | None] = ContextVar("zimo_request_key", default=None)


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

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock  # seconds since the epoch; tests move it to roll a period over
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.execute(_SCHEMA)
            self._db.execute(_SPEND_SCHEMA)
        self._migrate()
        try:  # the secret hashes are nobody else's business
            self.path.chmod(0o600)
        except OSError:
            pass

    def _migrate(self) -> None:
        # BEGIN IMMEDIATE: two servers opening an old file at once must not both add a column.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                have = {r[1] for r in self._db.execute("PRAGMA table_info(api_keys)")}
                for col, kind in _ADDED_COLUMNS.items():
                    if col not in have:
                        self._db.execute(f"ALTER TABLE api_keys ADD COLUMN {col} {kind}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

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
        big_budget_usd: float | None = None,
        budget_period: str | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key; returns ``(full key, record)`` — the full key is shown only now."""
        if not name.strip():
            raise ValueError("a key needs a name")
        if rate_per_minute is not None and rate_per_minute < 1:
            raise ValueError("rate_per_minute must be >= 1")
        budget_period = check_budget(big_budget_usd, budget_period)
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
                " created_at, big_budget_usd, budget_period) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kid,
                    name.strip(),
                    salt,
                    _digest(salt, secret),
                    json.dumps(models) if models is not None else None,
                    rate_per_minute,
                    int(admin),
                    created,
                    big_budget_usd,
                    budget_period,
                ),
            )
        rec = ApiKey(kid, name.strip(), models, rate_per_minute, admin, created, None, None,
                     big_budget_usd, budget_period)  # fmt: skip
        return f"{PREFIX}-{kid}-{secret}", rec

    def _rec(self, row: tuple) -> ApiKey:
        kid, name, models, rate, admin, created, revoked, used, budget, period = row
        return ApiKey(
            kid,
            name,
            json.loads(models) if models else None,
            rate,
            bool(admin),
            created,
            revoked,
            used,
            budget,
            (period or "month") if budget is not None else None,
        )

    _COLS = (
        "id, name, models, rate_per_minute, admin, created_at, revoked_at, last_used_at, "
        "big_budget_usd, budget_period"
    )

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
        rec, salt, digest = self._rec(row[:10]), row[10], row[11]
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

    # ------------------------------------------------------------------ big-tier budgets
    def reserve(self, key_id: str, budget_usd: float, period: str, usd: float) -> Hold | None:
        """Reserve ``usd`` of ``key_id``'s budget in the current period, or None when that
        would pass ``budget_usd``. One UPDATE decides, so concurrent reservations (threads or
        processes) cannot together pass the budget."""
        hold = Hold(key_id, period_id(period, self.clock()), float(usd))
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO key_spend (key_id, period) VALUES (?, ?)",
                (hold.key_id, hold.period),
            )
            cur = self._db.execute(
                "UPDATE key_spend SET spent_usd = spent_usd + ?, calls = calls + 1"
                " WHERE key_id=? AND period=? AND spent_usd + ? <= ?",
                (hold.usd, hold.key_id, hold.period, hold.usd, budget_usd),
            )
        return hold if cur.rowcount == 1 else None

    def settle(self, hold: Hold, usd: float | None) -> None:
        """Replace a reservation by what the call cost (``None``: it failed, nothing spent).
        It lands in the period it was reserved in, even if that has rolled over since."""
        delta = (usd if usd is not None else 0.0) - hold.usd
        with self._lock, self._db:
            self._db.execute(
                "UPDATE key_spend SET spent_usd = MAX(0, spent_usd + ?), calls = calls - ?"
                " WHERE key_id=? AND period=?",
                (delta, int(usd is None), hold.key_id, hold.period),
            )

    def spent(self, key_id: str, period: str) -> tuple[float, int]:
        """``(USD, calls)`` spent by ``key_id`` in the current ``period``."""
        with self._lock:
            row = self._db.execute(
                "SELECT spent_usd, calls FROM key_spend WHERE key_id=? AND period=?",
                (key_id, period_id(period, self.clock())),
            ).fetchone()
        return (float(row[0]), int(row[1])) if row else (0.0, 0)


def check_budget(budget_usd: float | None, period: str | None) -> str | None:
    """The period to store with a budget (default: month); a bad pair is a ValueError."""
    if budget_usd is None:
        if period is not None:
            raise ValueError("a budget period needs a budget: set big_budget_usd too")
        return None
    if not isinstance(budget_usd, int | float) or not math.isfinite(budget_usd) or budget_usd < 0:
        raise ValueError(f"big_budget_usd must be a number of USD >= 0, not {budget_usd!r}")
    period = period or "month"
    period_id(period, 0.0)  # raises for an unknown period
    return period


def key_row(store: KeyStore, key: ApiKey) -> dict[str, Any]:
    """A key's public record with its big-tier spend in the current period (for listings)."""
    row = key.public()
    if key.big_budget_usd is not None:
        row["big_spent_usd"], row["big_calls"] = store.spent(key.id, key.budget_period or "month")
    return row
