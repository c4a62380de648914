"""Building blocks for self-contained HTML evaluation reports.

A report is one ``.html`` file that opens anywhere without a network: plots are PNGs inlined
as base64 ``data:`` URIs (matplotlib, Agg backend), the CSS is a few lines inline, and the
layout fits a laptop screen and prints cleanly. Every number carries its provenance: hovering
shows how it was computed, and a numbered footnote link leads to the same text at the end of
the page (:class:`Footnotes`). The label report and the generate report use the same pieces:

- :func:`headline_table` — systems × metrics, values with CI, best value highlighted;
- :func:`bar_plot` — one metric across systems with CI error bars;
- :func:`reliability_diagram` — calibration bins;
- :func:`confusion_table` — a confusion matrix as a shaded HTML table (selectable text);
- :func:`examples_block` — where systems disagree, answers side by side;
- :func:`render_page` — the page itself (Jinja2 template ``templates/report.html.j2``).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from zimo.fileio import read_jsonl

_TEMPLATES = Path(__file__).with_name("templates")


class Footnotes:
    """Numbered "how computed" notes; the same text gets the same number."""

    def __init__(self) -> None:
        self._notes: list[str] = []

    def add(self, text: str) -> int:
        if text not in self._notes:
            self._notes.append(text)
        return self._notes.index(text) + 1

    def ref(self, text: str) -> Markup:
        """A superscript link to the note for ``text``."""
        n = self.add(text)
        return Markup(f'<sup class="fn"><a href="#fn-{n}" id="r-{n}">{n}</a></sup>')

    @property
    def items(self) -> list[tuple[int, str]]:
        return list(enumerate(self._notes, start=1))


def fmt(value: float | None, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    """A number for people: fixed digits (``digits < 0``: that many significant digits)."""
    if value is None or value != value:  # None or NaN
        return "–"
    v = value * scale
    if digits < 0:  # significant digits, without scientific notation for ordinary sizes
        if v == 0:
            return f"0{unit}"
        if abs(v) < 1e-4:
            return f"{v:.{-digits - 1}e}{unit}"
        decimals = max(0, -digits - 1 - math.floor(math.log10(abs(v))))
        return f"{v:,.{decimals}f}{unit}"
    if unit == "%":
        return f"{v:.{digits}f}%"
    if abs(v) >= 10_000:
        return f"{v:,.0f}{unit}"
    return f"{v:.{digits}f}{unit}"


def ci_html(
    ci: dict[str, Any] | None,
    notes: Footnotes | None = None,
    *,
    digits: int = 1,
    scale: float = 1.0,
    unit: str = "",
    note: str | None = None,
) -> Markup:
    """``value [low, high]`` with a hover title and a footnote saying how it was computed."""
    if not ci:
        return Markup('<span class="na">–</span>')
    lo, hi = ci.get("low"), ci.get("high")
    method = note or ci.get("method") or ""
    conf = ci.get("confidence", 0.95)
    title = (
        f"{method}. {conf:.0%} CI [{fmt(lo, _finer(digits), scale, unit)}, "
        f"{fmt(hi, _finer(digits), scale, unit)}], n = {ci.get('n', '?')} items, "
        f"{ci.get('n_boot', '?')} bootstrap resamples"
    )
    ref = notes.ref(method) if notes is not None and method else Markup("")
    return Markup(
        '<span class="num" title="{t}">{v}</span> <span class="ci">[{lo}, {hi}]</span>{ref}'
    ).format(
        t=title,
        v=fmt(ci.get("value"), digits, scale, unit),
        lo=fmt(lo, digits, scale, unit),
        hi=fmt(hi, digits, scale, unit),
        ref=ref,
    )


def _finer(digits: int) -> int:
    return digits - 1 if digits < 0 else digits + 1


@dataclass
class Column:
    """One headline-table column: where the CI dict lives in a row and how to show it."""

    key: str
    label: str
    digits: int = 1
    scale: float = 1.0
    unit: str = ""
    higher_is_better: bool | None = True  # None: no "best" highlight
    note: str | None = None  # overrides the CI's own method text


def headline_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    notes: Footnotes,
    *,
    name_key: str = "system",
    description_key: str = "description",
) -> Markup:
    """Systems × metrics. Each cell value is a CI dict (or a plain number, or None).

    The best system per column is highlighted, and marked "clearly best" only when its CI does
    not overlap the runner-up's.
    """
    head = "".join(f"<th>{escape(c.label)}</th>" for c in columns)
    best: dict[str, tuple[int, bool]] = {}
    for c in columns:
        vals = [(i, _val(r.get(c.key))) for i, r in enumerate(rows)]
        vals = [(i, v) for i, v in vals if v is not None]
        if c.higher_is_better is None or len(vals) < 2:
            continue
        vals.sort(key=lambda t: t[1], reverse=c.higher_is_better)
        (i0, v0), (i1, v1) = vals[0], vals[1]
        if v0 == v1:
            continue  # a tie for first place: nothing to highlight
        a, b = rows[i0].get(c.key), rows[i1].get(c.key)
        clear = isinstance(a, dict) and isinstance(b, dict) and _separated(a, b)
        best[c.key] = (i0, clear)
    body = []
    for i, r in enumerate(rows):
        name = escape(str(r.get(name_key, "")))
        desc = r.get(description_key)
        cell0 = (
            f'<th scope="row" title="{escape(desc)}">{name}</th>' if desc else f"<th>{name}</th>"
        )
        cells = [cell0]
        for c in columns:
            v = r.get(c.key)
            if isinstance(v, dict):
                txt = ci_html(v, notes, digits=c.digits, scale=c.scale, unit=c.unit, note=c.note)
            elif v is None:
                txt = Markup('<span class="na">–</span>')
            else:
                ref = notes.ref(c.note) if c.note else Markup("")
                txt = Markup("{}{}").format(fmt(float(v), c.digits, c.scale, c.unit), ref)
            cls = "n"
            if c.key in best and best[c.key][0] == i:
                cls += " best" + (" clear" if best[c.key][1] else "")
            cells.append(f'<td class="{cls}">{txt}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(
        '<table class="headline"><thead><tr><th>system</th>{}</tr></thead><tbody>{}</tbody></table>'
    ).format(Markup(head), Markup("".join(body)))


def _val(v: Any) -> float | None:
    if isinstance(v, dict):
        v = v.get("value")
    try:
        return None if v is None or v != v else float(v)
    except (TypeError, ValueError):
        return None


def _separated(a: dict, b: dict) -> bool:
    return a["low"] > b["high"] or b["low"] > a["high"]


# ---------------------------------------------------------------------------------------------
# plots (PNG, inlined)
# ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def png_data_uri(fig) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,…`` URI and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(uri: str, alt: str) -> Markup:
    return Markup('<img src="{}" alt="{}">').format(uri, alt)


def bar_plot(
    names: Sequence[str],
    cis: Sequence[dict[str, Any] | None],
    *,
    title: str,
    ylabel: str,
    scale: float = 1.0,
) -> str:
    """Bars of one metric per system with CI error bars; returns a PNG data URI."""
    plt, fig, ax = _figure(max(3.2, 1.1 * len(names) + 1.2), 2.8)
    vals = [(c["value"] * scale) if c else 0.0 for c in cis]
    lo = [max(0.0, v - c["low"] * scale) if c else 0.0 for v, c in zip(vals, cis, strict=True)]
    hi = [max(0.0, c["high"] * scale - v) if c else 0.0 for v, c in zip(vals, cis, strict=True)]
    colors = ["#3b6ea8", "#c8743a", "#5a9e5a", "#8c6bb1", "#b84a62", "#6b7f8c"]
    ax.bar(
        range(len(names)),
        vals,
        yerr=[lo, hi],
        capsize=5,
        color=[colors[i % len(colors)] for i in range(len(names))],
    )
    ax.set_xticks(range(len(names)), list(names), rotation=15 if len(names) > 3 else 0)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    for i, v in enumerate(vals):
        ax.annotate(
            f"{v:.3g}",
            (i, v + hi[i]),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )
    return png_data_uri(fig)


def reliability_diagram(bins: Sequence[dict[str, Any]], *, title: str) -> str:
    """Accuracy vs mean confidence per bin (bar width = bin), with the diagonal; PNG data URI."""
    plt, fig, ax = _figure(3.2, 3.0)
    ax.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfectly calibrated")
    xs = [(b["lo"] + b["hi"]) / 2 for b in bins if b["count"]]
    accs = [b["accuracy"] for b in bins if b["count"]]
    widths = [b["hi"] - b["lo"] for b in bins if b["count"]]
    ax.bar(
        xs, accs, width=widths, edgecolor="#27496d", color="#3b6ea8", alpha=0.8, label="accuracy"
    )
    confs = [b["confidence"] for b in bins if b["count"]]
    ax.plot(confs, accs, "o", color="#c8743a", ms=3, label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence", fontsize=9)
    ax.set_ylabel("accuracy", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return png_data_uri(fig)


def training_curve(train_dir: Path | str) -> dict[str, Any] | None:
    """Train and dev loss per step from a train artifact (``train_log.jsonl``), with the dev
    loss before training (``train_summary.json``) as step 0; None without a log."""
    import json

    train_dir = Path(train_dir)
    log = train_dir / "train_log.jsonl"
    if not log.is_file():
        return None
    train: list[list[float]] = []
    dev: list[list[float]] = []
    for row in read_jsonl(log):  # a half-written last line of an interrupted run is skipped
        if not isinstance(row, dict) or row.get("step") is None:
            continue
        if row.get("loss") is not None:
            train.append([row["step"], row["loss"]])
        if row.get("dev_loss") is not None:
            dev.append([row["step"], row["dev_loss"]])
    summary: dict[str, Any] = {}
    if (train_dir / "train_summary.json").is_file():
        summary = json.loads((train_dir / "train_summary.json").read_text(encoding="utf-8"))
    if summary.get("initial_dev_loss") is not None:
        dev.insert(0, [0, round(float(summary["initial_dev_loss"]), 5)])
    if not train:
        return None
    return {
        "train_loss": train,
        "dev_loss": dev,
        "initial_dev_loss": dev[0][1] if dev and dev[0][0] == 0 else None,
        "final_dev_loss": dev[-1][1] if dev else None,
        "steps": train[-1][0],
        "seconds": summary.get("seconds"),
        "trained_tokens": summary.get("trained_tokens"),
    }


def loss_plot(curve: dict[str, Any]) -> str:
    """Train loss (line) and dev loss (dots, from step 0 = before training); PNG data URI."""
    plt, fig, ax = _figure(5.5, 2.8)
    xs, ys = zip(*curve["train_loss"], strict=True)
    ax.plot(xs, ys, color="#3b6ea8", lw=1, label="train loss")
    if curve["dev_loss"]:
        dx, dy = zip(*curve["dev_loss"], strict=True)
        ax.plot(dx, dy, "o-", color="#c0504d", lw=1.4, label="dev loss")
    ax.set_xlabel("optimizer step", fontsize=9)
    ax.set_ylabel("loss (per answer token)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return png_data_uri(fig)


# ---------------------------------------------------------------------------------------------
# tables and examples
# ---------------------------------------------------------------------------------------------


def confusion_table(confusion: dict[str, Any], *, title: str = "") -> Markup:
    """Rows = true label, columns = predicted; cells shaded by row share (counts stay text)."""
    labels = confusion["labels"]
    cols = confusion.get("columns", labels)
    matrix = confusion["matrix"]
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    rows = []
    for lab, row in zip(labels, matrix, strict=True):
        total = sum(row) or 1
        cells = []
        for j, v in enumerate(row):
            share = v / total
            diag = j < len(labels) and labels[j] == lab
            rgb = "59,110,168" if diag else "200,80,60"
            cells.append(
                f'<td class="n" style="background:rgba({rgb},{0.08 + 0.6 * share:.2f})" '
                f'title="{v} of {total} rows labelled {escape(lab)} ({share:.0%})">{v}</td>'
            )
        rows.append(f"<tr><th>{escape(lab)}</th>{''.join(cells)}</tr>")
    cap = f"<caption>{escape(title)}</caption>" if title else ""
    return Markup(
        '<table class="confusion">{}<thead><tr><th>true ↓ / predicted →</th>{}</tr></thead>'
        "<tbody>{}</tbody></table>"
    ).format(Markup(cap), Markup(head), Markup("".join(rows)))


def examples_block(
    examples: Sequence[dict[str, Any]], *, max_chars: int = 600, open_first: int = 3
) -> Markup:
    """Disagreement examples: prompt, reference and each system's answer with its scores.

    The first ``open_first`` are expanded (and so printed); the rest open on a click.
    """
    if not examples:
        return Markup('<p class="note">No examples where the systems disagree.</p>')
    out = []
    for n, ex in enumerate(examples):
        answers = []
        for name, a in ex["answers"].items():
            text = a.get("text")
            shown = escape(_clip(text, max_chars)) if text else Markup("<em>(no answer)</em>")
            scores = " · ".join(f"{k} {a[k]:.1f}" for k in ("chrf", "rouge_l") if k in a)
            answers.append(
                f'<div class="ans"><div class="who">{escape(name)} '
                f'<span class="sc">{escape(scores)}</span></div><pre>{shown}</pre></div>'
            )
        out.append(
            '<details class="ex"{open}><summary>{pid} <span class="sc">{kind} spread {spread}</span>'
            '</summary><div class="q"><b>prompt</b><pre>{prompt}</pre></div>'
            '<div class="q"><b>reference</b><pre>{ref}</pre></div><div class="answers">{ans}</div>'
            "</details>".format(
                open=" open" if n < open_first else "",
                pid=escape(_clip(ex["prompt"], 90).replace("\n", " ")),
                kind=escape(ex.get("score_name", "")),
                spread=escape(str(ex.get("spread", ""))),
                prompt=escape(_clip(ex["prompt"], max_chars)),
                ref=escape(_clip(ex["reference"], max_chars)),
                ans="".join(answers),
            )
        )
    return Markup("".join(out))


def _clip(text: str | None, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


def warnings_block(warnings: Sequence[str]) -> Markup:
    if not warnings:
        return Markup("")
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return Markup(f'<div class="warn"><b>Warnings</b><ul>{items}</ul></div>')


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    body: Markup | str
    anchor: str = ""


def render_page(
    title: str,
    sections: Sequence[Section],
    notes: Footnotes,
    *,
    subtitle: str = "",
    meta: dict[str, Any] | None = None,
) -> str:
    """The whole report as one HTML string (inline CSS, no external resources)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    tpl = env.get_template("report.html.j2")
    return tpl.render(
        title=title,
        subtitle=subtitle,
        sections=[
            Section(s.title, Markup(s.body), s.anchor or f"s{i}") for i, s in enumerate(sections)
        ],
        notes=notes.items,
        meta=meta or {},
        css=Markup((_TEMPLATES / "report.css").read_text(encoding="utf-8")),
    )


def write_report(path: str | Path, html: str) -> Path:
    """Write the page atomically (a reader never sees half a file)."""
    from zimo.fileio import write_text_atomic

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(p, html)
    return p
