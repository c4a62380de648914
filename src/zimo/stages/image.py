"""The stages of an image project: ingest (decode, check, EXIF-free pixels, dedup, report),
split (stratified by label), train (the embedded default or a local CLIP), eval (against the
same-budget CNN and, with a CLIP, its zero-shot labels; HTML report)."""

from __future__ import annotations

import io
import json

import numpy as np

from zimo.errors import DataError
from zimo.fileio import write_bytes_atomic, write_json_atomic
from zimo.image.config import image_config
from zimo.stages.base import StageContext, StageResult

PIXELS = "images.npy"
RECORDS = "images.json"
META = "ingest.json"


def _save_npy(path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    write_bytes_atomic(path, buf.getvalue())


def _progress(ctx: StageContext, total: int, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn(f"  {what}"), BarColumn(), MofNCompleteColumn(),
                   console=ctx.console, transient=True)  # fmt: skip
    return bar, bar.add_task(what, total=total)


def run_ingest(ctx: StageContext) -> StageResult:
    from zimo.image.curate import curate_images
    from zimo.image.ingest import list_sources
    from zimo.image.report import write_curate_report

    cfg = ctx.project.config
    icfg = image_config(ctx.project)
    sources, rejects = list_sources(ctx.project.data_path(), icfg, cfg.data.label_field)
    if not sources:
        raise DataError(f"no images found under {cfg.data.path!r}",
                        "use one folder per label, or a .csv/.jsonl manifest of path,label")  # fmt: skip
    bar, task = _progress(ctx, len(sources), "decoding images")
    with bar:
        cur = curate_images(sources, icfg, cfg.labels, tick=lambda n: bar.advance(task, n))
    cur.rejects = rejects + cur.rejects
    _save_npy(ctx.work / PIXELS, cur.pixels)
    write_json_atomic(ctx.work / RECORDS, cur.records)
    write_json_atomic(ctx.work / META, {"labels": cur.labels, "image_size": cur.size})
    with open(ctx.work / "rejects.jsonl", "w", encoding="utf-8") as f:
        for r in cur.rejects:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    reasons: dict[str, int] = {}
    for r in cur.rejects:
        key = r["reason"].split(" (")[0].split(" of ")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if cur.rejects:
        ctx.console.print(f"  [yellow]quarantined {len(cur.rejects)} file(s)[/yellow]: "
                          + "; ".join(f"{k} ×{v}" for k, v in reasons.items()))  # fmt: skip
    write_curate_report(ctx.work / "report.html", cur, icfg.grid_per_label)
    ctx.console.print(
        f"  curation report: {ctx.workspace.artifact_dir('ingest', ctx.artifact) / 'report.html'}"
    )
    return StageResult(rows={"images": len(cur.records), "rejects": len(cur.rejects)},
                       summary={"labels": cur.labels, "image_size": cur.size,
                                "reject_reasons": reasons})  # fmt: skip


def load_ingest(folder) -> tuple[np.ndarray, list[dict], dict]:
    pixels = np.load(folder / PIXELS)
    records = json.loads((folder / RECORDS).read_text(encoding="utf-8"))
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    return pixels, records, meta


def run_split(ctx: StageContext) -> StageResult:
    """Index lists per split, stratified by label (captioned-only rows spread at random)."""
    _, records, _ = load_ingest(ctx.input("ingest"))
    scfg = ctx.project.config.split
    rng = np.random.default_rng(scfg.seed)
    groups: dict[str, list[int]] = {}
    for r in records:
        groups.setdefault(str(r["label"]) if scfg.stratify else "", []).append(r["id"])
    parts: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for ids in groups.values():
        ids = list(rng.permutation(ids))
        n = len(ids)
        n_test = max(1, round(scfg.test * n)) if n >= 3 else 0
        n_dev = (max(1, round(scfg.dev * n)) if scfg.dev else 0) if n - n_test >= 3 else 0
        parts["test"] += ids[:n_test]
        parts["dev"] += ids[n_test : n_test + n_dev]
        parts["train"] += ids[n_test + n_dev :]
    parts = {k: sorted(int(i) for i in v) for k, v in parts.items()}
    if len(parts["train"]) < 2 or not parts["test"]:
        raise DataError(f"the split left {len(parts['train'])} train / {len(parts['test'])} test "
                        "images", "add images (at least 3 per label)")  # fmt: skip
    write_json_atomic(ctx.work / "split.json", parts)
    return StageResult(rows={k: len(v) for k, v in parts.items()})


def read_split(folder) -> dict[str, list[int]]:
    return json.loads((folder / "split.json").read_text(encoding="utf-8"))


def run_train(ctx: StageContext, tcfg) -> StageResult:
    from zimo.image.builder import train_submodel
    from zimo.stages.train import _progress_bar, write_analytic_meta

    pixels, records, meta = load_ingest(ctx.input("ingest"))
    split = read_split(ctx.input("split"))
    icfg = image_config(ctx.project)
    with _progress_bar(ctx, unit="img/s", rate_key="images_per_s") as progress:
        summary = train_submodel(pixels, records, split["train"], meta, icfg, tcfg, ctx.work,
                                 progress=progress)  # fmt: skip
    write_analytic_meta(ctx, tcfg, task="image", kind="image", labels=meta["labels"],
                        image_size=meta["image_size"])  # fmt: skip
    return StageResult(rows={"train_images": summary["train_images"]}, summary=summary)


def run_eval(ctx: StageContext) -> StageResult:
    from zimo.image.evaluate import evaluate_image

    pixels, records, meta = load_ingest(ctx.input("ingest"))
    split = read_split(ctx.input("split"))
    trains = {name: ctx.input(name) for name in ctx.inputs if name.startswith("train")}
    result = evaluate_image(ctx.project, pixels, records, split, meta, trains, ctx.work,
                            console=ctx.console)  # fmt: skip
    ctx.console.print(
        f"  report: {ctx.workspace.artifact_dir('eval', ctx.artifact) / 'report.html'}"
    )
    return StageResult(rows={"test_images": len(split["test"])},
                       summary={"headline": result["headline"]})  # fmt: skip


def test_pixels(train_dir, split_dir) -> np.ndarray | None:
    """The test images of the build a train artifact came from (for export checks)."""
    import json as _json

    manifest = _json.loads((train_dir / "manifest.json").read_text(encoding="utf-8"))
    ingest_id = manifest.get("inputs", {}).get("ingest")
    if not ingest_id:
        return None
    ingest_dir = train_dir.parent.parent / "ingest" / ingest_id
    if not (ingest_dir / PIXELS).is_file():
        return None
    pixels = np.load(ingest_dir / PIXELS, mmap_mode="r")
    return np.asarray(pixels[read_split(split_dir)["test"]])
