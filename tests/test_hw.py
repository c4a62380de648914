"""zimo.hw: the core count every thread setting derives from, and the test suite's
build-once helper that relies on it under pytest-xdist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from zimo.hw import cores, idle_cores, serving_threads, set_threads


def test_zimo_threads_caps_every_thread_setting(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("ZIMO_THREADS", "3")
    try:
        assert cores() == 3
        assert serving_threads() == 2
        assert set_threads() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("ZIMO_THREADS", "lots")  # malformed: the machine's cores, not a crash
    assert cores() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("ZIMO_THREADS")
    assert cores() == len(os.sched_getaffinity(0))


def test_zimo_threads_reaches_a_zimo_subprocess():
    code = "from zimo.hw import cores, serving_threads; print(cores(), serving_threads())"
    env = {**os.environ, "ZIMO_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "1"]


def test_built_once_builds_once_across_processes(tmp_path):
    """Two processes (as two xdist workers) ask for the same folder at once: one builds it,
    the other waits and reuses it."""
    tests = Path(__file__).resolve().parent
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(tests)!r})
        from conftest import built_once

        class Factory:  # what pytest's tmp_path_factory gives a worker
            def getbasetemp(self):
                return Path(sys.argv[1]) / sys.argv[2]

        def make(folder):
            with open(Path(sys.argv[1]) / "builds.log", "a") as f:
                f.write(sys.argv[2] + "\\n")
            time.sleep(1.0)
            (folder / "model.txt").write_text("built")

        print(built_once(Factory(), "thing", make))
        """
    )
    env = {**os.environ, "PYTEST_XDIST_WORKER": "gw0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), w], env=env, stdout=subprocess.PIPE
        )
        for w in ("gw0", "gw1")
    ]
    outs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] == str(tmp_path / "built-thing")
    assert (tmp_path / "built-thing" / "model.txt").read_text() == "built"
    assert len((tmp_path / "builds.log").read_text().split()) == 1  # built by one of the two


def test_idle_cores_leaves_other_jobs_their_cores(monkeypatch):
    monkeypatch.delenv("ZIMO_THREADS", raising=False)
    n = cores()
    assert 1 <= idle_cores() <= n
    # All of the load is our own: every core is ours.
    assert idle_cores(own_load=os.getloadavg()[0]) == n
    monkeypatch.setattr(os, "getloadavg", lambda: (n + 5.0, 0.0, 0.0))
    assert idle_cores() == 1  # oversubscribed: one thread, not a spinning team
    assert idle_cores(own_load=n + 5.0) == n
    monkeypatch.setenv("ZIMO_THREADS", "2")  # an explicit share is kept whatever the load
    assert idle_cores() == 2


def test_training_threads_follow_the_config_or_the_idle_cores(monkeypatch):
    import torch

    from zimo.train import TrainConfig
    from zimo.train.setup import retune_threads, setup_threads

    before = torch.get_num_threads()
    try:
        assert setup_threads(TrainConfig(threads=1)) == 1 == torch.get_num_threads()
        monkeypatch.setenv("ZIMO_THREADS", "2")
        assert setup_threads(TrainConfig()) == 2 == torch.get_num_threads()
        monkeypatch.delenv("ZIMO_THREADS")
        monkeypatch.setattr(os, "getloadavg", lambda: (cores() + 8.0, 0.0, 0.0))
        assert retune_threads(TrainConfig()) == 1  # other jobs started: step down
        assert retune_threads(TrainConfig(threads=2)) == 1  # a fixed setting is not retuned
    finally:
        torch.set_num_threads(before)
