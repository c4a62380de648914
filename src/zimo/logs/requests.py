"""The gateway request log: SQLite (WAL), schema evolved by numbered migrations.

``zimo serve`` writes one row per request with :func:`log_request` (or :class:`RequestLog`);
``zimo synth`` (mode ``distill``) reads it back with :func:`query` / :func:`iter_requests`.

Migrations follow simonw/llm's ``llm/migrations.py``: each is a small function registered in
order; the names of applied ones are stored in ``_zimo_migrations``, so an old database is
upgraded in place when it is opened and a new one gets every step. Never edit a released
migration — add a new one.

Columns of ``requests``::

    id TEXT (time-ordered hex), time TEXT (ISO-8601 UTC, ms), key_id, endpoint (chat|completions),
    model (requested), answered_by, escalated (0/1), route_score, messages (JSON, chat),
    prompt (text, completions), params (JSON: temperature, max_tokens, …), response,
    prompt_tokens, completion_tokens, latency_ms, cost, status (HTTP status), error,
    feedback (-1 / 0 / 1 / NULL), redacted (0/1), stream (0/1)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zimo.workspace import Layout

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register ``fn`` as the next migration (order of definition = order of application)."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_requests(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            time TEXT NOT NULL,
            key_id TEXT,
            model TEXT,
            answered_by TEXT,
            escalated INTEGER NOT NULL DEFAULT 0,
            route_score REAL,
            messages TEXT,
            prompt TEXT,
            response TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_ms REAL,
            cost REAL,
            status INTEGER,
            error TEXT,
            feedback INTEGER,
            redacted INTEGER NOT NULL DEFAULT 0
        )"""
    )


@migration
def m002_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX requests_time ON requests(time)")
    db.execute("CREATE INDEX requests_model_time ON requests(model, time)")
    db.execute("CREATE INDEX requests_answered_by ON requests(answered_by)")


@migration
def m003_endpoint_params_stream(db: sqlite3.Connection) -> None:
    # Added after the first schema: which endpoint, the sampling parameters, streaming.
    db.execute("ALTER TABLE requests ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat'")
    db.execute("ALTER TABLE requests ADD COLUMN params TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN stream INTEGER NOT NULL DEFAULT 0")


@migration
def m004_route(db: sqlite3.Connection) -> None:
    # How a routed or cascaded request was answered: each tier tried, its confidence and
    # threshold (JSON), so the flywheel and the dashboard can read it back.
    db.execute("ALTER TABLE requests ADD COLUMN route TEXT")


COLUMNS = (
    "id", "time", "key_id", "endpoint", "model", "answered_by", "escalated", "route_score",
    "messages", "prompt", "params", "response", "prompt_tokens", "completion_tokens",
    "latency_ms", "cost", "status", "error", "feedback", "redacted", "stream", "route",
)  # fmt: skip
_JSON_COLUMNS = ("messages", "params", "route")


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _zimo_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    done = {r[0] for r in db.execute("SELECT name FROM _zimo_migrations")}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with db:  # one transaction per migration: a failure leaves the previous state
            fn(db)
            db.execute("INSERT INTO _zimo_migrations VALUES (?, ?)", (fn.__name__, now_iso()))
        applied.append(fn.__name__)
    return applied


def now_iso(ts: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` (fixed width, so text order = time order)."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def to_iso(value: str | float | datetime | None) -> str | None:
    """Normalise a time bound (ISO string, epoch seconds or datetime) to the stored format."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return now_iso(float(value))
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return now_iso(value.timestamp())


def new_id() -> str:
    """Time-ordered unique id: ms timestamp (12 hex) + random (12 hex)."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:12]}"


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (and create / upgrade) a request log database."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(p), check_same_thread=False, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    migrate(db)
    return db


def _row(record: dict[str, Any]) -> tuple:
    values = []
    for col in COLUMNS:
        v = record.get(col)
        if col in _JSON_COLUMNS and v is not None and not isinstance(v, str):
            v = json.dumps(v, ensure_ascii=False)
        if col in ("escalated", "redacted", "stream"):
            v = int(bool(v))
        values.append(v)
    return tuple(values)


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for col in _JSON_COLUMNS:
        if isinstance(d.get(col), str):
            try:
                d[col] = json.loads(d[col])
            except json.JSONDecodeError:
                pass
    for col in ("escalated", "redacted", "stream"):
        if col in d and d[col] is not None:
            d[col] = bool(d[col])
    return d


class RequestLog:
    """A thread-safe handle on one log database (the server keeps one for its lifetime)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = connect(self.path)
        self._lock = threading.Lock()

    def log(self, **fields: Any) -> str:
        """Insert one request; unknown fields are an error (a typo must not lose data)."""
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise TypeError(f"unknown request log fields: {sorted(unknown)}")
        rec = dict(fields)
        rec.setdefault("id", new_id())
        rec["time"] = to_iso(rec["time"]) if rec.get("time") is not None else now_iso()
        rec.setdefault("endpoint", "chat")
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._lock, self._db:
            self._db.execute(
                f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({placeholders})", _row(rec)
            )
        return rec["id"]

    def set_feedback(self, request_id: str, feedback: int | None) -> bool:
        """Record user feedback (-1 bad, 0 neutral, 1 good); False if the id is unknown."""
        if feedback is not None and feedback not in (-1, 0, 1):
            raise ValueError("feedback must be -1, 0, 1 or None")
        with self._lock, self._db:
            cur = self._db.execute(
                "UPDATE requests SET feedback = ? WHERE id = ?", (feedback, request_id)
            )
        return cur.rowcount > 0

    def iter(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Rows matching ``filters`` (see :func:`query`), oldest first, streamed."""
        sql, args = _where(**filters)
        # A separate read connection streams large logs without holding the writer's lock
        # (WAL lets readers and the writer work at the same time).
        reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        reader.row_factory = sqlite3.Row
        try:
            cur = reader.execute(sql, args)
            while rows := cur.fetchmany(1000):
                for r in rows:
                    yield _decode(r)
        finally:
            reader.close()

    def query(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.iter(**filters))

    def owner_of(self, request_id: str) -> tuple[bool, str | None]:
        """``(found, key_id)`` of a logged request: who may give feedback on it."""
        with self._lock:
            row = self._db.execute("SELECT key_id FROM requests WHERE id = ?",
                                   (request_id,)).fetchone()  # fmt: skip
        return (False, None) if row is None else (True, row[0])

    def count(self, **filters: Any) -> int:
        sql, args = _where(**filters)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM ({sql})", args).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_list(v: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


def _where(
    *,
    model: str | list[str] | None = None,
    answered_by: str | list[str] | None = None,
    key_id: str | None = None,
    since: str | float | datetime | None = None,
    until: str | float | datetime | None = None,
    feedback: str | int | None = None,
    success: bool | None = None,
    endpoint: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for col, val in (("model", _as_list(model)), ("answered_by", _as_list(answered_by))):
        if val:
            clauses.append(f"{col} IN ({', '.join('?' for _ in val)})")
            args.extend(val)
    if key_id is not None:
        clauses.append("key_id = ?")
        args.append(key_id)
    if endpoint is not None:
        clauses.append("endpoint = ?")
        args.append(endpoint)
    if since is not None:
        clauses.append("time >= ?")
        args.append(to_iso(since))
    if until is not None:
        clauses.append("time < ?")
        args.append(to_iso(until))
    if feedback in (None, "any"):
        pass
    elif feedback == "positive":
        clauses.append("feedback > 0")
    elif feedback == "non_negative":
        clauses.append("(feedback IS NULL OR feedback >= 0)")
    elif feedback == "negative":
        clauses.append("feedback < 0")
    elif isinstance(feedback, int):
        clauses.append("feedback = ?")
        args.append(feedback)
    else:
        raise ValueError(
            f"feedback filter {feedback!r}: use any|positive|non_negative|negative|int"
        )
    if success is True:
        clauses.append("status BETWEEN 200 AND 299 AND error IS NULL")
    elif success is False:
        clauses.append("(status IS NULL OR status NOT BETWEEN 200 AND 299 OR error IS NOT NULL)")
    sql = "SELECT * FROM requests"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY time DESC, id DESC" if newest_first else " ORDER BY time, id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return sql, args


def log_request(db: str | Path | RequestLog, **fields: Any) -> str:
    """Append one request to the log at ``db`` (a path or an open :class:`RequestLog`)."""
    if isinstance(db, RequestLog):
        return db.log(**fields)
    with RequestLog(db) as log:
        return log.log(**fields)


def query(db: str | Path | RequestLog, **filters: Any) -> list[dict[str, Any]]:
    """Rows of the log at ``db`` matching the filters, oldest first.

    Filters: ``model``, ``answered_by`` (a name or list), ``key_id``, ``endpoint``, ``since``
    (inclusive) / ``until`` (exclusive) as ISO strings, epoch seconds or datetimes,
    ``feedback`` (``any`` | ``positive`` | ``non_negative`` | ``negative`` | an int),
    ``success`` (True: 2xx without error; False: the others), ``limit``, ``newest_first``.
    """
    if isinstance(db, RequestLog):
        return db.query(**filters)
    if not Path(db).exists():
        raise FileNotFoundError(db)
    with RequestLog(db) as log:
        return log.query(**filters)


def default_path(project_root: str | Path | None = None) -> Path:
    """Where ``zimo serve`` keeps its log: ``<project>/.zimo/requests.sqlite``, or
    ``$ZIMO_HOME/requests.sqlite`` (default ``~/.zimo``) without a project."""
    if project_root is not None:
        return Layout(project_root).requests_db
    return Path(os.environ.get("ZIMO_HOME", Path.home() / ".zimo")) / "requests.sqlite"
