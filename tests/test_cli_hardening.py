"""Small CLI and registry defects found by a hostile-but-fair user: runs killed with -9, bad
`--since` values, the `zimo curate` JSON summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from zimo.workspace import Registry

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}
ZIMO = [sys.executable, "-c", "from zimo.cli import main; main()"]


def test_a_run_killed_with_sigkill_is_not_running_forever(tmp_path):
    db = tmp_path / "registry.sqlite"
    code = (
        "import sys, time; from pathlib import Path; from zimo.workspace import Registry;"
        "Registry(Path(sys.argv[1])).start('train', 'abc'); print('started', flush=True);"
        "time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        reg = Registry(db)
        assert reg.last_run("train")["state"] == "running"  # alive: really running
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = reg.last_run("train")
    assert last["state"] == "killed"
    assert str(proc.pid) in last["error"] and last["finished_at"]
    # And this process's own runs stay running while it lives.
    rid = reg.start("eval", "x")
    assert reg.last_run("eval")["state"] == "running"
    reg.finish(rid, "done", 1.0)


def test_logs_since_garbage_is_a_one_line_usage_error(tmp_path):
    from zimo.logs.requests import RequestLog

    db = tmp_path / "requests.sqlite"
    with RequestLog(db) as log:
        log.log(model="m", status=200, response="x")
    r = subprocess.run([*ZIMO, "logs", "--db", str(db), "--since", "last tuesday-ish"],
                       env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip() + r.stdout.strip()
    assert "--since" in err and "ISO-8601" in err
    assert "unexpected" not in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_curate_prints_its_whole_summary_as_json(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # Many distinct rejects and sources: a summary far over 4,000 characters.
    for i in range(40):
        (src / f"file_{i:03d}_with_a_rather_long_name_[x].txt").write_text(
            f"Document {i}. " + "Some words here. " * 30 + "\n", encoding="utf-8"
        )
        (src / f"empty_{i:03d}.txt").write_bytes(b"")
    r = subprocess.run(
        [*ZIMO, "curate", "--input", str(src), "--output", str(tmp_path / "out")],
        env={**ENV, "COLUMNS": "60"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 4000
    stats = json.loads(r.stdout)
    assert stats["kept"] + stats["rejected"] >= 40
