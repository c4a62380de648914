"""The serving CLI: `zimo keys`, `zimo logs`, and how `zimo serve` reads projects and binds."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from project_fixtures import make_tiny_project
from zimo.errors import ConfigError
from zimo.logs.requests import RequestLog
from zimo.serve.cli import register, safe_host, settings_from_projects
from zimo.serve.config import ServeConfig
from zimo.serve.keys import KeyStore


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_keys_create_list_revoke(cli, tmp_path):
    db = tmp_path / "keys.sqlite"
    r = cli("keys", "create", "svc", "--models", "a,b", "--rate", "10", "--db", db)
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    assert key.startswith("zk-")
    listed = json.loads(cli("keys", "list", "--json", "--db", db).stdout)
    assert listed[0]["models"] == ["a", "b"] and listed[0]["rate_per_minute"] == 10
    assert key.split("-", 2)[2] not in json.dumps(listed)
    kid = listed[0]["id"]
    assert cli("keys", "revoke", kid, "--db", db).exit_code == 0
    assert KeyStore(db).verify(key) == (None, "revoked")
    again = cli("keys", "revoke", kid, "--db", db)
    assert again.exit_code != 0


def test_logs_table_and_export(cli, tmp_path):
    db = tmp_path / "requests.sqlite"
    with RequestLog(db) as log:
        log.log(model="sms", answered_by="sms", status=200, response="spam", prompt_tokens=5,
                completion_tokens=1, latency_ms=12.0, cost=1e-6)  # fmt: skip
        log.log(model="big", answered_by="big", status=200, response="hello")
    r = cli("logs", "--db", db)
    assert r.exit_code == 0 and "sms" in r.stdout
    out = tmp_path / "x.jsonl"
    assert cli("logs", "--db", db, "--model", "sms", "--export", out).exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["response"] for r in rows] == ["spam"]
    csv_out = tmp_path / "x.csv"
    assert cli("logs", "--db", db, "--export", csv_out).exit_code == 0
    assert csv_out.read_text().count("\n") == 3
    assert cli("logs", "--db", tmp_path / "none.sqlite").exit_code != 0


def test_no_keys_binds_localhost_only(tmp_path):
    cfg = ServeConfig(keys_db=str(tmp_path / "k.sqlite"))
    said = []
    assert safe_host(cfg, "0.0.0.0", said.append) == "127.0.0.1"
    assert "127.0.0.1 only" in said[0]
    KeyStore(tmp_path / "k.sqlite").create("x")
    assert safe_host(cfg, "0.0.0.0", said.append) == "0.0.0.0"


def test_settings_from_project(tmp_path):
    proj = make_tiny_project(tmp_path / "p")
    cfg, roots = settings_from_projects([proj], {"port": 9999})
    assert cfg.backend.base == "gecko" and cfg.port == 9999 and roots == [proj.resolve()]
    assert cfg.log_path() == proj.resolve() / ".zimo" / "requests.sqlite"
    with pytest.raises(ConfigError):
        settings_from_projects([proj], {"limits": {"max_body": 1}})
