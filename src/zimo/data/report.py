"""The curate report: ``report.json`` (numbers) and ``report.html`` (the same, with plots and a
datasheet). Plots are matplotlib PNGs inlined as base64, so the HTML is one portable file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from zimo.data.pipeline import record_text
from zimo.fileio import write_text_atomic


def _hist(values: list[int], bins: np.ndarray) -> dict[str, Any]:
    counts, edges = np.histogram(np.asarray(values, dtype=np.int64), bins=bins)
    return {"edges": edges.astype(int).tolist(), "counts": counts.tolist()}


def _length_summary(before: list[int], after: list[int]) -> dict[str, Any]:
    top = max([1, *before, *after])
    bins = np.unique(np.concatenate(([0], np.logspace(0, np.log10(top + 1), 30).astype(int))))

    def desc(v: list[int]) -> dict[str, float]:
        if not v:
            return {"n": 0}
        a = np.asarray(v)
        return {
            "n": len(v),
            "mean": round(float(a.mean()), 1),
            "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)),
            "max": int(a.max()),
        }

    return {
        "before": {**desc(before), **_hist(before, bins)},
        "after": {**desc(after), **_hist(after, bins)},
    }


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    lengths = report["lengths"]
    fig, ax = plt.subplots(figsize=(7, 3))
    for key, color in (("before", "#bbb"), ("after", "#2a6")):
        h = lengths[key]
        if h.get("n"):
            edges = np.asarray(h["edges"])
            ax.stairs(
                h["counts"],
                np.maximum(edges, 1),
                label=f"{key} (n={h['n']})",
                color=color,
                fill=key == "before",
            )
    ax.set_xscale("log")
    ax.set_xlabel("characters per record")
    ax.set_ylabel("records")
    ax.legend()
    out["lengths"] = _png(fig)

    steps = [s for s in report["steps"] if s["seen"]]
    if steps:
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(steps) + 1))
        names = [s["name"] for s in steps][::-1]
        ax.barh(names, [s["kept"] for s in steps][::-1], color="#2a6", label="kept")
        ax.barh(
            names,
            [s["dropped"] for s in steps][::-1],
            left=[s["kept"] for s in steps][::-1],
            color="#c44",
            label="dropped",
        )
        ax.set_xlabel("records")
        ax.legend(loc="lower right")
        out["steps"] = _png(fig)

    for key, title in (("langs", "language"), ("pii", "PII type")):
        data = report.get(key) or {}
        if data:
            fig, ax = plt.subplots(figsize=(6, 2.5))
            ax.bar(list(data)[:12], list(data.values())[:12], color="#36a")
            ax.set_ylabel("count")
            ax.set_title(title)
            out[key] = _png(fig)
    sizes = (report.get("dedup_clusters") or {}).get("size_histogram") or {}
    if sizes:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.bar([str(k) for k in sizes], list(sizes.values()), color="#a63")
        ax.set_xlabel("duplicate cluster size (records)")
        ax.set_ylabel("clusters")
        out["clusters"] = _png(fig)
    return out


def _datasheet(report: dict[str, Any]) -> dict[str, Any]:
    """Datasheet for the curated dataset (after Gebru et al.), filled from the run."""
    steps = [s["name"] for s in report["steps"] if s["name"] != "read"]
    return {
        "what": "records curated from the files under the input folder",
        "input": report.get("input"),
        "records": report.get("kept"),
        "rejected_records": report.get("rejected"),
        "languages": report.get("langs"),
        "composition": report.get("composition"),
        "processing": steps,
        "pii_handling": (
            "redacted with typed placeholders: "
            + ", ".join(f"{k}={v}" for k, v in (report.get("pii") or {}).items())
            if "pii" in steps
            else "PII was NOT redacted (no pii step)"
        ),
        "provenance": "every record keeps meta.source (file, archive member), meta.offset and meta.origin",
        "deduplication": [s for s in steps if "dedup" in s or s == "near_dup"],
        "known_limitations": [
            "PDF text comes from the text layer only (scanned pages are quarantined, not OCR'd)",
            "English person names and street addresses are not redacted unless presidio is enabled",
            "language id is script- and function-word-based: zh/en are reliable, close Latin languages less so",
            "boilerplate rules target common web/news layouts; site-specific chrome may survive",
            "page_lines judges Chinese and Latin-script pages; Japanese/Korean pages get the Chinese "
            "rules, and reader comments or teaser lists under a text page can survive as prose",
        ],
    }


def build_report(stats: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: stats with the raw length lists summarised into histograms."""
    report = {k: v for k, v in stats.items() if k != "lengths"}
    lengths = stats.get("lengths") or {}
    report["lengths"] = _length_summary(lengths.get("before", []), lengths.get("after", []))
    report["datasheet"] = _datasheet(report)
    return report


def _esc(v: Any) -> str:
    return html.escape(str(v))


def render_html(report: dict[str, Any]) -> str:
    plots = _plots(report)

    def img(key: str) -> str:
        return (
            f'<img src="data:image/png;base64,{plots[key]}">'
            if key in plots
            else "<p>(no data)</p>"
        )

    rows = []
    for s in report["steps"]:
        reasons = ", ".join(f"{_esc(k)}: {v}" for k, v in s["dropped_by_reason"].items()) or "—"
        extra = ", ".join(f"{_esc(k)}: {v}" for k, v in s.get("extra", {}).items())
        rows.append(
            f"<tr><td>{_esc(s['name'])}</td><td>{_esc(s['kind'])}</td><td>{s['seen']}</td>"
            f"<td>{s['kept']}</td><td>{s['changed']}</td><td>{s['dropped']}</td>"
            f"<td>{reasons}</td><td>{extra}</td></tr>"
        )
    examples = []
    for s in report["steps"]:
        for reason, exs in s.get("examples", {}).items():
            items = []
            for ex in exs:
                if "diff" in ex:
                    # What a page step cut, line by line: red lines went, grey lines stayed.
                    body = "".join(
                        f'<div class="{"cut" if ln.startswith("- ") else "kept"}">{_esc(ln)}</div>'
                        for ln in ex["diff"].split("\n")
                    )
                    items.append(
                        f'<li><code>{_esc(ex["id"])}</code><div class="diff">{body}</div></li>'
                    )
                elif "before" in ex:
                    items.append(
                        f"<li><code>{_esc(ex['id'])}</code><br><b>before</b> <pre>{_esc(ex['before'])}</pre>"
                        f"<b>after</b> <pre>{_esc(ex['after'])}</pre></li>"
                    )
                else:
                    dup = (
                        f" (duplicate of <code>{_esc(ex['duplicate_of'])}</code>)"
                        if ex.get("duplicate_of")
                        else ""
                    )
                    items.append(
                        f"<li><code>{_esc(ex['id'])}</code>{dup}<pre>{_esc(ex.get('text', ''))}</pre></li>"
                    )
            examples.append(f"<h3>{_esc(s['name'])}: {_esc(reason)}</h3><ul>{''.join(items)}</ul>")
    clusters = []
    for c in (report.get("dedup_clusters") or {}).get("largest", []):
        dups = "".join(f"<li><pre>{_esc(d)}</pre></li>" for d in c.get("dups", []))
        clusters.append(
            f"<h3>cluster of {c['size']} (kept <code>{_esc(c['kept_id'])}</code>)</h3>"
            f"<pre>{_esc(c.get('kept') or '')}</pre><p>dropped copies:</p><ul>{dups}</ul>"
        )
    sheet = report["datasheet"]
    sheet_rows = "".join(
        f"<tr><th>{_esc(k)}</th><td><pre>{_esc(json.dumps(v, ensure_ascii=False, indent=1) if isinstance(v, dict | list) else v)}</pre></td></tr>"
        for k, v in sheet.items()
    )
    head = (
        f"<p>{report.get('files', '?')} files → {report.get('records_read', '?')} records read, "
        f"{report.get('quarantined', 0)} quarantined; <b>{report.get('kept')}</b> kept, "
        f"{report.get('rejected')} rejected (engine {report.get('engine', '-')}, {report.get('seconds', '?')} s).</p>"
    )
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Zimo curate report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}}
.diff{{font-family:monospace;font-size:90%;max-height:30em;overflow:auto;background:#fafafa}}
.cut{{color:#a00;background:#fee;white-space:pre-wrap}}.kept{{color:#444;white-space:pre-wrap}}
pre{{white-space:pre-wrap;background:#f6f6f6;padding:4px;margin:2px 0;max-height:12em;overflow:auto}}</style>
</head><body><h1>Zimo curate report</h1>{head}
<h2>Steps</h2><table><tr><th>step</th><th>kind</th><th>in</th><th>kept</th><th>changed</th><th>dropped</th>
<th>drop reasons</th><th>details</th></tr>{"".join(rows)}</table>{img("steps")}
<h2>Lengths before / after</h2>{img("lengths")}
<h2>Language mix</h2>{img("langs")}
<h2>PII redacted by type</h2>{img("pii")}
<h2>Duplicate clusters</h2>{img("clusters")}{"".join(clusters)}
<h2>Examples per step and reason</h2>{"".join(examples)}
<h2>Datasheet</h2><table>{sheet_rows}</table>
</body></html>"""


def write_curate_report(output_dir: Path, stats: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.json`` and ``report.html`` into ``output_dir``; returns the JSON report."""
    output_dir = Path(output_dir)
    report = build_report(stats)
    write_text_atomic(
        output_dir / "report.json", json.dumps(report, ensure_ascii=False, indent=1, default=str)
    )
    write_text_atomic(output_dir / "report.html", render_html(report))
    return report


def write_report(
    output_dir: Path,
    *,
    stats: list[dict[str, Any]],
    kept: list[dict[str, Any]],
    rejects: list[dict[str, Any]],
    before: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Report for an in-memory :func:`~zimo.data.pipeline.run_steps` run (the build stage)."""
    langs = Counter((r.get("meta") or {}).get("lang") or "und" for r in kept)
    pii = next((s.get("extra", {}) for s in stats if s["name"] == "pii"), {})
    dup_of = Counter(
        (r.get("meta") or {}).get("duplicate_of")
        for r in rejects
        if (r.get("meta") or {}).get("duplicate_of")
    )
    sizes = Counter(1 + n for n in dup_of.values())
    full = {
        "records_read": len(before) if before is not None else None,
        "kept": len(kept),
        "rejected": len(rejects),
        "steps": stats,
        "langs": dict(langs.most_common()),
        "pii": pii,
        "composition": {
            "origin": dict(Counter((r.get("meta") or {}).get("origin") for r in kept)),
            "label": dict(Counter(str(r.get("label")) for r in kept).most_common(20)),
        },
        "dedup_clusters": {
            "count": len(dup_of),
            "size_histogram": {str(k): v for k, v in sorted(sizes.items())},
            "largest": [{"kept_id": k, "size": 1 + n} for k, n in dup_of.most_common(5)],
        },
        "lengths": {
            "before": [len(record_text(r)) for r in (before or [])],
            "after": [len(record_text(r)) for r in kept],
        },
    }
    return write_curate_report(output_dir, full)
