"""End to end on a tiny real project: build (interrupted, then resumed), report, rerun skips,
and a training-only change reruns only train and eval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from project_fixtures import run_zimo
from zimo.workspace import Workspace


def _start_build(project: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "zimo"
    return subprocess.Popen(
        [str(exe), "build", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_interrupt_resume_report_and_incremental_rebuild(tiny_project):
    # 1. Interrupt the build while it trains: no half-written train artifact may remain.
    proc = _start_build(tiny_project)
    seen = []
    deadline = time.time() + 300
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "▶ train" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            break
        assert time.time() < deadline, "build never reached train"
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, "".join(seen) + rest
    assert "Traceback" not in rest
    ws = Workspace(tiny_project)
    assert ws.artifacts("train") == []
    assert ws.artifacts("split")  # finished stages were kept

    # 2. The next build resumes: only train and eval run, and the report is written.
    r = run_zimo("build", tiny_project)
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout
    report = Path(r.stdout.split("report:")[1].strip())
    html = report.read_text(encoding="utf-8")
    for system in ("finetuned", "base_zero_shot", "tfidf_logreg"):
        assert system in html
    assert "data:image/png;base64" in html

    st = json.loads(run_zimo("status", tiny_project, "--json").stdout)
    assert all(s["state"] == "fresh" for s in st["stages"])
    ev = st["metrics"]["eval"]
    assert set(ev) == {"finetuned", "base_zero_shot", "tfidf_logreg"}
    for vals in ev.values():
        assert 0.0 <= vals["accuracy"] <= 1.0 and "spam_f1" in vals

    # 3. Nothing changed: everything is skipped, quickly.
    t0 = time.perf_counter()
    r = run_zimo("build", tiny_project)
    assert r.returncode == 0 and time.perf_counter() - t0 < 20
    assert "ran: nothing" in r.stderr

    # 4. A training parameter changes: only train and eval rerun.
    y = (tiny_project / "zimo.yaml").read_text()
    (tiny_project / "zimo.yaml").write_text(y.replace("max_steps: 3", "max_steps: 2"))
    r = run_zimo("build", tiny_project)
    assert r.returncode == 0, r.stderr
    assert "ran: train, eval" in r.stderr
