"""What the dashboard shows, read from workspaces, the request log and the key store.

Plain functions returning JSON-able dicts, so scripts get the same numbers as the pages.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zimo.dataset_io import read_records
from zimo.fileio import read_jsonl
from zimo.workspace import Layout


def project_name(root: Path) -> str:
    try:
        from zimo.config import load_project

        return load_project(root).name
    except Exception:  # noqa: BLE001 - a broken project still shows, by folder name
        return Path(root).name


def _status(root: Path) -> dict[str, Any]:
    from zimo.build import status

    return status(root)


def _artifact(root: Path, stage: str) -> Path | None:
    from zimo.stages.dag import artifact_path

    try:
        return artifact_path(root, stage)
    except Exception:  # noqa: BLE001
        return None


def project_summary(root: Path) -> dict[str, Any]:
    """Stages with state and last run, the DAG edges, and the eval headline."""
    try:
        st = _status(root)
    except Exception as e:  # noqa: BLE001 - show the config error instead of failing the page
        return {"name": Path(root).name, "root": str(root), "error": getattr(e, "message", str(e))}
    from zimo.config import load_project
    from zimo.stages.dag import stages_for

    dag = stages_for(load_project(root))
    edges = [[d, s.name] for s in dag for d in s.deps]
    for s in st["stages"]:
        last = s.get("last_run") or {}
        if last.get("state") == "running":
            s["state_ui"] = "running"
        elif last.get("state") in ("failed", "interrupted") and s["state"] != "fresh":
            s["state_ui"] = "failed"
        else:
            s["state_ui"] = s["state"]
    return {
        "name": st["project"],
        "root": str(root),
        "task": st["task"],
        "stages": st["stages"],
        "edges": edges,
        "metrics": st.get("metrics", {}),
        "has_report": eval_report(root) is not None,
    }


def eval_report(root: Path) -> Path | None:
    d = _artifact(root, "eval")
    return d / "report.html" if d and (d / "report.html").is_file() else None


def curate_report(root: Path) -> Path | None:
    d = _artifact(root, "curate")
    return d / "report.html" if d and (d / "report.html").is_file() else None


def dataset_summary(root: Path) -> dict[str, Any]:
    """Rows by origin per split, rejects with reasons (ingest and curate), curate step stats."""
    out: dict[str, Any] = {"splits": {}, "rejects": [], "reject_reasons": {}, "curate": None}
    split = _artifact(root, "split")
    if split:
        for name in ("train", "dev", "test"):
            recs = read_records(split / f"{name}.parquet")
            origins = Counter((r.get("meta") or {}).get("origin", "unknown") for r in recs)
            labels = Counter(str(r.get("label")) for r in recs if r.get("label") is not None)
            out["splits"][name] = {"rows": len(recs), "origin": origins, "labels": labels}
    reasons: Counter = Counter()
    for stage in ("ingest", "curate"):
        d = _artifact(root, stage)
        if not d:
            continue
        for r in read_records(d / "rejects.parquet"):
            reason = str(r.get("reject_reason") or "")
            reasons[f"{stage}: {reason.split(' (')[0]}"] += 1
            if len(out["rejects"]) < 200:
                out["rejects"].append(
                    {
                        "stage": stage,
                        "reason": reason,
                        "text": (r.get("text") or "")[:300],
                        "source": (r.get("meta") or {}).get("source"),
                    }
                )
        if stage == "curate" and (d / "report.json").is_file():
            rep = json.loads((d / "report.json").read_text(encoding="utf-8"))
            out["curate"] = [
                {k: s.get(k) for k in ("name", "kind", "seen", "kept", "changed", "dropped")}
                for s in rep.get("steps", [])
            ]
    out["reject_reasons"] = dict(reasons.most_common())
    out["has_curate_report"] = curate_report(root) is not None
    return out


def samples(root: Path, split: str, q: str, limit: int) -> dict[str, Any]:
    """Rows of a split whose text (or label) contains ``q`` (case-insensitive)."""
    d = _artifact(root, "split")
    if split not in ("train", "dev", "test") or d is None:
        return {"rows": [], "total": 0}
    recs = read_records(d / f"{split}.parquet")
    ql = q.strip().lower()
    hits = []
    for r in recs:
        text = r.get("text") or "\n".join(m["content"] for m in (r.get("messages") or []))
        if ql and ql not in text.lower() and ql != str(r.get("label") or "").lower():
            continue
        hits.append(
            {
                "id": r.get("id"),
                "text": text[:1000],
                "label": r.get("label"),
                "origin": (r.get("meta") or {}).get("origin"),
            }
        )
    return {"rows": hits[:limit], "total": len(hits)}


def runs(root: Path) -> dict[str, Any]:
    from zimo.workspace import Workspace

    ws = Workspace(root)
    rows = ws.registry.runs(limit=200)
    for r in rows:
        try:
            r["summary"] = json.loads(r["summary"]) if r.get("summary") else None
        except json.JSONDecodeError:
            pass
    return {
        "runs": rows,
        "train_log": train_log(root)[-2000:],
        "has_report": bool(eval_report(root)),
    }


def train_log(root: Path) -> list[dict[str, Any]]:
    """The training log of the run in progress (work folder), else of the newest artifact."""
    candidates = []
    work = Layout(root).work
    if work.is_dir():
        candidates += [p / "train_log.jsonl" for p in work.glob("train-*")]
    d = _artifact(root, "train")
    if d:
        candidates.append(d / "train_log.jsonl")
    candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        return []
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return read_jsonl(newest)  # a line being written right now is skipped


def models_summary(st: Any, projects: list[Path]) -> dict[str, Any]:
    """Served sub-models with their project's eval metrics and export files."""
    served = {}
    if st is not None and getattr(st, "registry", None) is not None:
        for name in st.registry.names():
            sub = st.registry.get(name)
            meta = dict(getattr(sub, "metadata", {}) or {})
            served[name] = {
                "name": name,
                "task": meta.get("task", "chat"),
                "labels": meta.get("labels"),
                "base": meta.get("base"),
                "adapter_dir": getattr(sub, "adapter_dir", None),
                "source": st.registry.sources.get(name),
            }
    for root in projects:
        name = project_name(root)
        entry = served.get(name)
        if entry is None:
            continue
        try:
            entry["metrics"] = _status(root).get("metrics", {}).get("eval", {})
        except Exception:  # noqa: BLE001
            entry["metrics"] = {}
        exports = []
        exp_root = Layout(root).exports
        for p in sorted(exp_root.rglob("*")) if exp_root.is_dir() else []:
            if (
                p.is_file()
                and p.suffix in (".gguf", ".safetensors", ".json")
                or p.name == "Modelfile"
            ):
                exports.append({"path": str(p.relative_to(root)), "bytes": p.stat().st_size})
        entry["exports"] = exports[:50]
    upstream = []
    if st is not None and getattr(st, "upstream", None) is not None:
        upstream = list(getattr(st.settings.upstream, "models", None) or [])
    return {"models": list(served.values()), "upstream": upstream}


def _parse_time(s: str) -> float:
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _with_prompt(row: dict[str, Any]) -> dict[str, Any]:
    """A log row whose ``prompt`` is filled for chat requests too (they log ``messages``):
    the last user message, which is what the dashboard's prompt column shows."""
    if row.get("prompt") or not isinstance(row.get("messages"), list):
        return row
    for m in reversed(row["messages"]):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
            return {**row, "prompt": content if isinstance(content, str) else None}
    return row


def gateway_summary(st: Any, hours: float) -> dict[str, Any]:
    """Traffic per model over time, the share each tier answered, cost saved, latency."""
    log = getattr(st, "request_log", None) if st is not None else None
    if log is None:
        return {"enabled": False}
    since = time.time() - hours * 3600
    rows = log.query(since=since)
    bucket_s = 3600 if hours > 6 else 300
    series: dict[str, Counter] = defaultdict(Counter)
    answered: Counter = Counter()
    lat: dict[str, list[float]] = defaultdict(list)
    cost = 0.0
    upstream_cost_if_all = 0.0
    escalated = errors = 0
    up_price = _upstream_price(st)
    for r in rows:
        t = _parse_time(r["time"])
        b = int(t // bucket_s * bucket_s)
        series[r.get("model") or "?"][b] += 1
        by = r.get("answered_by") or "?"
        answered[by] += 1
        if r.get("latency_ms") is not None:
            lat[by].append(float(r["latency_ms"]))
        cost += float(r.get("cost") or 0.0)
        pt, ct = int(r.get("prompt_tokens") or 0), int(r.get("completion_tokens") or 0)
        if up_price:
            upstream_cost_if_all += pt / 1000 * up_price[0] + ct / 1000 * up_price[1]
        escalated += int(bool(r.get("escalated")))
        status = r.get("status") or 0
        errors += int(not (200 <= status < 300))
    total = len(rows)
    pct = {
        m: {
            "p50": statistics.median(v),
            "p95": sorted(v)[max(0, int(len(v) * 0.95) - 1)],
            "n": len(v),
        }
        for m, v in lat.items()
        if v
    }
    recent = log.query(limit=30, newest_first=True)
    return {
        "enabled": True,
        "hours": hours,
        "bucket_s": bucket_s,
        "total": total,
        "errors": errors,
        "escalated": escalated,
        "series": {m: sorted(c.items()) for m, c in series.items()},
        "answered_by": dict(answered.most_common()),
        "latency_ms": pct,
        "cost": cost,
        "cost_if_all_upstream": upstream_cost_if_all if up_price else None,
        "cost_saved": (upstream_cost_if_all - cost) if up_price else None,
        "upstream_price_per_1k": up_price,
        "recent": [
            {
                k: r.get(k)
                for k in (
                    "time",
                    "model",
                    "answered_by",
                    "escalated",
                    "status",
                    "latency_ms",
                    "cost",
                    "prompt",
                    "response",
                    "redacted",
                )
            }
            for r in map(_with_prompt, recent)
        ],
        "now": datetime.now(timezone.utc).isoformat(),
    }


def _upstream_price(st: Any) -> tuple[float, float] | None:
    """(input, output) price per 1k tokens of the upstream model, if configured."""
    up = getattr(getattr(st, "settings", None), "upstream", None)
    price = getattr(up, "price", None)
    if price is None:
        return None
    pin = getattr(price, "input_per_1k", None) or getattr(price, "prompt_per_1k", None)
    pout = getattr(price, "output_per_1k", None) or getattr(price, "completion_per_1k", None)
    if pin is None and pout is None:
        return None
    return float(pin or 0.0), float(pout or 0.0)


def cascade_summary(st: Any, projects: list[Path], hours: float) -> dict[str, Any]:
    """Per cascaded project: the share each tier answered, cost per 1k requests against sending
    everything to the big tier, shadow agreement over time, and the flywheel's rounds."""
    from zimo.fileio import read_json_optional

    log = getattr(st, "request_log", None) if st is not None else None
    out: dict[str, Any] = {"projects": []}
    since = time.time() - hours * 3600
    for root in projects:
        cascade = read_json_optional(Layout(root).cascade)
        if not cascade:
            continue
        name = project_name(root)
        rows = log.query(model=name, since=since) if log is not None else []
        tiers: Counter = Counter()
        cost = big_cost = 0.0
        big_n = degraded = 0
        reasons: Counter = Counter()  # why the big tier did not answer: budget | upstream
        shadow: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            route = r.get("route") or {}
            if r.get("endpoint") == "shadow":
                agree = (r.get("params") or {}).get("agree")
                b = int(_parse_time(r["time"]) // 3600 * 3600)
                shadow[b][0] += int(bool(agree))
                shadow[b][1] += 1
                continue
            if r.get("status") != 200 or not isinstance(route, dict) or "tier" not in route:
                continue
            tiers[route["tier"]] += 1
            cost += float(r.get("cost") or 0.0)
            degraded += int(bool(route.get("degraded")))
            if route.get("degraded"):
                reasons[str(route.get("reason") or "upstream")] += 1
            last = (route.get("cascade") or [{}])[-1]
            if last.get("tier") == cascade["tiers"][-1] and last.get("answered"):
                big_n += 1
                big_cost += float(last.get("cost_usd") or 0.0)
        n = sum(tiers.values())
        per_big = big_cost / big_n if big_n else None  # what one big-tier answer costs here
        all_big = per_big * n if per_big is not None else None
        out["projects"].append({
            "project": name,
            "tiers": cascade["tiers"],
            # A hand-written cascade file may hold ±Infinity, which JSON cannot carry.
            "thresholds": [t if isinstance(t, int | float) and math.isfinite(t) else None
                           for t in cascade["thresholds"]],  # fmt: skip
            "requests": n,
            "share": {t: (tiers[t] / n if n else 0.0) for t in cascade["tiers"]},
            "degraded": degraded,
            "degraded_by_reason": dict(reasons),
            "cost_per_1k": cost / n * 1000 if n else None,
            "all_big_cost_per_1k": per_big * 1000 if per_big is not None else None,
            "cost_vs_all_big": cost / all_big if all_big else None,
            "shadow": [{"time": datetime.fromtimestamp(b, timezone.utc).isoformat(),
                        "agreement": a / k, "n": k} for b, (a, k) in sorted(shadow.items())],
            "flywheel": read_json_optional(Layout(root).flywheel_state).get("rounds", []),
        })  # fmt: skip
    return out
