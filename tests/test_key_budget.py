"""Per-key budgets for the big tier in the key database: atomic reservations shared by several
connections (as several gateway workers share the file), periods that roll over on the clock,
and key files written before budgets existed."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from pathlib import Path

import pytest

from project_fixtures import run_zimo
from zimo.serve.keys import KeyStore, _digest, period_id

DAY = 86_400.0
T0 = 1_796_601_600.0  # 2026-12-07T00:00:00Z


class Clock:
    def __init__(self, t: float = T0 + 3600):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_reservations_never_pass_the_budget_across_connections(tmp_path: Path):
    db = tmp_path / "keys.sqlite"
    a, b = KeyStore(db), KeyStore(db)  # two connections, like two gateway processes
    _, key = a.create("team", big_budget_usd=1.0, budget_period="total")
    won: list[bool] = []

    def worker(store: KeyStore) -> None:
        for _ in range(10):
            won.append(store.reserve(key.id, 1.0, "total", 0.1) is not None)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 0.1 added ten times is not exactly 1.0 in floating point: nine or ten fit, never more.
    assert sum(won) in (9, 10) and len(won) == 40
    spent, calls = a.spent(key.id, "total")
    assert spent <= 1.0 + 1e-9 and calls == sum(won)


def test_settle_replaces_the_reservation_and_a_failed_call_costs_nothing(tmp_path: Path):
    ks = KeyStore(tmp_path / "keys.sqlite")
    _, key = ks.create("team", big_budget_usd=1.0)
    assert key.budget_period == "month"  # the default period
    hold = ks.reserve(key.id, 1.0, "month", 0.5)
    assert hold is not None and ks.spent(key.id, "month") == (0.5, 1)
    ks.settle(hold, 0.125)  # the call cost less than reserved
    assert ks.spent(key.id, "month") == (0.125, 1)
    ks.settle(ks.reserve(key.id, 1.0, "month", 0.5), None)  # the upstream failed
    assert ks.spent(key.id, "month") == (0.125, 1)
    assert ks.reserve(key.id, 1.0, "month", 0.9) is None  # 0.125 + 0.9 > 1


@pytest.mark.parametrize(
    ("period", "later", "rolls"),
    [
        ("day", DAY, True),
        ("month", DAY, False),
        ("month", 31 * DAY, True),
        ("total", 400 * DAY, False),
    ],
)
def test_periods_roll_over_on_the_clock(tmp_path: Path, period: str, later: float, rolls: bool):
    clock = Clock()
    ks = KeyStore(tmp_path / "keys.sqlite", clock=clock)
    _, key = ks.create("team", big_budget_usd=1.0, budget_period=period)
    hold = ks.reserve(key.id, 1.0, period, 1.0)
    assert hold is not None and ks.reserve(key.id, 1.0, period, 0.01) is None
    clock.t += later
    assert (ks.reserve(key.id, 1.0, period, 0.01) is not None) is rolls
    # A call reserved before the rollover is settled in the period it was reserved in.
    ks.settle(hold, 0.5)
    clock.t -= later
    assert ks.spent(key.id, period)[0] == pytest.approx(0.5)


def test_period_ids():
    assert period_id("day", T0) == "2026-12-07"
    assert period_id("month", T0) == "2026-12"
    assert period_id("total", T0) == "total"
    with pytest.raises(ValueError, match="day, month, total"):
        period_id("week", T0)


_OLD_SCHEMA = """CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL,
    models TEXT, rate_per_minute INTEGER, admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT)"""


def test_a_key_file_from_before_budgets_keeps_working(tmp_path: Path):
    db = tmp_path / "keys.sqlite"
    con = sqlite3.connect(db)
    secret, salt = secrets.token_urlsafe(32), secrets.token_bytes(16)
    con.execute(_OLD_SCHEMA)
    con.execute(
        "INSERT INTO api_keys (id, name, salt, hash, models, rate_per_minute, admin, created_at)"
        " VALUES ('0123abcd', 'old', ?, ?, '[\"m\"]', 5, 0, '2025-01-01T00:00:00Z')",
        (salt, _digest(salt, secret)),
    )
    con.commit()
    con.close()
    ks = KeyStore(db)
    KeyStore(db).close()  # opening it again adds nothing twice
    old, why = ks.verify(f"zk-0123abcd-{secret}")
    assert why == "" and old is not None
    assert (old.name, old.models, old.rate_per_minute, old.big_budget_usd) == (
        "old",
        ["m"],
        5,
        None,
    )
    _, new = ks.create("new", big_budget_usd=2.5, budget_period="day")
    assert ks.get(new.id).big_budget_usd == 2.5 and ks.get(new.id).budget_period == "day"
    cols = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(api_keys)")}
    assert {"big_budget_usd", "budget_period"} <= cols
    r = run_zimo("keys", "list", "--db", db, "--json")
    rows = {k["name"]: k for k in json.loads(r.stdout)}
    assert rows["old"]["big_budget_usd"] is None and "big_spent_usd" not in rows["old"]
    assert rows["new"]["big_spent_usd"] == 0.0 and rows["new"]["budget_period"] == "day"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--big-budget-usd", "-1"], "--big-budget-usd must be a number of USD >= 0"),
        (["--big-budget-usd", "inf"], "--big-budget-usd must be a number of USD >= 0"),
        (["--big-budget-usd", "5", "--budget-period", "week"], "--budget-period must be one of"),
        (["--budget-period", "day"], "a budget period needs a budget"),
    ],
)
def test_bad_budget_values_are_one_line_errors(tmp_path: Path, args: list[str], says: str):
    db = tmp_path / "keys.sqlite"
    r = run_zimo("keys", "create", "team", "--db", db, *args)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not db.exists()  # nothing was written


def test_forwarded_requests_stop_at_the_key_and_gateway_budgets(tmp_path: Path, monkeypatch):
    """A request forwarded upstream as is has no local answer: past a budget it gets OpenAI's
    insufficient_quota 429, and the upstream is not asked."""
    import httpx

    from fake_openai import FakeOpenAI, Reply
    from serve_fixtures import LiveServer
    from zimo.serve.cli import gateway_app
    from zimo.serve.config import ServeConfig

    db = tmp_path / "keys.sqlite"
    ks = KeyStore(db)
    # 10 tokens a call at 100 USD per 1M tokens: 1e-3 USD a call.
    capped, capped_rec = ks.create("capped", big_budget_usd=0.0015, budget_period="day")
    free, _ = ks.create("free")
    admin, _ = ks.create("ops", admin=True)
    reply = Reply("five words of an answer", prompt_tokens=5, completion_tokens=5)
    with FakeOpenAI(lambda body: reply, models=("big-model",)) as up:
        monkeypatch.setenv("FAKE_UP_KEY", up.api_key)
        cfg = ServeConfig(
            serve_base=False, watch_s=None, embeddings=False, keys_db=str(db), require_keys=True,
            log={"path": str(tmp_path / "requests.sqlite")},
            upstream={"base_url": up.base_url, "api_key_env": "FAKE_UP_KEY",
                      "default_price": {"input_per_1m": 100, "output_per_1m": 100},
                      "budget_usd": 0.0035, "budget_period": "total"},
        )  # fmt: skip
        app = gateway_app(cfg)
        with LiveServer(app) as srv:

            def ask(key: str) -> httpx.Response:
                return httpx.post(srv.url + "/v1/chat/completions", timeout=30,
                                  headers={"authorization": f"Bearer {key}"},
                                  json={"model": "big-model",
                                        "messages": [{"role": "user", "content": "hi there"}]})  # fmt: skip

            statuses = [ask(capped).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]  # 0.001 spent allows a second call, not a third
            r = ask(capped)
            err = r.json()["error"]
            assert err["code"] == "insufficient_quota" and capped_rec.id in err["message"]
            assert up.count("/v1/chat/completions") == 2
            assert ask(free).status_code == 200  # the gateway's budget: 0.003 of 0.0035 spent
            assert ask(free).status_code == 200  # 0.003 <= 0.0035: starts, and passes it
            r = ask(free)
            assert (
                r.status_code == 429 and "serve.upstream.budget_usd" in r.json()["error"]["message"]
            )
            assert up.count("/v1/chat/completions") == 4
            # The admin API creates keys with a budget, and lists their spend.
            h = {"authorization": f"Bearer {admin}"}
            r = httpx.post(srv.url + "/ui/api/keys", headers=h, timeout=30,
                           json={"name": "made", "big_budget_usd": 1.5, "budget_period": "day"})  # fmt: skip
            assert r.status_code == 201 and r.json()["record"]["big_budget_usd"] == 1.5
            r = httpx.post(srv.url + "/ui/api/keys", headers=h, timeout=30,
                           json={"name": "bad", "big_budget_usd": 1, "budget_period": "week"})  # fmt: skip
            assert r.status_code == 400 and "budget_period" in r.text
            listed = httpx.get(srv.url + "/ui/api/keys", headers=h, timeout=30).json()["keys"]
            row = next(k for k in listed if k["name"] == "capped")
            assert row["big_spent_usd"] == pytest.approx(0.002) and row["big_calls"] == 2
            # Days later the key's daily budget is fresh, but the gateway's total one never is.
            app.state.zimo.keys.clock = lambda: T0 + 400 * DAY
            assert ask(free).status_code == 429 and ask(capped).status_code == 429
            assert up.count("/v1/chat/completions") == 4
    assert ks.spent("gateway", "total") == (pytest.approx(0.004), 4)
    assert ks.spent(capped_rec.id, "day") == (pytest.approx(0.002), 2)
