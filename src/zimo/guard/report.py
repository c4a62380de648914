"""HTML report of a guard scoring run: score histograms by origin, flagged share, examples."""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from jinja2 import Template

_TEMPLATE = Template(
    """<!doctype html><html><head><meta charset="utf-8"><title>Zimo guard report</title>
<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td.t{text-align:left;max-width:640px}</style></head><body>
<h1>Pollution guard: machine-written text</h1>
<p>Input <code>{{ s.input }}</code>: {{ s.n }} records, {{ s.n_trusted }} long enough to score
reliably (&ge; {{ s.detector.min_tokens }} tokens), <b>{{ s.n_flagged }} flagged
({{ pct(s.flagged_share_of_trusted) }} of the scored)</b>. Score <code>{{ s.detector.score }}</code>{% if s.detector.scores %} ({{ s.detector.scores }}){% endif %}
(higher = more likely written by a model); thresholds {{ s.detector.thresholds }} for a target
false-positive rate of {{ pct(s.detector.target_fpr) }}; models {{ s.models }}.</p>
{% if s.detector.uncalibrated_models %}<p><b>No calibration for
{{ s.detector.uncalibrated_models|join(", ") }}</b>: those records are scored but never flagged;
calibrate with <code>zimo guard calibrate</code> on a labelled dev split.</p>{% endif %}
<h2>By origin</h2><table><tr><th>origin</th><th>records</th><th>scored</th><th>flagged</th>
<th>flagged share</th></tr>
{% for g, v in s.by_origin.items() %}<tr><td class="t">{{ g }}</td><td>{{ v.n }}</td>
<td>{{ v.trusted }}</td><td>{{ v.flagged }}</td><td>{{ pct(v.flagged_share_of_trusted) }}</td></tr>
{% endfor %}</table>
{% if plot %}<h2>Scores by origin</h2><img src="data:image/png;base64,{{ plot }}" width="800">{% endif %}
{% for title, key in [("Flagged, most machine-like", "most_machine_like_flagged"),
  ("Not flagged, closest to the threshold", "borderline_unflagged"),
  ("Least machine-like", "least_machine_like")] %}
<h2>{{ title }}</h2><table><tr><th>id</th><th>origin</th><th>score</th><th>text</th></tr>
{% for e in s.examples[key] %}<tr><td>{{ esc(e.id) }}</td><td>{{ esc(e.origin) }}</td>
<td>{{ "%.2f"|format(e.guard_score) }}</td><td class="t">{{ esc(e.text) }}</td></tr>{% endfor %}
</table>{% endfor %}
{% if s.skipped_lines %}<h2>Skipped input lines</h2><ul>{% for b in s.skipped_lines[:50] %}
<li>line {{ b.line }}: {{ esc(b.reason) }}</li>{% endfor %}</ul>{% endif %}
<p><small>Texts shorter than min_tokens are scored but never flagged: zero-shot detectors are
unreliable on short texts. Machine-paraphrased human text is the hardest case.</small></p>
</body></html>"""
)


def _histogram_png(rows: list[dict], thresholds: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zimo.guard.records import origin_label

    groups: dict[str, list[float]] = {}
    for r in rows:
        if r["guard_score"] is not None and r["guard_trusted"]:
            groups.setdefault(origin_label(r), []).append(r["guard_score"])
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for g, v in sorted(groups.items()):
        ax.hist(v, bins=40, alpha=0.5, label=f"{g} (n={len(v)})")
    for m, t in thresholds.items():
        ax.axvline(t, color="k", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.9, f" threshold {m}", fontsize=8)
    ax.set_xlabel("guard_score (higher = more machine-like)")
    ax.set_ylabel("records")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_html_report(path: Path, rows: list[dict], summary: dict[str, Any]) -> Path:
    """Write the report atomically; returns its path."""
    det = summary.get("detector", {})
    page = _TEMPLATE.render(
        s=summary,
        plot=_histogram_png(rows, det.get("thresholds", {})),
        pct=lambda x: "n/a" if x is None else f"{100 * x:.1f}%",
        esc=lambda x: html.escape(str(x)),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path
