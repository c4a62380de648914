"""A project's workspace: every path under ``<project>/.zimo/``, content-addressed artifacts
and a SQLite registry of runs.

Layout (:class:`Layout` is the one place these names are spelled)::

    artifacts/<stage>/<artifact_id>/   finished outputs + manifest.json (never modified)
    work/<stage>-<artifact_id>/        a stage in progress (kept after a crash, so it resumes)
    registry.sqlite                    runs: stage, artifact, state, times, error (WAL)
    requests.sqlite                    the gateway's request log when it serves this project
    cache/teacher.sqlite               teacher answers, shared by synth and eval
    route/                             the fitted router and the cascade's thresholds
    flywheel/                          the big tier's answers kept as training rows
    exports/                           `zimo export` outputs by default

An artifact appears only by renaming a finished work folder into ``artifacts/``, so an
interrupted stage never leaves a half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zimo import __version__
from zimo.fileio import write_json_atomic
from zimo.records import now_iso

WORKSPACE_DIR = ".zimo"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def hash_obj(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def hash_path(path: Path) -> str:
    """Content hash of a file or folder (sorted walk). Large files hash size + mtime only."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        rel = f.name if f == path else str(f.relative_to(path))
        h.update(f"{rel}\0{st.st_size}\0".encode())
        if st.st_size > 256 * 1024 * 1024:
            h.update(str(st.st_mtime_ns).encode())
            continue
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def git_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# Registry schema changes are appended as numbered migrations (as simonw/llm does), so an
# old workspace keeps working after an upgrade.
MIGRATIONS: list[str] = [
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stage TEXT NOT NULL,
        artifact TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        seconds REAL,
        error TEXT,
        summary TEXT
    )""",
    "CREATE INDEX runs_stage ON runs(stage, id)",
    # Which process runs a stage, so a run whose process died without a word (kill -9, power
    # loss) is reported as such instead of "running" for ever.
    "ALTER TABLE runs ADD COLUMN owner TEXT",
]


def _proc_start(pid: int) -> str:
    """The start time of process ``pid`` (Linux: /proc/<pid>/stat field 22), "" elsewhere.
    With the pid it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def _owner_gone(owner: str | None) -> bool:
    """True when ``owner`` (host:pid:start) is a process of this machine that no longer
    runs; False when it runs or when this machine cannot tell (another host)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, but another user's
        pass
    except OSError:
        return False
    return bool(start) and _proc_start(pid) not in ("", start)


class Registry:
    """SQLite registry of stage runs (WAL, so the dashboard can read while a build writes)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.row_factory = sqlite3.Row
            yield con
            con.commit()
        finally:
            con.close()

    def _migrate(self) -> None:
        with self.connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS _migrations (n INTEGER PRIMARY KEY)")
            done = {r[0] for r in con.execute("SELECT n FROM _migrations")}
            for n, sql in enumerate(MIGRATIONS):
                if n not in done:
                    con.execute(sql)
                    con.execute("INSERT INTO _migrations (n) VALUES (?)", (n,))

    def start(self, stage: str, artifact: str) -> int:
        with self.connect() as con:
            cur = con.execute(
                "INSERT INTO runs (stage, artifact, state, started_at, owner) VALUES (?,?,?,?,?)",
                (stage, artifact, "running", now_iso(), _this_process()),
            )
            return int(cur.lastrowid)

    def finish(
        self, run_id: int, state: str, seconds: float, error: str | None = None, summary=None
    ) -> None:
        with self.connect() as con:
            con.execute(
                "UPDATE runs SET state=?, finished_at=?, seconds=?, error=?, summary=? WHERE id=?",
                (state, now_iso(), seconds, error, canonical_json(summary or {}), run_id),
            )

    def _settle_dead(self, con: sqlite3.Connection) -> None:
        """Mark runs whose process ended without finishing them as ``killed``."""
        rows = con.execute("SELECT id, owner FROM runs WHERE state='running'").fetchall()
        for r in rows:
            if _owner_gone(r["owner"]):
                pid = r["owner"].split(":")[1]
                con.execute(
                    "UPDATE runs SET state='killed', finished_at=?, error=? "
                    "WHERE id=? AND state='running'",
                    (now_iso(), f"the process (pid {pid}) ended without finishing this run "
                     "(killed or crashed); run the build again", r["id"]),
                )  # fmt: skip

    def runs(self, stage: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.connect() as con:
            self._settle_dead(con)
            if stage:
                rows = con.execute(
                    "SELECT * FROM runs WHERE stage=? ORDER BY id DESC LIMIT ?", (stage, limit)
                )
            else:
                rows = con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
            return [dict(r) for r in rows]

    def last_run(self, stage: str) -> dict[str, Any] | None:
        rows = self.runs(stage, limit=1)
        return rows[0] if rows else None


class Layout:
    """Where each file of a project's workspace lives. Creates nothing: a reader can ask for a
    path without making a ``.zimo/`` folder appear."""

    def __init__(self, project_root: str | Path):
        self.project = Path(project_root)
        self.dir = self.project / WORKSPACE_DIR
        self.artifacts = self.dir / "artifacts"
        self.work = self.dir / "work"
        self.registry = self.dir / "registry.sqlite"
        self.requests_db = self.dir / "requests.sqlite"
        self.teacher_cache = self.dir / "cache" / "teacher.sqlite"
        self.route_dir = self.dir / "route"
        self.cascade = self.route_dir / "cascade.json"
        self.upstream_answers = self.route_dir / "upstream_answers.jsonl"
        self.flywheel_rows = self.dir / "flywheel" / "rows.jsonl"
        self.flywheel_state = self.dir / "flywheel" / "state.json"
        self.exports = self.dir / "exports"
        self.launch_train = self.dir / "launch" / "train"
        self.synth_cli = self.dir / "synth-cli"

    def artifact_dir(self, stage: str, artifact_id: str) -> Path:
        return self.artifacts / stage / artifact_id


class Workspace:
    """Artifacts of one project, addressed by stage name and artifact id."""

    def __init__(self, project_root: Path):
        self.layout = Layout(project_root)
        self.root = self.layout.dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(self.layout.registry)

    def artifact_dir(self, stage: str, artifact_id: str) -> Path:
        return self.layout.artifact_dir(stage, artifact_id)

    def exists(self, stage: str, artifact_id: str) -> bool:
        return (self.artifact_dir(stage, artifact_id) / "manifest.json").is_file()

    def work_dir(self, stage: str, artifact_id: str) -> Path:
        d = self.layout.work / f"{stage}-{artifact_id}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def manifest(self, stage: str, artifact_id: str) -> dict[str, Any] | None:
        p = self.artifact_dir(stage, artifact_id) / "manifest.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    def artifacts(self, stage: str) -> list[str]:
        d = self.layout.artifacts / stage
        if not d.is_dir():
            return []
        found = [p for p in d.iterdir() if (p / "manifest.json").is_file()]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

    def commit(
        self,
        stage: str,
        artifact_id: str,
        work: Path,
        *,
        inputs: dict[str, str],
        config: Any,
        rows: dict[str, int] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> Path:
        """Write the manifest and move the finished work folder into place atomically."""
        manifest = {
            "stage": stage,
            "artifact": artifact_id,
            "inputs": inputs,
            "config": config,
            "code_version": {"zimo": __version__, "git": git_version()},
            "created": now_iso(),
            "rows": rows or {},
            "summary": summary or {},
            "files": sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()),
        }
        write_json_atomic(work / "manifest.json", manifest)
        final = self.artifact_dir(stage, artifact_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a forced rerun replaces the old artifact
            trash = final.with_name(f".{artifact_id}.old.{int(time.time() * 1000)}")
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(work, final)
        return final
