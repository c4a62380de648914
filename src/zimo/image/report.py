"""HTML pieces for image projects: the curation report (counts, quarantine reasons, an image
grid per label) and the image grids of the eval report. Thumbnails are inlined PNGs made from
the decoded pixels, so no EXIF and no file path leaves the machine inside a thumbnail."""

from __future__ import annotations

import base64
import io
from collections import Counter
from pathlib import Path

import numpy as np
from markupsafe import Markup, escape


def thumb_uri(pixels: np.ndarray, side: int = 64) -> str:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    if im.width < side:  # tiny images scaled up with visible pixels, as they are
        im = im.resize((side, side), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def grid(items: list[tuple[np.ndarray, str]]) -> Markup:
    """A wrapping row of thumbnails, each with a caption."""
    cells = "".join(
        f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:11px;'
        f'max-width:96px"><img src="{thumb_uri(px)}" width="64" height="64" '
        f'style="image-rendering:pixelated" alt="{escape(cap)}"><figcaption>{escape(cap)}'
        "</figcaption></figure>"
        for px, cap in items
    )
    return Markup(f"<div>{cells}</div>")


def simple_table(header: list[str], rows: list[list]) -> Markup:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def write_curate_report(path: Path, cur, per_label: int) -> None:
    from zimo.eval.html import Footnotes, Section, render_page, write_report

    counts = Counter(r["label"] for r in cur.records)
    reasons = Counter(r["reason"].split(" (")[0].split(" of ")[0] for r in cur.rejects)
    sections = [
        Section(
            "Counts",
            simple_table(
                ["label", "images"],
                [
                    [k if k is not None else "(caption only)", v]
                    for k, v in sorted(counts.items(), key=str)
                ],
            ),
        ),  # fmt: skip
        Section(
            "Quarantined",
            simple_table(["reason", "files"], sorted(reasons.items()))
            + simple_table(
                ["file", "reason"], [[r["source"], r["reason"]] for r in cur.rejects[:200]]
            ),
        ),  # fmt: skip
    ]
    if per_label:
        blocks = []
        for lab in cur.labels:
            idx = [r["id"] for r in cur.records if r["label"] == lab][:per_label]
            blocks.append(Markup("<h3>{}</h3>").format(lab)
                          + grid([(cur.pixels[i], cur.records[i]["source"][-18:]) for i in idx]))  # fmt: skip
        sections.append(Section("Examples per label", Markup("").join(blocks)))
    html = render_page("Image curation", sections, Footnotes(),
                       subtitle=f"{len(cur.records)} images kept, {len(cur.rejects)} quarantined, "
                       f"{cur.size}×{cur.size} px for the encoder; EXIF not kept")  # fmt: skip
    write_report(path, html)


def write_eval_report(path: Path, project: str, result: dict, worst: list) -> None:
    from zimo.eval.html import (
        Footnotes,
        Section,
        bar_plot,
        confusion_table,
        img,
        render_page,
        write_report,
    )

    def cell(v):
        if isinstance(v, dict):
            return f"{v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"
        return "–" if v is None else f"{v:.3f}"

    rows = [[s, cell(r.get("accuracy")), cell(r.get("macro_f1")), cell(r.get("recall_at_1")),
             cell(r.get("recall_at_5")), r.get("description", "")]
            for s, r in result["systems"].items()]  # fmt: skip
    notes = Footnotes()
    sections = [
        Section(
            "Systems on the test split",
            simple_table(
                [
                    "system",
                    "accuracy (95% CI)",
                    "macro-F1 (95% CI)",
                    "recall@1",
                    "recall@5",
                    "what",
                ],
                rows,
            )
            + Markup(
                "<p>Accuracy and macro-F1: percentile bootstrap over test images "
                "(1,000 resamples). Recall@k: for each label prompt (one per "
                "template), whether an image of that label is among the k images "
                "closest to the prompt's text vector.</p>"
            ),
        ),  # fmt: skip
    ]
    names = list(result["systems"])
    plot = bar_plot(names, [result["systems"][n].get("accuracy") for n in names],
                    title="test accuracy (95% CI)", ylabel="accuracy")  # fmt: skip
    sections.append(Section("Accuracy", img(plot, "test accuracy per system")))
    first = next(iter(result["systems"].values()), None)
    if first is not None:
        sections.append(Section("Confusion matrix (primary sub-model)",
                                confusion_table(first["confusion"])))  # fmt: skip
    if worst:
        sections.append(Section("Most confident mistakes", grid(worst)))
    html = render_page(f"{project}: image sub-model evaluation", sections, notes,
                       subtitle=f"{result['test_images']} test images, "
                       f"{len(result['labels'])} labels")  # fmt: skip
    write_report(path, html)
