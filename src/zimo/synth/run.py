"""One entry point for every synth mode (what ``zimo synth`` and the build stage call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zimo.errors import ConfigError, DataError
from zimo.synth.config import SynthConfig, TeacherConfig
from zimo.synth.teacher import Teacher

CACHE_NAME = "teacher_cache.sqlite"


def read_input_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from Parquet or JSON lines (``{"text": ...}`` / ``{"messages": [...]}``)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"input {p} does not exist", "pass an existing .parquet or .jsonl file")
    if p.suffix == ".parquet":
        from zimo.dataset_io import read_records

        return read_records(p)
    rows, bad = [], 0
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad += 1
    if not rows:
        raise DataError(f"input {p} has no JSON records ({bad} unreadable lines)")
    return rows


def run_synth(
    synth: SynthConfig,
    teacher_cfg: TeacherConfig | None,
    *,
    out_dir: str | Path,
    inputs: str | Path | list[dict[str, Any]] | None = None,
    cache_path: str | Path | None = None,
    labels: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``synth.mode`` and write ``data.parquet``, ``rejects.parquet``, ``summary.json``.

    ``inputs``: the seed task file (self_instruct; default ``synth.self_instruct.seed_tasks``),
    records or a records file (answer, label), the request log (distill; default
    ``synth.distill.log_db``). ``cache_path`` defaults to ``synth.cache`` or
    ``<out_dir>/../teacher_cache.sqlite`` — keep it outside ``out_dir`` so a new output
    folder (a new artifact) still reuses every paid call.
    """
    out = Path(out_dir)
    if synth.mode == "distill":
        from zimo.synth.distill import distill

        log_db = inputs if inputs is not None else synth.distill.log_db
        if log_db is None or isinstance(log_db, list):
            raise ConfigError(
                "distill needs the request log path", "set synth.distill.log_db or --input"
            )
        return distill(log_db, out, synth.distill)
    if teacher_cfg is None:
        raise ConfigError(
            f"synth mode {synth.mode} needs a teacher", "add a `teacher:` section to zimo.yaml"
        )
    cache = cache_path or synth.cache or out.parent / CACHE_NAME
    teacher = Teacher(teacher_cfg, cache, progress=progress)
    try:
        if synth.mode == "self_instruct":
            from zimo.synth.self_instruct import self_instruct

            seeds = inputs if inputs is not None else synth.self_instruct.seed_tasks
            if seeds is None:
                raise ConfigError(
                    "self_instruct needs seed tasks",
                    "set synth.self_instruct.seed_tasks or pass --input seeds.jsonl",
                )
            return self_instruct(seeds, out, teacher, synth.self_instruct)
        records = inputs if isinstance(inputs, list) else None
        if records is None:
            if inputs is None:
                raise ConfigError(f"synth mode {synth.mode} needs input records", "pass --input")
            records = read_input_records(inputs)
        if synth.mode == "answer":
            from zimo.synth.answer import answer

            return answer(records, out, teacher, synth.answer)
        from zimo.synth.label import label

        return label(records, out, teacher, synth.label, labels=labels)
    finally:
        teacher.close()
