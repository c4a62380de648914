"""HTML report and feature importances for analytic (LightGBM / TF-IDF) sub-models.

One self-contained ``report.html`` per build, made from the same pieces, page template and CSS
as Zimo's label and generate reports (:mod:`zimo.eval.html`), so all reports read alike: a
headline table of systems side by side with bootstrap CIs and "how computed" footnotes, inline
PNG plots, and a table of which input columns were used as what (and which were dropped, and
why). Regression reports add residual and predicted-vs-actual plots and interval coverage;
classification reports add a confusion matrix. Feature importance is shown both as LightGBM
split gain and as mean |SHAP| (TreeSHAP from LightGBM itself), because gain over-rewards
high-cardinality columns and SHAP shows the effect on the prediction's scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from markupsafe import Markup, escape

from zimo.eval.html import (
    Column,
    Footnotes,
    Section,
    bar_plot,
    confusion_table,
    fmt,
    headline_table,
    img,
    png_data_uri,
    render_page,
)
from zimo.eval.html import (
    write_report as write_html,
)
from zimo.tabular.metrics import (
    classification_metrics,
    interval_coverage,
    regression_metrics,
)

if TYPE_CHECKING:
    import lightgbm

Task = Literal["regression", "binary", "multiclass"]
TOP_FEATURES = 20
# Scatter plots with more points than this are subsampled (seeded): the PNG stays small and a
# cloud of 100k dots shows nothing more than 5k.
MAX_PLOT_POINTS = 5000


# ---------------------------------------------------------------------------------------------
# feature importance
# ---------------------------------------------------------------------------------------------


def gain_importance(booster: lightgbm.Booster, feature_names: Sequence[str]) -> dict[str, float]:
    """Total split gain per feature (LightGBM's ``feature_importance("gain")``)."""
    gain = booster.feature_importance(importance_type="gain")
    if len(gain) != len(feature_names):
        raise ValueError(f"booster has {len(gain)} features, {len(feature_names)} names given")
    return {str(f): float(g) for f, g in zip(feature_names, gain, strict=True)}


def shap_importance(
    booster: lightgbm.Booster,
    X: np.ndarray,
    feature_names: Sequence[str],
    max_rows: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean |SHAP value| per feature on a seeded sample of at most ``max_rows`` rows.

    SHAP values are LightGBM's own TreeSHAP (``predict(pred_contrib=True)``), in raw-score
    units (log-odds for classifiers). The last column of each block is the expected value
    (bias) and is dropped; for multiclass models the blocks of all classes are averaged.
    """
    X = np.asarray(X, dtype=np.float64)
    d = len(feature_names)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have {d} columns, got shape {X.shape}")
    if X.shape[0] > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False))
        X = X[rows]
    contrib = np.asarray(booster.predict(X, pred_contrib=True))
    n_blocks = contrib.shape[1] // (d + 1)
    if contrib.shape[1] != n_blocks * (d + 1):
        raise ValueError(f"unexpected SHAP output width {contrib.shape[1]} for {d} features")
    per_class = contrib.reshape(contrib.shape[0], n_blocks, d + 1)[:, :, :d]
    mean_abs = np.abs(per_class).mean(axis=(0, 1))
    return {str(f): float(v) for f, v in zip(feature_names, mean_abs, strict=True)}


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float, **kw: Any):
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100, **kw)


def _plot_rows(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_PLOT_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_PLOT_POINTS, replace=False))


def _pred_vs_actual(y: np.ndarray, pred: np.ndarray, name: str) -> str:
    rows = _plot_rows(y.size)
    fig, ax = _figure(3.8, 3.6)
    ax.scatter(y[rows], pred[rows], s=6, alpha=0.4, color="#3b6ea8", linewidths=0)
    lo = float(min(y.min(), pred.min()))
    hi = float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], ls="--", color="#888", lw=1, label="perfect prediction")
    ax.set_xlabel("actual", fontsize=9)
    ax.set_ylabel("predicted", fontsize=9)
    ax.set_title(f"{name}: predicted vs actual", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    return png_data_uri(fig)


def _residual_plot(y: np.ndarray, pred: np.ndarray, name: str) -> str:
    rows = _plot_rows(y.size)
    fig, (ax, axh) = _figure(7.0, 3.0, ncols=2, gridspec_kw={"width_ratios": [2, 1]})
    res = y - pred
    ax.scatter(pred[rows], res[rows], s=6, alpha=0.4, color="#c8743a", linewidths=0)
    ax.axhline(0, color="#888", lw=1, ls="--")
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("residual (actual − predicted)", fontsize=9)
    ax.set_title(f"{name}: residuals", fontsize=10)
    axh.hist(res, bins=40, color="#c8743a", alpha=0.8)
    axh.set_xlabel("residual", fontsize=9)
    axh.set_title("distribution", fontsize=10)
    for a in (ax, axh):
        a.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return png_data_uri(fig)


def _importance_plot(values: dict[str, float], *, title: str, xlabel: str) -> str:
    top = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:TOP_FEATURES]
    top.reverse()  # barh draws bottom-up; the largest goes on top
    fig, ax = _figure(5.5, 0.6 + 0.24 * max(1, len(top)))
    ax.barh([k for k, _ in top], [v for _, v in top], color="#3b6ea8")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return png_data_uri(fig)


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


def _ci(m: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A :mod:`zimo.eval.html` CI dict from a metrics dict of :mod:`zimo.tabular.metrics`."""
    if m.get(key) is None:
        return None
    lo, hi = (m.get("ci") or {}).get(key, [None, None])
    return {
        "value": m[key],
        "low": lo,
        "high": hi,
        "n": m.get("n"),
        "n_boot": m.get("n_boot"),
        "confidence": m.get("confidence", 0.95),
        "method": (m.get("methods") or {}).get(key, ""),
    }


def _regression_sections(
    y: np.ndarray,
    systems: dict[str, dict],
    metrics: dict[str, dict],
    notes: Footnotes,
) -> list[Section]:
    main = next(iter(systems))
    tol = float(metrics.get(main, {}).get("tolerance", 5.0))
    ms = {
        name: metrics.get(name)
        or regression_metrics(y, np.asarray(s["pred"], dtype=np.float64), tolerance=tol)
        for name, s in systems.items()
    }
    rows = [
        {"system": name, **{k: _ci(m, k) for k in ("mae", "rmse", "r2", "mape", "within_tol")}}
        for name, m in ms.items()
    ]
    cols = [
        Column("mae", "MAE", digits=-3, higher_is_better=False),
        Column("rmse", "RMSE", digits=-3, higher_is_better=False),
        Column("r2", "R²", digits=3),
        Column("mape", "MAPE", digits=1, scale=100, unit="%", higher_is_better=False),
        Column("within_tol", f"within ±{tol:g}", digits=1, scale=100, unit="%"),
    ]
    table = headline_table(rows, cols, notes)
    names = list(ms)
    mae_bars = bar_plot(
        names, [_ci(ms[n], "mae") for n in names], title="MAE by system", ylabel="MAE"
    )
    pred = np.asarray(systems[main]["pred"], dtype=np.float64)
    out = [
        Section(
            "Headline metrics",
            Markup(
                '{}<p class="note">Shaded = best in column, bold when its CI does not '
                "overlap the runner-up's. MAPE skips rows whose true value is 0 ({} of {} "
                'rows used).</p><div class="grid">{}</div>'
            ).format(
                table,
                ms[main].get("mape_rows", "?"),
                ms[main].get("n", y.size),
                img(mae_bars, "MAE by system with 95% CI"),
            ),
            "metrics",
        ),
        Section(
            f"Errors of {main}",
            Markup('<div class="grid">{}{}</div>').format(
                img(_pred_vs_actual(y, pred, main), f"{main}: predicted vs actual"),
                img(_residual_plot(y, pred, main), f"{main}: residuals"),
            ),
            "errors",
        ),
    ]
    with_iv = {
        n: s for n, s in systems.items() if s.get("lo") is not None and s.get("hi") is not None
    }
    if with_iv:
        body = []
        for name, s in with_iv.items():
            c = interval_coverage(y, s["lo"], s["hi"])
            body.append(
                f"<tr><th>{escape(name)}</th><td class='n'>{fmt(c['coverage'], 1, 100, '%')}</td>"
                f"<td class='n'>{fmt(c['below'], 1, 100, '%')}</td>"
                f"<td class='n'>{fmt(c['above'], 1, 100, '%')}</td>"
                f"<td class='n'>{fmt(c['mean_width'], -3)}</td></tr>"
            )
        out.append(
            Section(
                "Prediction intervals",
                Markup(
                    "<table><thead><tr><th>system</th><th>coverage</th><th>below</th>"
                    "<th>above</th><th>mean width</th></tr></thead><tbody>{}</tbody></table>"
                    '<p class="note">Coverage = share of test rows whose true value lies in '
                    "[lo, hi]; below / above = share under the lower / over the upper bound."
                    "</p>"
                ).format(Markup("".join(body))),
                "intervals",
            )
        )
    return out


def _classification_sections(
    y: np.ndarray,
    systems: dict[str, dict],
    metrics: dict[str, dict],
    notes: Footnotes,
) -> list[Section]:
    main = next(iter(systems))
    classes = (metrics.get(main) or {}).get("confusion", {}).get("labels")
    k = int(max(y.max(), *(np.max(s["pred"]) for s in systems.values()))) + 1
    classes = list(classes) if classes else [str(i) for i in range(k)]
    ms: dict[str, dict] = {}
    for name, s in systems.items():
        m = metrics.get(name)
        if m is None:
            proba = s.get("proba")
            if proba is None:  # hard predictions only: a one-hot "probability" gives the counts
                proba = np.eye(len(classes))[np.asarray(s["pred"], dtype=np.int64)]
            m = classification_metrics(y, proba, classes)
        ms[name] = m
    rows = [
        {
            "system": name,
            "accuracy": _ci(m, "accuracy"),
            "macro_f1": _ci(m, "macro_f1"),
            "log_loss": m.get("log_loss"),
            "ece": _ci(m, "ece"),
        }
        for name, m in ms.items()
    ]
    cols = [
        Column("accuracy", "accuracy", digits=1, scale=100, unit="%"),
        Column("macro_f1", "macro-F1", digits=1, scale=100, unit="%"),
        Column(
            "log_loss",
            "log loss",
            digits=3,
            higher_is_better=False,
            note="mean negative log-likelihood of the true class (natural log)",
        ),
        Column("ece", "ECE", digits=1, scale=100, unit="%", higher_is_better=False),
    ]
    names = list(ms)
    f1_bars = bar_plot(
        names,
        [_ci(ms[n], "macro_f1") for n in names],
        title="macro-F1 by system",
        ylabel="macro-F1 (%)",
        scale=100,
    )
    per_class = "".join(
        f"<tr><th>{escape(c)}</th>"
        + "".join(
            f"<td class='n'>{fmt((ms[n].get('per_class_f1') or {}).get(c), 1, 100, '%')}</td>"
            for n in names
        )
        + "</tr>"
        for c in classes
    )
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    confusion = ms[main].get("confusion") or {
        "labels": classes,
        "matrix": _confusion(y, np.asarray(systems[main]["pred"]), len(classes)),
    }
    return [
        Section(
            "Headline metrics",
            Markup('{}<div class="grid">{}</div>').format(
                headline_table(rows, cols, notes), img(f1_bars, "macro-F1 by system with 95% CI")
            ),
            "metrics",
        ),
        Section(
            "Per-class F1",
            Markup(
                "<table><thead><tr><th>class</th>{}</tr></thead><tbody>{}</tbody></table>"
            ).format(Markup(head), Markup(per_class)),
            "per-class",
        ),
        Section(
            f"Confusion matrix of {main}",
            confusion_table(confusion, title=f"{main} on the test split"),
            "confusion",
        ),
    ]


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> list[list[int]]:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y.astype(np.int64), pred.astype(np.int64)), 1)
    return m.tolist()


def _importance_section(importance: dict[str, dict[str, float]]) -> Section:
    labels = {
        "gain": ("LightGBM split gain (top 20)", "total gain of splits on the feature"),
        "shap": ("mean |SHAP| (top 20)", "mean |SHAP value| (raw-score units)"),
    }
    imgs = [
        img(
            _importance_plot(
                vals,
                title=labels.get(kind, (kind, kind))[0],
                xlabel=labels.get(kind, (kind, kind))[1],
            ),
            f"importance: {kind}",
        )
        for kind, vals in importance.items()
        if vals
    ]
    return Section(
        "Feature importance",
        Markup(
            '<div class="grid">{}</div><p class="note">Gain favours columns with many distinct '
            "values; SHAP shows how far each feature moves the prediction on average.</p>"
        ).format(Markup("".join(imgs))),
        "importance",
    )


def _columns_section(columns: Sequence[dict]) -> Section:
    rows = "".join(
        "<tr><th>{}</th><td>{}</td><td>{}</td></tr>".format(
            escape(str(c.get("name", ""))),
            escape(str(c.get("kind", ""))),
            escape(str(c.get("reason", "") or "")),
        )
        for c in columns
    )
    return Section(
        "Input columns",
        Markup(
            "<table><thead><tr><th>column</th><th>used as</th><th>why</th></tr></thead>"
            "<tbody>{}</tbody></table>"
        ).format(Markup(rows)),
        "columns",
    )


def write_report(
    out_dir: Path,
    *,
    title: str,
    task: Task,
    y_true: Sequence[float] | np.ndarray,
    systems: dict[str, dict],
    metrics: dict[str, dict],
    importance: dict[str, dict[str, float]] | None,
    columns: list[dict],
    notes: list[str],
) -> Path:
    """Write ``out_dir/report.html`` and return its path.

    ``systems`` maps a system name to ``{"pred": ..., "proba"?: (n, k), "lo"?/"hi"?: ...}``;
    the first is the main system (the one the plots show). ``metrics`` maps system names to
    :func:`regression_metrics` / :func:`classification_metrics` results; a system missing
    there is scored here with default settings. ``notes`` (plain text) are listed at the top.
    """
    if not systems:
        raise ValueError("a report needs at least one system")
    if task not in ("regression", "binary", "multiclass"):
        raise ValueError(f"unknown task {task!r}")
    y = np.asarray(y_true, dtype=np.float64 if task == "regression" else np.int64).ravel()
    for name, s in systems.items():
        if len(s["pred"]) != y.size:
            raise ValueError(f"system {name!r} has {len(s['pred'])} predictions for {y.size} rows")
    fn = Footnotes()
    sections: list[Section] = []
    if notes:
        items = Markup("").join(Markup("<li>{}</li>").format(n) for n in notes)
        sections.append(Section("Notes", Markup("<ul>{}</ul>").format(items), "notes-top"))
    if task == "regression":
        sections += _regression_sections(y, systems, metrics, fn)
    else:
        sections += _classification_sections(y, systems, metrics, fn)
    if importance:
        sections.append(_importance_section(importance))
    if columns:
        sections.append(_columns_section(columns))
    page = render_page(
        title,
        sections,
        fn,
        subtitle=f"{task} · {y.size} test rows · systems: {', '.join(systems)}",
    )
    return write_html(Path(out_dir) / "report.html", page)
