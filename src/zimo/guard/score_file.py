"""Score a JSONL/Parquet dataset for machine-written text; write the rows back plus a report.

Every input field is kept; each row gains ``guard_score`` (higher = more likely written by a
model), ``guard_flag`` (score over the calibrated threshold, never set for texts below
``min_tokens``), ``guard_trusted`` and ``guard_model``, so users can join the scores back.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from zimo.errors import DataError
from zimo.guard.config import GuardConfig
from zimo.guard.records import origin_label, record_text

GUARD_FIELDS = ("guard_score", "guard_flag", "guard_trusted", "guard_model")


def score_records(
    records: list[dict],
    config: GuardConfig | None = None,
    text_field: str = "text",
    detector=None,
    show_progress: bool = True,
) -> tuple[list[dict], dict[str, Any]]:
    """Add the guard fields to copies of ``records``; returns ``(rows, summary)``."""
    from zimo.guard.detect import Detector

    det = detector or Detector(config)
    texts = [record_text(r, text_field) for r in records]
    results = _score_with_progress(det, texts, show_progress)
    rows = []
    for r, res in zip(records, results, strict=True):
        rows.append(
            dict(r)
            | {
                "guard_score": None if math.isnan(res.score) else round(res.score, 6),
                "guard_flag": res.flag,
                "guard_trusted": res.trusted,
                "guard_model": res.model,
            }
        )
    return rows, summarise(rows, texts, det)


def _score_with_progress(det, texts: list[str], show: bool):
    if not show or len(texts) < 4:
        return det.score(texts)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("guard: scoring", total=len(texts))
        return det.score(texts, progress=lambda n: bar.advance(task, n))


def summarise(rows: list[dict], texts: list[str], det) -> dict[str, Any]:
    """Counts, flagged share by origin, thresholds and examples (for JSON/HTML reports)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(origin_label(r), []).append(r)
    by_origin = {}
    for g, rs in sorted(groups.items()):
        trusted = [r for r in rs if r["guard_trusted"]]
        by_origin[g] = {
            "n": len(rs),
            "trusted": len(trusted),
            "flagged": sum(r["guard_flag"] for r in rs),
            "flagged_share_of_trusted": (
                sum(r["guard_flag"] for r in trusted) / len(trusted) if trusted else None
            ),
        }
    order = sorted(
        (i for i, r in enumerate(rows) if r["guard_score"] is not None),
        key=lambda i: -rows[i]["guard_score"],
    )
    flagged = [i for i in order if rows[i]["guard_flag"]]
    unflagged = [i for i in order if not rows[i]["guard_flag"] and rows[i]["guard_trusted"]]

    def ex(i: int) -> dict:
        return {
            "id": rows[i].get("id", i),
            "origin": origin_label(rows[i]),
            "guard_score": rows[i]["guard_score"],
            "text": texts[i][:300],
        }

    n = len(rows)
    n_trusted = sum(r["guard_trusted"] for r in rows)
    # Records whose scorer has no calibration (English today): a score, but no verdict.
    unjudged = Counter(r["guard_model"] for r in rows if r["guard_model"] in det.uncalibrated)
    return {
        "n": n,
        "n_trusted": n_trusted,
        "unjudged_by_model": dict(unjudged),
        "n_flagged": len(flagged),
        "flagged_share_of_trusted": len(flagged) / n_trusted if n_trusted else None,
        "by_origin": by_origin,
        "models": dict(Counter(r["guard_model"] for r in rows)),
        "detector": det.describe(),
        "examples": {
            "most_machine_like_flagged": [ex(i) for i in flagged[:5]],
            "least_machine_like": [ex(i) for i in unflagged[::-1][:5]],
            "borderline_unflagged": [ex(i) for i in unflagged[:5]],
        },
    }


# --------------------------------------------------------------------------- files


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: Path) -> tuple[list[dict], list[dict]]:
    """Rows of a JSONL file, and the lines that could not be used (line number + reason)."""
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append({"line": n, "reason": f"invalid JSON: {e.msg}"})
                continue
            if not isinstance(obj, dict):
                bad.append({"line": n, "reason": "not a JSON object"})
                continue
            rows.append(obj)
    return rows, bad


def resolve_input(path: Path) -> Path:
    """A file as given; for a project folder, its newest curated Parquet."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(
            path.glob(".zimo/**/curated.parquet"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        if found:
            return found[0]
        raise DataError(
            f"{path} has no curated dataset (.zimo/**/curated.parquet)",
            f"run `zimo curate {path}` first, or pass a .jsonl/.parquet file",
        )
    raise DataError(f"{path} does not exist", "pass a .jsonl or .parquet file or a project folder")


def score_file(
    path: Path,
    output: Path | None = None,
    config: GuardConfig | None = None,
    text_field: str = "text",
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score a JSONL/Parquet file (or a project's curated data) into ``output``.

    Writes ``<stem>.guard.<ext>`` (same format, all fields kept, guard fields added),
    ``guard_report.json`` and ``guard_report.html``; returns the summary.
    """
    src = resolve_input(Path(path))
    out_dir = Path(output) if output else src.parent / "guard"
    suffix = src.suffix.lower()
    bad: list[dict] = []
    if suffix in (".jsonl", ".ndjson"):
        records, bad = read_jsonl(src)
        table = None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(src)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"cannot read {src} as Parquet ({e})", "check the file") from e
        records = table.to_pylist()
    else:
        raise DataError(f"cannot score {src.name}: unsupported format", "use .jsonl or .parquet")
    if not records:
        raise DataError(f"{src} has no records to score", "check the file")
    if not any(record_text(r, text_field) for r in records):
        raise DataError(
            f"no record in {src.name} has a `{text_field}` field or chat messages",
            "name the text column with --text-field",
        )
    rows, summary = score_records(records, config, text_field, show_progress=show_progress)
    summary["input"] = str(src)
    summary["skipped_lines"] = bad
    out_data = out_dir / f"{src.stem}.guard{suffix}"
    if table is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Append columns to the original table so every input column keeps its exact type.
        new = table
        for name, typ in zip(
            GUARD_FIELDS, (pa.float64(), pa.bool_(), pa.bool_(), pa.string()), strict=True
        ):
            if name in new.column_names:
                new = new.drop_columns([name])
            new = new.append_column(name, pa.array([r[name] for r in rows], typ))
        _atomic_write(out_data, lambda tmp: pq.write_table(new, tmp))
    else:

        def write_jsonl(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")

        _atomic_write(out_data, write_jsonl)
    summary["output"] = str(out_data)
    _atomic_write(
        out_dir / "guard_report.json",
        lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1, ensure_ascii=False)),
    )
    from zimo.guard.report import write_html_report

    write_html_report(out_dir / "guard_report.html", rows, summary)
    summary["report"] = str(out_dir / "guard_report.html")
    return summary
