"""Kill a self-instruct run halfway (SIGKILL, in a subprocess) and rerun: no call is repeated."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from fake_openai import FakeOpenAI
from test_synth_modes import SEEDS, task_writer
from zimo.dataset_io import read_records

RUN = """
import sys
from zimo.synth.config import SelfInstructOptions, TeacherConfig
from zimo.synth.self_instruct import self_instruct
from zimo.synth.teacher import Teacher

def main(base_url, key, cache, out, seeds):
    cfg = TeacherConfig(base_url=base_url, model="fake-teacher", api_key_env=None,
                        max_concurrency=2, max_retries=0, price_in_per_1k=0.001)
    opts = SelfInstructOptions(num_instructions=50, tasks_per_request=10, requests_per_round=3)
    self_instruct(seeds, out, Teacher(cfg, cache, progress=False, api_key=key), opts)

if __name__ == "__main__":
    main(*sys.argv[1:6])
"""


def _run(srv: FakeOpenAI, cache: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, srv.base_url, srv.api_key, str(cache), str(out), str(SEEDS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _run_here(srv: FakeOpenAI, cache: Path, out: Path) -> None:
    """The very script the subprocess runs, in this process (faster to start)."""
    ns: dict = {"__name__": "synth_run"}
    exec(compile(RUN, "<synth-run>", "exec"), ns)
    ns["main"](srv.base_url, srv.api_key, str(cache), str(out), str(SEEDS))


def _cache_rows(cache: Path) -> int:
    if not cache.exists():
        return 0
    db = sqlite3.connect(cache)
    try:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _answered(srv: FakeOpenAI) -> list[str]:
    return [
        json.dumps(r["body"]["messages"], ensure_ascii=False)
        for r in srv.requests
        if r["status"] == 200
    ]


def test_kill_halfway_then_rerun_repeats_no_call(tmp_path):
    n_before_kill = 4
    gate = threading.Event()
    killed = threading.Event()
    lock = threading.Lock()
    seen = [0]

    def responder(body: dict) -> str:
        with lock:
            n = seen[0]
            seen[0] += 1
        if n >= n_before_kill and not gate.is_set():
            gate.wait(60)  # hold the run here until the test kills it
            if killed.is_set():
                raise RuntimeError("client was killed")
        return task_writer(body)

    cache = tmp_path / "cache.sqlite"
    with FakeOpenAI(responder) as srv:
        proc = _run(srv, cache, tmp_path / "out")
        deadline = time.monotonic() + 60
        # Kill only once every answered call is committed to the cache, with more in flight.
        while not (len(_answered(srv)) == n_before_kill and _cache_rows(cache) == n_before_kill):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed.set()
        gate.set()
        first = _answered(srv)
        assert len(first) == n_before_kill
        assert not (tmp_path / "out" / "summary.json").exists()

        srv.reset_counts()
        killed.clear()
        _run_here(srv, cache, tmp_path / "out")  # the rerun (in-process: faster to start)
        second = _answered(srv)
    assert second, "the rerun should finish the remaining work"
    assert not set(first) & set(second), "a finished call was sent again"
    assert len(set(second)) == len(second)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["produced"] == 50
    assert summary["usage"]["cached"] == n_before_kill

    # The resumed result equals an uninterrupted run (same prompts, same answers).
    with FakeOpenAI(task_writer) as srv2:
        _run_here(srv2, tmp_path / "fresh.sqlite", tmp_path / "fresh")
        assert srv2.count() == len(first) + len(second)
    resumed = read_records(tmp_path / "out" / "data.parquet")
    fresh = read_records(tmp_path / "fresh" / "data.parquet")
    assert [r["messages"] for r in resumed] == [r["messages"] for r in fresh]
