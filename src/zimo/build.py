"""`zimo build`: run the project's stage DAG like a build system.

The DAG and each stage's artifact id come from :mod:`zimo.stages.dag` (a hash of the
stage's input artifact ids, config sections and code version). A stage whose artifact already
exists is skipped, so a rerun with nothing changed takes seconds, and changing a training parameter
reruns only train and what depends on it. A stage works in ``.zimo/work/<stage>-<id>/`` and
its folder is renamed into ``artifacts/`` only when it finished, so a crash leaves no
half-written artifact, and a rerun with the same id resumes in the same work folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from zimo import interrupts
from zimo.config import load_project
from zimo.errors import ConfigError
from zimo.stages.base import StageContext, StageResult
from zimo.stages.dag import artifact_ids, downstream, latest_artifact, stages_for, upstream
from zimo.workspace import Workspace


def build(
    project_dir: str | Path,
    *,
    force: list[str] | None = None,
    target: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the stages that are not fresh (up to ``target``); returns what ran and skipped.

    ``force`` reruns the named stages and everything downstream of them.
    """
    console = console or Console(stderr=True)
    project = load_project(project_dir)
    ws = Workspace(project.root)
    dag = stages_for(project)
    names = [st.name for st in dag]
    for f in (force or []) + ([target] if target else []):
        if f not in names:
            raise ConfigError(f"unknown stage {f!r}", f"stages are: {', '.join(names)}")
    selected = upstream(dag, target) if target else set(names)
    forced = downstream(dag, set(force or [])) & selected
    ids = artifact_ids(project, dag)
    report: dict[str, Any] = {"project": str(project.root), "ran": [], "skipped": [], "ids": ids}
    t_all = time.perf_counter()
    for st in dag:
        if st.name not in selected:
            continue
        aid = ids[st.name]
        if ws.exists(st.name, aid) and st.name not in forced:
            report["skipped"].append(st.name)
            console.print(f"[dim]✓ {st.name:<7} fresh  {aid}[/dim]")
            continue
        inputs = {d: ws.artifact_dir(d, ids[d]) for d in st.deps}
        work = ws.work_dir(st.name, aid)
        ctx = StageContext(project, ws, st.name, aid, work, inputs, console)
        run_id = ws.registry.start(st.name, aid)
        console.print(f"[bold cyan]▶ {st.name:<7}[/bold cyan] {st.help} [dim]({aid})[/dim]")
        t0 = time.perf_counter()
        try:
            result = st.run(ctx)
            interrupts.check()  # a Ctrl-C that the stage's libraries swallowed: do not commit
        except BaseException as e:
            state = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            msg = getattr(e, "message", None) or str(e) or type(e).__name__
            ws.registry.finish(run_id, state, time.perf_counter() - t0, error=msg[:2000])
            raise
        secs = time.perf_counter() - t0
        config = {s: project.section(s) for s in st.sections}
        inputs_ids = {d: ids[d] for d in st.deps}
        ws.commit(
            st.name,
            aid,
            work,
            inputs=inputs_ids,
            config=config,
            rows=result.rows,
            summary=result.summary,
        )
        ws.registry.finish(run_id, "done", secs, summary=result.summary)
        report["ran"].append(st.name)
        console.print(f"[green]✓ {st.name:<7} done[/green] in {secs:.1f}s {_rows_text(result)}")
    report["seconds"] = round(time.perf_counter() - t_all, 2)
    return report


def _rows_text(result: StageResult) -> str:
    if not result.rows:
        return ""
    return "[dim](" + ", ".join(f"{k}={v}" for k, v in result.rows.items()) + ")[/dim]"


def status(project_dir: str | Path) -> dict[str, Any]:
    """Each stage's state (fresh / stale / missing) and artifact id, plus eval metrics.

    The JSON form is a stable contract: ``{"stages": [{"name", "state", "artifact"}],
    "metrics": {"eval": {system: {metric: value}}}}``.
    """
    project = load_project(project_dir)
    ws = Workspace(project.root)
    dag = stages_for(project)
    ids = artifact_ids(project, dag)
    stages = []
    for st in dag:
        aid = ids[st.name]
        if ws.exists(st.name, aid):
            state = "fresh"
        elif ws.artifacts(st.name):
            state = "stale"
        else:
            state = "missing"
        last = ws.registry.last_run(st.name)
        entry = {"name": st.name, "state": state, "artifact": aid}
        if last:
            entry["last_run"] = {
                "state": last["state"],
                "finished_at": last["finished_at"],
                "seconds": last["seconds"],
                "error": last["error"],
            }
        stages.append(entry)
    metrics: dict[str, Any] = {}
    eval_dir = latest_artifact(ws, "eval", ids.get("eval"))
    if eval_dir and (eval_dir / "metrics.json").is_file():
        data = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
        metrics["eval"] = data.get("headline", {})
    return {
        "project": project.name,
        "task": project.config.task,
        "stages": stages,
        "metrics": metrics,
    }
