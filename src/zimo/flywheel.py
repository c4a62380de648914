"""The flywheel: the big model's logged answers teach the cheap tiers.

``zimo flywheel <project>`` reads the project's request log for cascade answers that went to
the big tier (and shadow calls), turns each into a labelled training row (origin ``teacher``,
the text as logged — redacted when ``serve.log.redact`` is on), appends the new ones to
``.zimo/flywheel/rows.jsonl``, rebuilds (the rows join the train split only, never dev or
test, so the evaluation stays on human labels; a project with a ``guard:`` caps their share of
the training mix), recalibrates the cascade and records the round. A running gateway picks the
retrained tiers and the new thresholds up without a restart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from zimo.errors import ZimoError
from zimo.fileio import read_json_optional, write_json_atomic, write_jsonl_atomic
from zimo.teacher_rows import raw_rows
from zimo.workspace import Layout


def collect(project, log_path: Path | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """New teacher rows from the request log since the last round, and the new watermark."""
    from zimo.logs.requests import default_path, query
    from zimo.route.live import cascade_tiers

    path = Path(log_path) if log_path else default_path(project.root)
    if not path.is_file():
        raise ZimoError(f"no request log at {path}",
                        f"serve the project first (`zimo serve {project.root}`) or pass --log")  # fmt: skip
    big = cascade_tiers(project)[-1]
    state = read_json_optional(Layout(project.root).flywheel_state)
    since = state.get("watermark")
    labels = set(project.config.labels or [])
    seen = {r["text"] for r in raw_rows(project.root)}
    new = []
    last = since
    for row in query(path, model=project.name, since=since):
        last = max(last or row["time"], row["time"])
        if since and row["time"] <= since:
            continue
        if row.get("status") != 200 or row.get("answered_by") != big.model:
            continue
        if row.get("endpoint") not in ("chat", "shadow"):
            continue
        route = row.get("route") or {}
        if isinstance(route, dict) and route.get("degraded"):
            continue
        text = _user_text(row.get("messages"))
        label = (row.get("response") or "").strip()
        if not text or label not in labels or text in seen:
            continue
        seen.add(text)
        new.append({"text": text, "label": label, "teacher": big.model,
                    "request_id": row.get("id"), "time": row["time"]})  # fmt: skip
    return new, last


def _user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else None


def run_flywheel(project_dir: str | Path, *, log_path: Path | None = None,
                 upstream_url: str | None = None, console=None) -> dict[str, Any]:  # fmt: skip
    """One round: collect, retrain, recalibrate. Raises when there is nothing new."""
    from rich.console import Console

    from zimo.build import build
    from zimo.config import load_project
    from zimo.route.live import UpstreamAnswers, fit_live_cascade

    console = console or Console(stderr=True)
    project = load_project(project_dir)
    if not project.config.is_cascade():
        raise ZimoError("the flywheel needs `route: {mode: cascade, ...}` in zimo.yaml",
                        "see docs/routing.md")  # fmt: skip
    t0 = time.perf_counter()
    new, watermark = collect(project, log_path)
    if not new:
        raise ZimoError("no new logged answers of the big tier since the last flywheel round; "
                        "nothing changed", "serve more traffic first")  # fmt: skip
    rows = raw_rows(project.root) + new
    write_jsonl_atomic(Layout(project.root).flywheel_rows, rows)
    cache = UpstreamAnswers(project.root)  # the calibration will not ask for these again
    for r in new:
        cache.add(r["text"], r["label"])
    console.print(f"  flywheel: {len(new)} new teacher row(s), {len(rows)} in all; retraining")
    report = build(project.root, console=console)
    cal = fit_live_cascade(project, upstream_url=upstream_url, console=console)
    state = read_json_optional(Layout(project.root).flywheel_state)
    rounds = state.get("rounds", [])
    rounds.append({
        "round": len(rounds) + 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "new_rows": len(new),
        "rows": len(rows),
        "retrained": [s for s in report["ran"] if s.startswith("train")],
        "thresholds": cal["thresholds"],
        "dev": cal.get("dev"),
        "seconds": round(time.perf_counter() - t0, 1),
    })  # fmt: skip
    write_json_atomic(
        Layout(project.root).flywheel_state, {"watermark": watermark, "rounds": rounds}
    )
    return rounds[-1]
