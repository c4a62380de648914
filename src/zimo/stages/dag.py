"""The build DAG: which stages a project has, in what order, and each one's artifact id.

A stage's artifact id is a hash of its input artifact ids, its config sections, its code
version and (for ingest) the data files, so the runner (:mod:`zimo.build`) can skip what is
fresh. :func:`artifact_path` is how the rest of Zimo finds a stage's current output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zimo.config import Project, load_project, submodel_name
from zimo.errors import ConfigError
from zimo.kinds import kind_of, resolve
from zimo.stages import curate as curate_stage
from zimo.stages import eval as eval_stage
from zimo.stages import guard, ingest, split, synth
from zimo.stages.base import Stage, StageContext, StageResult, train_stage_name
from zimo.workspace import Layout, Workspace, hash_obj, hash_path


def _train_stages(project: Project, deps: list[str]) -> list[Stage]:
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
        if cfg_key is not None and cfg_key.get("warm_start") is None:
            # Unset, it is left out of the key: the ids of existing artifacts stay as they were.
            cfg_key.pop("warm_start", None)  # a classical or tabular config has no such key
        stages.append(Stage(name, deps, sections, "1", run, f"train {submodel_name(tcfg)}",
                            config=cfg_key))  # fmt: skip
    return stages


def _tabular_stages(project: Project) -> list[Stage]:
    from zimo.stages import tabular  # pandas: imported only for table projects

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
    from zimo.stages import image  # torch and Pillow: imported only for image projects

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
    # The kind names its export stage by reference: the LM exporter pulls in the GGUF writer
    # and the analytic one pandas, and neither is needed to merely list the stages.
    run = kind_of(project.config.primary().method).export_stage
    return Stage("export", ["split", "train", "eval"], ["export"], "1",
                 lambda ctx, _ref=run: resolve(_ref)(ctx), "export and verify")  # fmt: skip


def artifact_ids(project: Project, dag: list[Stage]) -> dict[str, str]:
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
            rows = Layout(project.root).flywheel_rows
            if rows.is_file():  # new flywheel rows change the train split, and what follows
                key["flywheel_hash"] = hash_path(rows)
        ids[st.name] = hash_obj(key)
    return ids


def downstream(dag: list[Stage], names: set[str]) -> set[str]:
    out = set(names)
    for st in dag:  # topological order, so one pass suffices
        if any(d in out for d in st.deps):
            out.add(st.name)
    return out


def upstream(dag: list[Stage], target: str) -> set[str]:
    by_name = {s.name: s for s in dag}
    need, todo = set(), [target]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(by_name[n].deps)
    return need


def latest_artifact(ws: Workspace, stage: str, current: str | None) -> Path | None:
    if current and ws.exists(stage, current):
        return ws.artifact_dir(stage, current)
    found = ws.artifacts(stage)
    return ws.artifact_dir(stage, found[0]) if found else None


def artifact_path(project_dir: str | Path, stage: str) -> Path | None:
    """The current (fresh) artifact of a stage, or the newest stale one, or None."""
    project = load_project(project_dir)
    ws = Workspace(project.root)
    ids = artifact_ids(project, stages_for(project))
    if stage not in ids:
        raise ConfigError(f"unknown stage {stage!r}", f"stages are: {', '.join(ids)}")
    return latest_artifact(ws, stage, ids[stage])
