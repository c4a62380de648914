"""The gateway request log: migrations, writes from many threads, filters."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from zimo.logs import requests as logdb
from zimo.logs.requests import RequestLog, log_request, query


def test_fresh_db_has_every_migration_and_wal(tmp_path):
    db = tmp_path / "r.sqlite"
    with RequestLog(db):
        pass
    con = sqlite3.connect(db)
    names = [r[0] for r in con.execute("SELECT name FROM _zimo_migrations ORDER BY rowid")]
    assert names == [fn.__name__ for fn in logdb.MIGRATIONS]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {r[1] for r in con.execute("PRAGMA table_info(requests)")}
    assert cols == set(logdb.COLUMNS)


def test_old_database_is_upgraded_in_place(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _zimo_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    logdb.m001_requests(con)  # a database written by the first release
    con.execute("INSERT INTO _zimo_migrations VALUES ('m001_requests', 'then')")
    con.execute(
        "INSERT INTO requests (id, time, model, response, status) "
        "VALUES ('old1', '2025-01-01T00:00:00.000Z', 'big', 'hi', 200)"
    )
    con.commit()
    con.close()
    with RequestLog(db) as log:
        [row] = log.query()
        assert row["id"] == "old1" and row["endpoint"] == "chat" and row["stream"] is False
        log.log(model="big", prompt="p", endpoint="completions", stream=True, status=200)
        assert log.count() == 2
    applied = logdb.migrate(sqlite3.connect(db))
    assert applied == []  # idempotent


def test_log_and_query_filters(tmp_path):
    db = tmp_path / "r.sqlite"
    with RequestLog(db) as log:
        a = log.log(
            time="2026-03-01T00:00:00Z",
            key_id="k1",
            model="auto",
            answered_by="sms-fraud",
            escalated=False,
            route_score=0.2,
            messages=[{"role": "user", "content": "hi"}],
            params={"temperature": 0},
            response="hello",
            prompt_tokens=3,
            completion_tokens=1,
            latency_ms=12.5,
            cost=0.0001,
            status=200,
            redacted=True,
        )
        log.log(time="2026-03-02T00:00:00Z", model="auto", answered_by="big", escalated=True,
                status=200, response="x")  # fmt: skip
        log.log(time="2026-03-03T00:00:00Z", model="big", status=500, error="boom")
        assert log.set_feedback(a, 1) and not log.set_feedback("missing", 1)
        with pytest.raises(ValueError):
            log.set_feedback(a, 5)
        with pytest.raises(TypeError, match="unknown"):
            log.log(modle="typo")
    [row] = query(db, key_id="k1")
    assert row["messages"] == [{"role": "user", "content": "hi"}]
    assert row["params"] == {"temperature": 0} and row["redacted"] is True
    assert row["feedback"] == 1 and row["time"] == "2026-03-01T00:00:00.000Z"
    assert len(query(db, model="auto")) == 2
    assert len(query(db, model=["auto", "big"])) == 3
    assert len(query(db, answered_by="big")) == 1
    assert len(query(db, since="2026-03-02T00:00:00Z")) == 2
    assert len(query(db, until="2026-03-02T00:00:00Z")) == 1
    assert len(query(db, success=True)) == 2 and len(query(db, success=False)) == 1
    assert len(query(db, feedback="positive")) == 1
    assert len(query(db, feedback="non_negative")) == 3
    assert [r["model"] for r in query(db, newest_first=True, limit=1)] == ["big"]
    with pytest.raises(FileNotFoundError):
        query(tmp_path / "missing.sqlite")


def test_concurrent_writers(tmp_path):
    db = tmp_path / "r.sqlite"
    log = RequestLog(db)

    def work(i: int) -> None:
        for j in range(25):
            log.log(model=f"m{i}", response=str(j), status=200)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A second process-like handle (path based) sees every row.
    log_request(db, model="other", status=200)
    assert log.count() == 101
    ids = [r["id"] for r in log.query()]
    assert len(set(ids)) == 101
    log.close()
