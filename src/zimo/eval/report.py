"""The label-task evaluation report: one self-contained HTML file (plots inlined as PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from zimo.fileio import write_text_atomic

SYSTEM_TEXT = {
    "finetuned": "the sub-model: base + LoRA adapter trained on the train split",
    "base_zero_shot": "the same base model, untuned, same prompt (zero-shot)",
    "tfidf_logreg": "classical baseline: TF-IDF word+char n-grams, logistic regression",
}
METRIC_TEXT = {
    "accuracy": "share of test rows whose predicted label equals the gold label",
    "macro_f1": "unweighted mean of the per-class F1 scores",
    "ece": "expected calibration error of the top-class probability, 10 equal-width bins",
    "latency_ms_p50": "median wall time of one single-row request on this machine",
    "cost_per_1k": "batched seconds per request × machine price per hour, per 1,000 requests",
}

CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI','Noto Sans CJK SC',sans-serif;
 max-width:1100px;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.3rem .7rem;border:1px solid #ccc}
th{background:#f2f4f7;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.best{font-weight:700;background:#eaf6ea}.note{color:#555;font-size:.9rem}
img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:1rem}
abbr{text-decoration:underline dotted;cursor:help}
@media print{body{margin:0}h2{page-break-after:avoid}}
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _confusion_plot(name: str, cm: list[list[int]], labels: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = np.array(cm)
    fig, ax = plt.subplots(figsize=(3.2, 3))
    ax.imshow(a, cmap="Blues")
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            color = "white" if a[i, j] > a.max() / 2 else "black"
            ax.text(j, i, str(a[i, j]), ha="center", va="center", color=color)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(name)
    return _png(fig)


def _loss_plot(train_dir: Path) -> str | None:
    from zimo.eval.html import loss_plot, training_curve

    curve = training_curve(train_dir)
    return loss_plot(curve) if curve else None


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return html.escape(str(v))


def _system_text(name: str, classical: dict[str, Path] | None) -> str:
    if name in (classical or {}):
        return "a classical sub-model: TF-IDF n-grams + calibrated logistic regression, served"
    return SYSTEM_TEXT.get(name, name)


def write_label_report(path: Path, project, result: dict[str, Any], train_dir: Path | None,
                       classical: dict[str, Path] | None = None) -> None:  # fmt: skip
    cfg = project.config
    # The training curve and summary shown are the LM sub-model's, else the first classical one.
    train_dir = train_dir or next(iter((classical or {}).values()), None)
    lm = cfg.lm_train()
    head = result["headline"]
    keys = list(next(iter(head.values())).keys()) if head else []
    lower_better = {"ece", "latency_ms_p50", "cost_per_1k"}
    best = {}
    for k in keys:
        vals = {s: v[k] for s, v in head.items() if v[k] is not None}
        if vals:
            pick = min if k in lower_better else max
            best[k] = pick(vals, key=vals.get)
    pos = cfg.positive_label
    metric_text = dict(METRIC_TEXT)
    if pos:
        metric_text[f"{pos}_f1"] = f"F1 of the '{pos}' class on the test split (the headline)"
    rows = []
    for s, vals in head.items():
        cells = "".join(
            f'<td class="n{" best" if best.get(k) == s else ""}">{_fmt(vals[k])}</td>' for k in keys
        )
        rows.append(
            f'<tr><th><abbr title="{html.escape(_system_text(s, classical))}">{s}</abbr>'
            f"</th>{cells}</tr>"
        )
    header = "".join(
        f'<th><abbr title="{html.escape(metric_text.get(k, k))}">{k}</abbr></th>' for k in keys
    )
    cms = "".join(
        f'<img alt="confusion matrix of {s}" src="'
        f'{_confusion_plot(s, m["confusion"], result["labels"])}">'
        for s, m in result["systems"].items()
    )
    per_class = "".join(
        f"<tr><th>{s}</th>"
        + "".join(f'<td class="n">{_fmt(m["per_class_f1"][lab])}</td>' for lab in result["labels"])
        + "</tr>"
        for s, m in result["systems"].items()
    )
    loss = _loss_plot(train_dir) if train_dir else None
    loss_html = f'<img alt="training loss curve" src="{loss}">' if loss else "<p>no log</p>"
    train_summary = {}
    manifest = train_dir / "manifest.json" if train_dir else None
    if manifest and manifest.is_file():
        train_summary = json.loads(manifest.read_text(encoding="utf-8")).get("summary", {})
    dis = "".join(
        "<tr>"
        + f"<td>{html.escape(d['text'][:300])}</td><td>{html.escape(d['gold'])}</td>"
        + "".join(f"<td>{html.escape(d.get(s, ''))}</td>" for s in head)
        + "</tr>"
        for d in result["disagreements"][:20]
    )
    dis_head = "".join(f"<th>{s}</th>" for s in head)
    overlap = result.get("train_test_overlap", 0)
    warn = (
        f'<p class="note">⚠ {overlap} test texts also appear in the train split.</p>'
        if overlap
        else ""
    )
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(cfg.name)} — Zimo evaluation</title><style>{CSS}</style></head><body>
<h1>{html.escape(cfg.name)}: evaluation report</h1>
<p>Task: label ({", ".join(map(html.escape, result["labels"]))}).
Test split: {result["test_rows"]} held-out rows (seeded stratified split, seed {cfg.split.seed}).
{f"Base model: <code>{html.escape(str(lm.base))}</code>." if lm else ""}</p>{warn}
<h2>Headline</h2>
<table><tr><th>system</th>{header}</tr>{"".join(rows)}</table>
<p class="note">Bold = best in column. Hover a name for how it was computed.
Cost assumes a machine at ${result["assumptions"]["machine_price_per_hour"]}/hour.</p>
<h2>Per-class F1</h2>
<table><tr><th>system</th>{"".join(f"<th>{html.escape(x)}</th>" for x in result["labels"])}</tr>
{per_class}</table>
<h2>Confusion matrices</h2><div class="grid">{cms}</div>
<h2>Training</h2>{loss_html}
<pre class="note">{html.escape(json.dumps(train_summary, indent=1)[:3000])}</pre>
<h2>Where the systems disagree (first 20)</h2>
<table><tr><th>text</th><th>gold</th>{dis_head}</tr>{dis}</table>
<p class="note">Generated by Zimo. Numbers: metrics.json in the same folder.</p>
</body></html>"""
    write_text_atomic(path, doc)
