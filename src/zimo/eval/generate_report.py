"""The HTML (+ JSON) report of a generate/chat evaluation, from :func:`evaluate_generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from zimo.eval.html import (
    Column,
    Footnotes,
    Section,
    bar_plot,
    examples_block,
    headline_table,
    img,
    render_page,
    warnings_block,
    write_report,
)

SYSTEM_TEXT = {
    "finetuned": "the sub-model: base model + LoRA adapter trained on the train split",
    "base_zero_shot": "the same base model, untuned, same chat prompt",
    "teacher": "the teacher / big model behind the configured endpoint",
    "upstream": "the upstream big model the gateway forwards to",
}
METRIC_LABEL = {"chrf": "chrF", "rouge_l": "ROUGE-L", "embed_sim": "embedding sim."}
METRIC_SCALE = {"chrf": (1.0, 1), "rouge_l": (1.0, 1), "embed_sim": (1.0, 3)}


def _headline_rows(result: dict[str, Any]) -> tuple[list[dict], list[Column]]:
    metrics = result["metrics"]
    ref = result.get("reference_system")
    cols = [
        Column(m, METRIC_LABEL.get(m, m), digits=METRIC_SCALE.get(m, (1.0, 2))[1]) for m in metrics
    ]
    rows = []
    judged = result.get("judge") or {}
    any_cost = any("cost" in s for s in result["systems"].values())
    for name, s in result["systems"].items():
        row: dict[str, Any] = {
            "system": name,
            "description": s.get("description") or SYSTEM_TEXT.get(name, ""),
        }
        for m in metrics:
            row[m] = s["metrics"].get(m)
        if judged:
            row["win_rate"] = judged[name]["win_rate"] if name in judged else None
        row["failures"] = s["failures"]
        row["answer_chars"] = s.get("answer_chars")
        if "cost" in s:
            c = s["cost"]
            row.update(
                cost_per_1k=c["cost_per_1k"],
                latency_p50_s=c["latency_p50_s"],
                latency_p95_s=c["latency_p95_s"],
                tokens_per_s=c.get("tokens_per_s"),
            )
        rows.append(row)
    if judged:
        cols.append(Column("win_rate", f"win rate vs {ref}", digits=1, scale=100, unit="%"))
    cols.append(
        Column(
            "failures",
            "no answer",
            digits=0,
            higher_is_better=None,
            note="test items for which the system returned no (or an empty) answer; they score 0",
        )
    )
    ref_chars = result.get("reference_chars")
    cols.append(
        Column(
            "answer_chars",
            "answer length (chars)",
            digits=0,
            higher_is_better=None,
            note="mean characters per answer"
            + (f"; the reference answers average {ref_chars:.0f}" if ref_chars else "")
            + ". chrF (β=2) weighs recall 4× precision, so long answers that repeat the prompt "
            "gain chrF; compare lengths before reading a chrF difference",
        )
    )
    if any_cost:
        cols += [
            Column("cost_per_1k", "cost / 1k req.", digits=-3, higher_is_better=False),
            Column(
                "latency_p50_s", "p50 latency (ms)", digits=-3, scale=1000, higher_is_better=False
            ),
            Column(
                "latency_p95_s", "p95 latency (ms)", digits=-3, scale=1000, higher_is_better=False
            ),
            Column("tokens_per_s", "tokens/s", digits=-3),
        ]
    return rows, cols


def _paired_block(result: dict[str, Any], notes: Footnotes) -> Markup:
    paired = result.get("paired") or {}
    if not paired:
        return Markup('<p class="note">No reference system to compare with.</p>')
    rows = []
    for name, p in paired.items():
        for m, d in p["metrics"].items():
            diff = d["diff"]
            verdict = (
                "better"
                if diff["low"] > 0
                else ("worse" if diff["high"] < 0 else "no clear difference")
            )
            rows.append(
                Markup(
                    "<tr><th>{}</th><td>{}</td><td class=n>{}</td><td class=n>{:.3f}</td>"
                    "<td>{}</td><td>{}</td></tr>"
                ).format(
                    f"{name} − {p['vs']}",
                    METRIC_LABEL.get(m, m),
                    _ci(diff, notes, digits=3 if m == "embed_sim" else 1),
                    d["p_not_better"],
                    verdict,
                    "no" if not d["cis_overlap"] else "yes",
                )
            )
    notes.add(
        "paired bootstrap: both systems are resampled with the same test items; "
        "p(not better) = share of resamples where the difference is ≤ 0"
    )
    return Markup(
        "<table><thead><tr><th>comparison</th><th>metric</th><th>difference [CI]</th>"
        "<th>p(not better)</th><th>reading</th><th>separate CIs overlap?</th></tr></thead>"
        "<tbody>{}</tbody></table>"
    ).format(Markup("".join(rows)))


def _ci(ci, notes, digits=1):
    from zimo.eval.html import ci_html

    return ci_html(ci, notes, digits=digits)


def _judge_block(result: dict[str, Any], notes: Footnotes) -> Markup:
    judged = result.get("judge") or {}
    if not judged:
        return Markup(
            '<p class="note">No judge configured (set <code>eval.judge: teacher</code> with a '
            "<code>teacher:</code> section to add judge-based win rates).</p>"
        )
    rows = []
    for name, j in judged.items():
        rows.append(
            Markup(
                "<tr><th>{}</th><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>"
                "<td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>"
            ).format(
                f"{name} vs {j['reference']}",
                _ci_pct(j["win_rate"], notes),
                j["wins"],
                j["ties"],
                j["losses"],
                j["failures"],
                j["inconsistent_orders"],
                f"{j['judge_model']} · prompt {j['prompt_version']}",
            )
        )
    return Markup(
        "<table><thead><tr><th>pair</th><th>win rate [CI]</th><th>wins</th><th>ties</th>"
        "<th>losses</th><th>judge failures</th><th>order-inconsistent (→ tie)</th><th>judge</th>"
        "</tr></thead><tbody>{}</tbody></table>"
    ).format(Markup("".join(rows)))


def _ci_pct(ci, notes):
    from zimo.eval.html import ci_html

    return ci_html(ci, notes, digits=1, scale=100, unit="%")


def _training_block(curve: dict[str, Any]) -> Markup:
    """The sub-model's loss curve: did training lower the loss on held-out dev conversations?"""
    from zimo.eval.html import loss_plot

    first, last = curve.get("initial_dev_loss"), curve.get("final_dev_loss")
    if first is not None and last is not None:
        what = (
            f"Dev loss {first:.3f} before training → {last:.3f} after {curve['steps']} steps "
            f"({(last - first) / first:+.1%})."
        )
    else:
        what = f"{curve['steps']} optimizer steps; no dev loss before training was recorded."
    return Markup("<figure>{}<figcaption>{}</figcaption></figure><p class=note>{}</p>").format(
        img(loss_plot(curve), "training and dev loss per step"),
        what,
        "Loss = mean cross-entropy per assistant token (the answer and its end-of-turn token); "
        "dev = the project's dev split, never trained on. Step 0 is the untuned base.",
    )


def render_generate_report(
    result: dict[str, Any],
    *,
    title: str = "Evaluation report",
    meta: dict[str, Any] | None = None,
    cost_assumptions: list[str] | None = None,
) -> str:
    """The full HTML page for a generate-task evaluation result."""
    notes = Footnotes()
    rows, cols = _headline_rows(result)
    sections = [
        Section(
            "Headline",
            Markup("{}{}<p class=note>{}</p>").format(
                warnings_block(result.get("warnings") or []),
                headline_table(rows, cols, notes),
                f"{result['n']} test items. Values are followed by their "
                f"{result['bootstrap']['confidence']:.0%} confidence interval "
                f"({result['bootstrap']['samples']} bootstrap resamples, seed "
                f"{result['bootstrap']['seed']}). Hover a number or follow its footnote for how "
                "it was computed. Green = best; bold = best with a CI that does not overlap the "
                "runner-up's.",
            ),
            "headline",
        )
    ]
    names = list(result["systems"])
    figs = []
    for m in result["metrics"]:
        cis = [result["systems"][n]["metrics"].get(m) for n in names]
        uri = bar_plot(names, cis, title=METRIC_LABEL.get(m, m), ylabel=m)
        figs.append(
            Markup("<figure>{}<figcaption>{} with {:.0%} CI</figcaption></figure>").format(
                img(uri, f"{m} per system"),
                METRIC_LABEL.get(m, m),
                result["bootstrap"]["confidence"],
            )
        )
    sections.append(
        Section(
            "Plots", Markup('<div class="grid">{}</div>').format(Markup("".join(figs))), "plots"
        )
    )
    sections.append(Section("Differences", _paired_block(result, notes), "differences"))
    if result.get("training"):
        sections.append(Section("Training", _training_block(result["training"]), "training"))
    sections.append(Section("Judge", _judge_block(result, notes), "judge"))
    sections.append(
        Section(
            "Where the systems disagree",
            Markup("<p class=note>{}</p>{}").format(
                "Test items with the largest spread of sentence-level scores between systems.",
                examples_block(result.get("disagreements") or []),
            ),
            "examples",
        )
    )
    overlap = result.get("overlap")
    data_lines = []
    if overlap is not None:
        data_lines.append(
            f"Train/test overlap: {overlap['count']} of {result['n']} test prompts "
            f"({overlap['exact']} exact, {overlap['near']} near-duplicates). {overlap['method']}."
        )
    for m, text in (result.get("metric_methods") or {}).items():
        data_lines.append(f"{METRIC_LABEL.get(m, m)}: {text}.")
    for line in cost_assumptions or []:
        data_lines.append(line)
    sections.append(
        Section(
            "Data, metrics and cost assumptions",
            Markup("<ul>{}</ul>").format(
                Markup("".join(f"<li>{escape(x)}</li>" for x in data_lines))
            ),
            "assumptions",
        )
    )
    return render_page(title, sections, notes, subtitle="generate task", meta=meta)


def write_generate_report(
    result: dict[str, Any],
    out_dir: str | Path,
    *,
    title: str = "Evaluation report",
    meta: dict[str, Any] | None = None,
    cost_assumptions: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``report.html`` and ``eval.json`` into ``out_dir``; returns both paths."""
    from zimo.fileio import write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = render_generate_report(result, title=title, meta=meta, cost_assumptions=cost_assumptions)
    page = write_report(out / "report.html", html)
    data = out / "eval.json"
    write_json_atomic(data, {**result, "cost_assumptions": cost_assumptions or []})
    return {"html": page, "json": data}
