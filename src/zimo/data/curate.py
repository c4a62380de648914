"""``curate_path``: a folder of mixed files → curated.parquet, rejects.parquet and a report.

How it runs (the executor is separate from the steps, as in datatrove):

1. **Plan**: the input files are grouped into shards (``shard_mb`` / ``shard_files``); the plan
   is saved, so a rerun over the same input and config reuses it.
2. **Shards, in parallel** (local processes, or Ray Data tasks with ``engine="ray"``): read the
   files (bad ones are quarantined with a reason), run the per-record steps that precede the
   first dedup step, and compute the dedup signatures. Each shard's outputs are written to a
   temporary folder and renamed into place, so a shard is either complete or absent.
3. **Dedup, in one place**: each dedup step selects its drops over all shards' signatures in
   corpus order (first occurrence kept), so the result does not depend on the engine.
4. **Assemble**: stream the shards in order, apply the drops, run any steps after the dedup
   block, and write the outputs (temporary file + rename).

An interrupted run resumes at step 2 with the shards still missing: no record is lost or
doubled, because shard outputs are atomic and steps 3–4 are recomputed from them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zimo.data.curate_config import CurateConfig, build_steps
from zimo.data.pipeline import (
    EXAMPLE_CHARS,
    GlobalStep,
    Step,
    StepStats,
    record_text,
    run_steps,
)
from zimo.data.readers.files import iter_files, read_file
from zimo.data.record_table import REJECT_SCHEMA, SCHEMA, records_table, table_records
from zimo.errors import ConfigError, DataError
from zimo.hw import cores

WORK_DIR = ".work"
CHUNK_RECORDS = 2000
# Records also flow in chunks of at most this many characters: 2,000 records of a long text
# file's 100,000-character pieces would otherwise be 200 M characters (gigabytes) at once.
CHUNK_CHARS = 8_000_000
ENGINES = ("local", "ray")


# --- planning ---------------------------------------------------------------------------------


def _config_hash(cfg: CurateConfig) -> str:
    body = cfg.model_dump_json(exclude={"workers"})
    return hashlib.sha1(body.encode()).hexdigest()[:16]


def plan_shards(input_dir: Path, cfg: CurateConfig) -> list[list[list[Any]]]:
    """Shards as lists of ``[relative path, size, mtime_ns]`` in a stable order."""
    limit = int(cfg.shard_mb * 1024 * 1024)
    shards: list[list[list[Any]]] = []
    cur: list[list[Any]] = []
    size = 0
    base = input_dir if input_dir.is_dir() else input_dir.parent
    for n, path in enumerate(iter_files(input_dir)):
        if cfg.read.max_files is not None and n >= cfg.read.max_files:
            break
        try:
            st = path.stat()
        except OSError:
            st = None
        entry = [
            path.relative_to(base).as_posix(),
            st.st_size if st else 0,
            st.st_mtime_ns if st else 0,
        ]
        if cur and (size + entry[1] > limit or len(cur) >= cfg.shard_files):
            shards.append(cur)
            cur, size = [], 0
        cur.append(entry)
        size += entry[1]
    if cur:
        shards.append(cur)
    return shards


def _split_steps(steps: list[Step]) -> tuple[list[Step], list[GlobalStep], list[Step]]:
    """(per-record steps before the first dedup step, the dedup block, everything after)."""
    i = 0
    while i < len(steps) and not steps[i].is_global:
        i += 1
    j = i
    while j < len(steps) and steps[j].is_global:
        j += 1
    return steps[:i], steps[i:j], steps[j:]  # type: ignore[return-value]


# --- one shard (runs in a worker process or a Ray task) ---------------------------------------


def _dump_signatures(step: GlobalStep, sigs: Any, path: Path) -> None:
    if hasattr(step, "dump_signatures"):
        step.dump_signatures(sigs, path)  # ragged signatures (lists of line hashes)
    else:
        with open(path, "wb") as f:
            np.save(f, np.asarray(sigs), allow_pickle=False)


def _load_signatures(step: GlobalStep, path: Path) -> list[Any]:
    if hasattr(step, "load_signatures"):
        return list(step.load_signatures(path))
    with open(path, "rb") as f:
        return list(np.load(f, allow_pickle=False))


def _lengths(recs: list[dict[str, Any]]) -> list[int]:
    return [len(record_text(r)) for r in recs]


def _take(stream: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next chunk: up to ``CHUNK_RECORDS`` records and ``CHUNK_CHARS`` characters."""
    chunk: list[dict[str, Any]] = []
    chars = 0
    for rec in stream:
        chunk.append(rec)
        chars += len(record_text(rec))
        if len(chunk) >= CHUNK_RECORDS or chars >= CHUNK_CHARS:
            break
    return chunk


def process_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Read a shard's files, run the leading steps, compute dedup signatures; write atomically.

    A plain function of plain data so the local pool and Ray run exactly the same code.
    """
    out = Path(task["out"])
    if (out / "stats.json").exists():
        return json.loads((out / "stats.json").read_text())
    cfg = CurateConfig.model_validate(task["cfg"])
    steps = build_steps(cfg)
    lead, block, _ = _split_steps(steps)
    root = Path(task["root"])
    read_rejects: list[dict[str, Any]] = []
    read_stats = StepStats("read", "reader")
    before: list[int] = []

    def records() -> Iterator[dict[str, Any]]:
        for rel, _size, _mtime in task["files"]:
            read_stats.seen += 1
            for rec in read_file(root / rel, cfg.read, root):
                if "reject_step" in rec:
                    read_stats.dropped[rec["reject_reason"]] += 1
                    read_stats.add_example(
                        rec["reject_reason"],
                        {
                            "id": rec["id"],
                            "text": f"{rec['meta']['source']}: {(rec['text'] or '')[:200]}",
                        },
                    )
                    read_rejects.append(rec)
                else:
                    read_stats.kept += 1
                    before.append(len(record_text(rec)))
                    yield rec

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Records flow in chunks, so one huge file (a shard of its own) still fits in memory.
    kept_w = pq.ParquetWriter(tmp / "kept.parquet", SCHEMA)
    rej_w = pq.ParquetWriter(tmp / "rejects.parquet", REJECT_SCHEMA)
    sigs: list[list[Any]] = [[] for _ in block]
    n_kept = 0
    stream = records()
    while True:
        chunk = _take(stream)
        res = run_steps(chunk, lead)
        for k, step in enumerate(block):
            if hasattr(step, "signatures"):
                sigs[k].extend(step.signatures(res.kept) if res.kept else [])  # type: ignore[attr-defined]
            else:
                sigs[k].extend(step.signature(r) for r in res.kept)
        if res.kept:
            kept_w.write_table(records_table(res.kept))
        if read_rejects or res.rejected:
            rej_w.write_table(records_table(read_rejects + res.rejected, rejects=True))
            read_rejects.clear()
        n_kept += len(res.kept)
        if not chunk:
            break
    kept_w.close()
    rej_w.close()
    for k, step in enumerate(block):
        _dump_signatures(step, sigs[k], tmp / f"sig-{k}.bin")
    stats = {
        "index": task["index"],
        "kept": n_kept,
        "read": read_stats.to_dict(),
        "steps": [st.stats.to_dict() for st in lead],
        "lengths_before": before,
    }
    (tmp / "stats.json").write_text(json.dumps(stats, ensure_ascii=False))
    if delay := float(os.environ.get("ZIMO_TEST_SHARD_DELAY_S", "0")):
        time.sleep(delay)  # tests use this to kill a run between shards deterministically
    try:
        os.replace(tmp, out)  # the shard appears complete or not at all
    except OSError:  # another worker finished the same shard first (Ray retries)
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


# --- engines ----------------------------------------------------------------------------------


def _run_local(tasks: list[dict[str, Any]], workers: int, tick: Callable[[], None]) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            process_shard(t)
            tick()
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: workers start clean (no inherited threads or locks from the caller's process).
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        for fut in as_completed([pool.submit(process_shard, t) for t in tasks]):
            fut.result()
            tick()


def _run_ray(tasks: list[dict[str, Any]], workers: int, tick: Callable[[], None]) -> None:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "engine 'ray' needs Ray Data", "pip install 'ray[data]' or use --engine local"
        ) from e
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        ds = ray.data.from_items(
            [{"task": json.dumps(t)} for t in tasks], override_num_blocks=len(tasks)
        )
        done = ds.map(
            lambda row: {"index": process_shard(json.loads(row["task"]))["index"]},
            num_cpus=1,
        )
        for _ in done.iter_rows():
            tick()
    finally:
        if started:
            ray.shutdown()


# --- assembly ---------------------------------------------------------------------------------


def _select(block: list[GlobalStep], shard_dirs: list[Path]) -> dict[int, tuple[str, str, str]]:
    """Global index → (step, reason, kept id) for every record a global step drops (global
    formatters such as site_boilerplate also learn what to remove here)."""
    ids: list[str] = []
    for d in shard_dirs:
        ids.extend(pq.read_table(d / "kept.parquet", columns=["id"]).column("id").to_pylist())
    drops: dict[int, tuple[str, str, str]] = {}
    for k, step in enumerate(block):
        allsig: list[Any] = []
        for d in shard_dirs:
            allsig.extend(_load_signatures(step, d / f"sig-{k}.bin"))
        alive = [i for i in range(len(ids)) if i not in drops]
        items = [(i, ids[i], allsig[i]) for i in alive]
        chosen = step.select(items)
        step.stats.seen += len(items)
        step.stats.kept += len(items) - len(chosen)
        for i, (reason, kept_id) in chosen.items():
            drops[i] = (step.name, reason, kept_id)
            step.stats.dropped[reason] += 1
    return drops


class _Writer:
    """Append record batches to a Parquet file that appears (renamed) only when complete."""

    def __init__(self, path: Path, rejects: bool) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.rejects = rejects
        self.writer = pq.ParquetWriter(self.tmp, REJECT_SCHEMA if rejects else SCHEMA)
        self.rows = 0

    def write(self, recs: list[dict[str, Any]]) -> None:
        if recs:
            self.writer.write_table(records_table(recs, self.rejects))
            self.rows += len(recs)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


def _batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    """A shard's records in batches (bounded memory even for a shard of one huge file)."""
    pf = pq.ParquetFile(path)
    # Row group by row group: each is one chunk written by process_shard, so bounded in
    # characters as well as records.
    for i in range(pf.num_row_groups):
        table = pf.read_row_group(i)
        for batch in table.to_batches(max_chunksize=CHUNK_RECORDS):
            yield table_records(pa.Table.from_batches([batch]))
        del table


def _assemble(
    shard_dirs: list[Path],
    block: list[GlobalStep],
    tail: list[Step],
    drops: dict[int, tuple[str, str, str]],
    output_dir: Path,
    tick: Callable[[], None],
) -> dict[str, Any]:
    kept_w = _Writer(output_dir / "curated.parquet", rejects=False)
    rej_w = _Writer(output_dir / "rejects.parquet", rejects=True)
    by_name = {s.name: s for s in block}
    after: list[int] = []
    langs: Counter = Counter()
    origins: Counter = Counter()
    formats: Counter = Counter()
    licenses: Counter = Counter()
    clusters: Counter = Counter(kept for _, reason, kept in drops.values() if "duplicate" in reason)
    top = {kid for kid, _ in clusters.most_common(5)}
    cluster_examples: dict[str, dict[str, Any]] = {}
    tail_global = any(s.is_global for s in tail)
    pending: list[dict[str, Any]] = []
    gidx = 0
    transforms = [s for s in block if hasattr(s, "transform")]

    def finish(recs: list[dict[str, Any]]) -> None:
        res = run_steps(recs, tail) if tail else None
        kept = res.kept if res else recs
        if res:
            rej_w.write(res.rejected)
        for r in kept:
            after.append(len(record_text(r)))
            meta = r.get("meta") or {}
            langs[meta.get("lang") or "und"] += 1
            origins[meta.get("origin") or "unknown"] += 1
            formats[meta.get("format") or "unknown"] += 1
            licenses[meta.get("license") or "unspecified"] += 1
            if r["id"] in top:
                ex = cluster_examples.setdefault(r["id"], {"kept": None, "dups": []})
                ex["kept"] = record_text(r)[:EXAMPLE_CHARS]
        kept_w.write(kept)

    def assemble_batch(batch: list[dict[str, Any]]) -> None:
        nonlocal gidx
        survivors, dropped = [], []
        for rec in batch:
            hit = drops.get(gidx)
            gidx += 1
            if hit is None:
                for step in transforms:
                    rec = step.transform(rec)  # type: ignore[attr-defined]
                survivors.append(rec)
                continue
            step_name, reason, kept_id = hit
            rec["reject_step"], rec["reject_reason"] = step_name, reason
            example = {"id": rec["id"], "text": record_text(rec)[:EXAMPLE_CHARS]}
            if kept_id != rec["id"]:
                rec["meta"]["duplicate_of"] = example["duplicate_of"] = kept_id
            by_name[step_name].stats.add_example(reason, example)
            if kept_id in top:
                ex = cluster_examples.setdefault(kept_id, {"kept": None, "dups": []})
                if len(ex["dups"]) < 3:
                    ex["dups"].append(record_text(rec)[:EXAMPLE_CHARS])
            dropped.append(rec)
        rej_w.write(dropped)
        if tail_global:
            pending.extend(survivors)  # a dedup step after per-record steps needs everything
        else:
            finish(survivors)

    try:
        for d in shard_dirs:
            for batch in _batches(d / "rejects.parquet"):
                rej_w.write(batch)
            for batch in _batches(d / "kept.parquet"):
                assemble_batch(batch)
            tick()
        if tail_global:
            finish(pending)
    finally:
        kept_w.close()
        rej_w.close()
    sizes = Counter(1 + n for n in clusters.values())
    return {
        "kept": kept_w.rows,
        "rejected": rej_w.rows,
        "lengths_after": after,
        "langs": dict(langs.most_common()),
        "composition": {
            "origin": dict(origins.most_common()),
            "format": dict(formats.most_common()),
            "license": dict(licenses.most_common()),
        },
        "dedup_clusters": {
            "count": len(clusters),
            "size_histogram": {str(k): v for k, v in sorted(sizes.items())},
            "largest": [
                {"kept_id": kid, "size": 1 + clusters[kid], **cluster_examples.get(kid, {})}
                for kid, _ in clusters.most_common(5)
            ],
        },
    }


# --- entry point ------------------------------------------------------------------------------


def curate_path(
    input_dir: str | Path,
    output_dir: str | Path,
    cfg: CurateConfig | dict[str, Any] | None = None,
    engine: str = "local",
    *,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Curate every file under ``input_dir`` into ``output_dir``; returns the report's stats.

    Writes ``curated.parquet``, ``rejects.parquet``, ``report.json`` and ``report.html``.
    Rerunning after an interruption resumes from the shards already done.
    """
    t0 = time.time()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.exists():
        raise DataError(
            f"input {str(input_dir)!r} does not exist", "pass an existing folder or file"
        )
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    if cfg is None:
        cfg = CurateConfig()
    elif isinstance(cfg, dict):
        cfg = CurateConfig.model_validate(cfg)
    steps = build_steps(cfg)  # validates optional dependencies (opencc, presidio) up front
    lead, block, tail = _split_steps(steps)
    workers = workers or cfg.workers or cores()

    output_dir.mkdir(parents=True, exist_ok=True)
    work = output_dir / WORK_DIR
    shards = plan_shards(input_dir, cfg)
    plan = {"input": str(input_dir.resolve()), "config": _config_hash(cfg), "shards": shards}
    plan_path = work / "plan.json"
    if plan_path.exists():
        try:
            old = json.loads(plan_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != plan:  # input or config changed: old shard outputs do not apply
            shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    if not plan_path.exists():
        tmp = work / "plan.json.tmp"
        tmp.write_text(json.dumps(plan))
        os.replace(tmp, plan_path)
    for stale in work.glob("shard-*.tmp-*"):  # leftovers of a killed run
        shutil.rmtree(stale, ignore_errors=True)

    root = input_dir if input_dir.is_dir() else input_dir.parent
    shard_dirs = [work / f"shard-{i:05d}" for i in range(len(shards))]
    todo = [
        {
            "index": i,
            "files": files,
            "root": str(root),
            "out": str(shard_dirs[i]),
            "cfg": cfg.model_dump(),
        }
        for i, files in enumerate(shards)
        if not (shard_dirs[i] / "stats.json").exists()
    ]
    resumed = len(shards) - len(todo)

    with _progress(progress) as bar:
        task = bar.add_task("curate: shards", total=len(shards), completed=resumed)
        tick = lambda: bar.advance(task)  # noqa: E731
        if engine == "ray":
            _run_ray(todo, workers, tick)
        else:
            _run_local(todo, workers, tick)
        drops = _select(block, shard_dirs)
        atask = bar.add_task("curate: assemble", total=len(shards))
        summary = _assemble(shard_dirs, block, tail, drops, output_dir, lambda: bar.advance(atask))

    shard_stats = [json.loads((d / "stats.json").read_text()) for d in shard_dirs]
    read = StepStats("read", "reader")
    lead_stats = [StepStats(s.name, s.kind) for s in lead]
    before: list[int] = []
    for st in shard_stats:
        read.merge(StepStats.from_dict(st["read"]))
        for agg, s in zip(lead_stats, st["steps"], strict=True):
            agg.merge(StepStats.from_dict(s))
        before.extend(st["lengths_before"])
    all_stats = [read, *lead_stats, *(s.stats for s in block), *(s.stats for s in tail)]
    stats = {
        "input": str(input_dir),
        "output": str(output_dir),
        "engine": engine,
        "workers": workers,
        "files": read.seen,
        "shards": len(shards),
        "resumed_shards": resumed,
        "records_read": read.kept,
        "quarantined": sum(read.dropped.values()),
        "kept": summary["kept"],
        "rejected": summary["rejected"],
        "seconds": round(time.time() - t0, 2),
        "steps": [s.to_dict() for s in all_stats],
        "langs": summary["langs"],
        "composition": summary["composition"],
        "pii": next((s.to_dict()["extra"] for s in all_stats if s.name == "pii"), {}),
        "dedup_clusters": summary["dedup_clusters"],
        "lengths": {"before": before, "after": summary["lengths_after"]},
        "config": cfg.model_dump(),
    }
    from zimo.data.report import write_curate_report

    write_curate_report(output_dir, stats)
    return {k: v for k, v in stats.items() if k != "lengths"}


class _NullProgress:
    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def advance(self, *a: Any, **k: Any) -> None:
        return None


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _NullProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),  # stdout carries the JSON summary scripts parse
    )
