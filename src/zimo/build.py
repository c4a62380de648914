"""`zimo build`: run the project's stage DAG like a build system.

Each stage's artifact id is a hash of its input artifact ids, its config sections and its
code version (ingest also hashes the data files). A stage whose artifact already exists is
skipped, so a rerun with nothing changed takes seconds, and changing a training parameter
reruns only train and what depends on it. A stage works in ``.zimo/work/<stage>-<id>/`` and
its folder is renamed into ``artifacts/`` only when it finished, so a crash leaves no
half-written artifact, and a rerun with the same id resumes in the same work folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from zimo import interrupts
from zimo.config import Project, load_project
from zimo.errors import ConfigError
from zimo.workspace import Workspace, hash_obj, hash_path


@dataclass
class StageContext:
    project: Project
    workspace: Workspace
    stage: str
    artifact: str
    work: Path
    inputs: dict[str, Path]
    console: Console

    def input(self, stage: str) -> Path:
        return self.inputs[stage]


@dataclass
class StageResult:
    rows: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stage:
    name: str
    deps: list[str]
    sections: list[str]  # config keys (top-level) that change the artifact
    version: str  # bump when the stage's code changes its output
    run: Callable[[StageContext], StageResult]
    help: str = ""
    # Extra config hashed into the artifact id: a sub-model's own `train:` entry, so changing
    # one sub-model of a list retrains only that one.
    config: Any = None


def train_stage_name(index: int, name: str) -> str:
    """The primary sub-model trains in ``train``; each further one in ``train-<name>``."""
    return "train" if index == 0 else f"train-{name}"


def _train_stages(project: Project, deps: list[str]) -> list[Stage]:
    from zimo.config import submodel_name
    from zimo.kinds import kind_of, resolve

    stages = []
    subs = project.config.submodels()
    for i, tcfg in enumerate(subs):
        kind = kind_of(tcfg.method)

        def run(ctx: StageContext, _ref=kind.train, _cfg=tcfg) -> StageResult:
            return resolve(_ref)(ctx, _cfg)

        name = train_stage_name(i, submodel_name(tcfg))
        sections = ["labels", "instruction", "task"] + ([] if len(subs) > 1 else ["train"])
        if project.config.task in ("tabular", "image"):
            sections = [project.config.task] + ([] if len(subs) > 1 else ["train"])
        cfg_key = tcfg.model_dump(mode="json") if len(subs) > 1 else None
        stages.append(Stage(name, deps, sections, "1", run, f"train {submodel_name(tcfg)}",
                            config=cfg_key))  # fmt: skip
    return stages


def _tabular_stages(project: Project) -> list[Stage]:
    from zimo.stages import tabular

    dag = [
        Stage("ingest", [], ["data", "tabular"], "1", tabular.run_ingest, "read the table"),
        Stage("split", ["ingest"], ["split"], "1", tabular.run_split, "train/dev/test split"),
    ]
    trains = _train_stages(project, ["ingest", "split"])
    dag += trains
    deps = ["split"] + [t.name for t in trains]
    dag.append(Stage("eval", deps, ["eval"], "1", tabular.run_eval, "evaluate and report"))
    return dag


def _image_stages(project: Project) -> list[Stage]:
    from zimo.stages import image

    dag = [
        Stage("ingest", [], ["data", "image", "labels"], "1", image.run_ingest, "read the images"),
        Stage("split", ["ingest"], ["split"], "1", image.run_split, "train/dev/test split"),
    ]
    trains = _train_stages(project, ["ingest", "split"])
    dag += trains
    deps = ["ingest", "split"] + [t.name for t in trains]
    dag.append(Stage("eval", deps, ["eval"], "1", image.run_eval, "evaluate and report"))
    return dag


def stages_for(project: Project) -> list[Stage]:
    """The DAG for a project's task, in topological order."""
    from zimo.stages import curate as curate_stage
    from zimo.stages import eval as eval_stage
    from zimo.stages import ingest, split, synth

    cfg = project.config
    if cfg.task in ("tabular", "image"):
        dag = _tabular_stages(project) if cfg.task == "tabular" else _image_stages(project)
        if cfg.export is not None:
            dag.append(_export_stage(project))
        return dag
    split_deps = ["curate"]
    dag = [
        Stage("ingest", [], ["data", "labels", "task"], "1", ingest.run, "read the data files"),
        Stage("curate", ["ingest"], ["curate"], "1", curate_stage.run, "clean and dedup"),
    ]
    if cfg.synth is not None:
        teacher_keys = ["synth", "teacher", "labels"]
        dag.append(Stage("synth", ["curate"], teacher_keys, "1", synth.run, "teacher data"))
        split_deps = ["curate", "synth"]
    dag.append(Stage("split", split_deps, ["split"], "1", split.run, "train/dev/test split"))
    train_deps = ["split"]
    if cfg.guard is not None:
        from zimo.stages import guard

        dag.append(Stage("guard", ["split"], ["guard"], "1", guard.run, "training-mix guard"))
        train_deps = ["split", "guard"]
    trains = _train_stages(project, train_deps)
    dag += trains
    eval_deps = ["split"] + [t.name for t in trains]
    dag.append(Stage("eval", eval_deps, ["eval"], "1", eval_stage.run, "evaluate and report"))
    if cfg.export is not None:
        dag.append(_export_stage(project))
    return dag


def _export_stage(project: Project) -> Stage:
    from zimo.kinds import kind_of

    if kind_of(project.config.primary().method).name == "lm":
        from zimo.export.stage import run as export_run
    else:
        from zimo.analytic_export import run_stage as export_run
    return Stage("export", ["split", "train", "eval"], ["export"], "1", export_run,
                 "export and verify")  # fmt: skip


def _ids(project: Project, dag: list[Stage]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for st in dag:
        key: dict[str, Any] = {
            "stage": st.name,
            "version": st.version,
            "config": {s: project.section(s) for s in st.sections},
            "inputs": {d: ids[d] for d in st.deps},
        }
        if st.config is not None:
            key["submodel"] = st.config
        if st.name == "ingest":
            path = project.data_path()
            key["data_hash"] = hash_path(path) if path.exists() else "missing"
        if st.name == "split":
            from zimo.flywheel import rows_path

            rows = rows_path(project.root)
            if rows.is_file():  # new flywheel rows change the train split, and what follows
                key["flywheel_hash"] = hash_path(rows)
        ids[st.name] = hash_obj(key)
    return ids


def _stage_names(dag: list[Stage]) -> list[str]:
    return [s.name for s in dag]


def _downstream(dag: list[Stage], names: set[str]) -> set[str]:
    out = set(names)
    for st in dag:  # topological order, so one pass suffices
        if any(d in out for d in st.deps):
            out.add(st.name)
    return out


def _upstream(dag: list[Stage], target: str) -> set[str]:
    by_name = {s.name: s for s in dag}
    need, todo = set(), [target]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(by_name[n].deps)
    return need


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
    names = _stage_names(dag)
    for f in (force or []) + ([target] if target else []):
        if f not in names:
            raise ConfigError(f"unknown stage {f!r}", f"stages are: {', '.join(names)}")
    selected = _upstream(dag, target) if target else set(names)
    forced = _downstream(dag, set(force or [])) & selected
    ids = _ids(project, dag)
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
    ids = _ids(project, dag)
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
    eval_dir = _latest_artifact(ws, "eval", ids.get("eval"))
    if eval_dir and (eval_dir / "metrics.json").is_file():
        data = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
        metrics["eval"] = data.get("headline", {})
    return {
        "project": project.name,
        "task": project.config.task,
        "stages": stages,
        "metrics": metrics,
    }


def _latest_artifact(ws: Workspace, stage: str, current: str | None) -> Path | None:
    if current and ws.exists(stage, current):
        return ws.artifact_dir(stage, current)
    found = ws.artifacts(stage)
    return ws.artifact_dir(stage, found[0]) if found else None


def artifact_path(project_dir: str | Path, stage: str) -> Path | None:
    """The current (fresh) artifact of a stage, or the newest stale one, or None."""
    project = load_project(project_dir)
    ws = Workspace(project.root)
    ids = _ids(project, stages_for(project))
    if stage not in ids:
        raise ConfigError(f"unknown stage {stage!r}", f"stages are: {', '.join(ids)}")
    return _latest_artifact(ws, stage, ids[stage])
