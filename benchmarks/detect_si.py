"""The detection benchmark's section on rewritten text (HC3-Plus "semantic-invariant" tasks).

Called by ``benchmarks/detect.py`` (``--si``). The data, ``hc3plus_zh_si_val.jsonl``, holds
Chinese sentences and passages, label 1 = a ChatGPT paraphrase, summary or translation of human
text. Its licence allows tests and benchmarks only, so nothing shipped is fitted on it: the
shipped ``combined`` score is fitted on the HC3 QA dev file and only *measured* here. Beside it,
a combined model cross-fitted on this file (5 stratified folds; the file has no task-type field
to split by) shows what a user gets after calibrating on labelled text of their own of this
kind (``zimo guard calibrate``), and a transfer check fits on the short texts and tests on the
long ones (a different length band, and so mostly different documents and tasks).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from zimo.guard.calibration import tpr_at_fpr
from zimo.guard.scores import (
    FEATURES,
    LEGACY_FEATURES,
    SIMPLE_SCORES,
    combined_from_stats,
    combined_scores,
    feature_matrix,
    fit_combined,
    out_of_fold_combined,
    simple_score,
)

SI_FILE = "hc3plus_zh_si_val.jsonl"
HEADLINE_CHARS = 80
CHAR_BANDS = [(1, 20), (20, 40), (40, 80), (80, 160), (160, 10**9)]
TOKEN_BANDS = [(1, 16), (16, 32), (32, 48), (48, 64), (64, 128), (128, 10**9)]


def si_rows(data: Path, n_short: int, seed: int = 0) -> list[dict]:
    """Every SI text of at least ``HEADLINE_CHARS`` characters and a random ``n_short`` of the
    shorter ones (enough for the length bands; scoring all 4,500 short texts adds little)."""
    rows = [json.loads(x) for x in (data / SI_FILE).read_text("utf-8").splitlines()]
    long = [r for r in rows if len(r["text"]) >= HEADLINE_CHARS]
    short = [r for r in rows if len(r["text"]) < HEADLINE_CHARS]
    random.Random(seed).shuffle(short)
    return long + short[:n_short]


def _auroc(s, y) -> float:
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(s, float), np.asarray(y)
    ok = ~np.isnan(s)
    return float(roc_auc_score(y[ok], s[ok])) if len(set(y[ok])) == 2 else float("nan")


def _m(s, y) -> dict:
    s, y = np.asarray(s, float), np.asarray(y)
    return {
        "auroc": _auroc(s, y),
        "tpr_at_1fpr": tpr_at_fpr(s, y, 0.01),
        "tpr_at_5fpr": tpr_at_fpr(s, y, 0.05),
        "n": int(len(y)),
        "machine": int(y.sum()),
    }


def si_section(
    rows: list[dict],
    stats,
    qa_stats,
    qa_y: np.ndarray,
    shipped: dict,
    min_tokens: int,
) -> dict:
    """Every score on the SI texts by length band; ``shipped`` = the combined model fitted on
    the QA dev file (what ``zimo guard score`` uses)."""
    y = np.array([int(r["label"]) for r in rows])
    chars = np.array([len(r["text"]) for r in rows])
    ntok = np.array([s.n_tokens for s in stats])
    qa_ntok = np.array([s.n_tokens for s in qa_stats])
    qa_keep = qa_ntok >= min_tokens
    head = chars >= HEADLINE_CHARS

    scores: dict[str, np.ndarray] = {}
    for name in SIMPLE_SCORES:
        scores[name] = np.array([simple_score(name, s) for s in stats])
    # Each new feature alone (higher = machine by construction).
    for name in FEATURES:
        if name not in ("logrank", "loglik"):
            scores[f"feature:{name}"] = feature_matrix(stats, (name,))[:, 0]
    # Fitted on QA dev only, so never on this file.
    legacy = fit_combined(
        feature_matrix(qa_stats, LEGACY_FEATURES)[qa_keep], qa_y[qa_keep], names=LEGACY_FEATURES
    )
    scores["combined, old features (fit on QA)"] = combined_scores(
        feature_matrix(stats, LEGACY_FEATURES), legacy
    )
    scores["combined, seven features (fit on QA)"] = combined_scores(
        feature_matrix(stats, FEATURES),
        fit_combined(feature_matrix(qa_stats, FEATURES)[qa_keep], qa_y[qa_keep]),
    )
    scores["combined + hidden head, one joint model (fit on QA)"] = combined_scores(
        feature_matrix(stats, FEATURES, True),
        fit_combined(feature_matrix(qa_stats, FEATURES, True)[qa_keep], qa_y[qa_keep], hidden=True),
    )
    scores["combined + hidden head, two models (fit on QA)"] = combined_scores(
        feature_matrix(stats, FEATURES, True),
        fit_combined(feature_matrix(qa_stats, FEATURES, True)[qa_keep], qa_y[qa_keep], head=True),
    )
    scores["combined shipped (fit on QA)"] = combined_from_stats(stats, shipped)
    # Cross-fitted on the headline texts: each text scored by a model not fitted on it.
    Xh = feature_matrix(stats, FEATURES, True)
    cross = np.full(len(y), np.nan)
    cross_feat = np.full(len(y), np.nan)
    cross[head] = np.mean(
        [out_of_fold_combined(Xh[head], y[head], seed=k, hidden=True) for k in range(3)], 0
    )
    Xf = feature_matrix(stats)
    cross_feat[head] = np.mean(
        [out_of_fold_combined(Xf[head], y[head], seed=k) for k in range(3)], 0
    )
    scores["combined cross-fitted on SI (features only)"] = cross_feat
    scores["combined cross-fitted on SI (features + hidden head)"] = cross

    headline = {k: _m(v[head], y[head]) for k, v in scores.items()}
    by_chars, by_tokens = {}, {}
    for lo, hi in CHAR_BANDS:
        m = (chars >= lo) & (chars < hi)
        key = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
        by_chars[key] = {
            "n": int(m.sum()),
            "machine_share": float(y[m].mean()) if m.any() else None,
        }
        by_chars[key] |= {k: _auroc(v[m], y[m]) for k, v in scores.items()}
    for lo, hi in TOKEN_BANDS:
        m = (ntok >= lo) & (ntok < hi)
        key = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
        by_tokens[key] = {
            "n": int(m.sum()),
            "machine_share": float(y[m].mean()) if m.any() else None,
        }
        by_tokens[key] |= {k: _auroc(v[m], y[m]) for k, v in scores.items()}

    # Does a head fitted on one part of the SI file transfer to another? Fit on the short
    # texts (< HEADLINE_CHARS, >= 8 tokens), test on the headline texts.
    short = ~head & (ntok >= 8)
    transfer = {}
    for label, hidden in (("features only", False), ("features + hidden head", True)):
        X = feature_matrix(stats, FEATURES, hidden)
        if short.sum() >= 50 and len(set(y[short])) == 2:
            model = fit_combined(X[short], y[short], hidden=hidden)
            transfer[f"fit on SI short, test on SI >= {HEADLINE_CHARS} chars ({label})"] = _m(
                combined_scores(X[head], model), y[head]
            )
    # And the other way round: a head fitted on SI applied to QA dev.
    Xq = feature_matrix(qa_stats, FEATURES, True)
    model = fit_combined(Xh[head], y[head], hidden=True)
    transfer["fit on SI >= 80 chars, test on QA dev (features + hidden head)"] = _m(
        combined_scores(Xq, model), qa_y
    )
    return {
        "file": SI_FILE,
        "docs": len(rows),
        "headline_chars": HEADLINE_CHARS,
        "headline_docs": int(head.sum()),
        "headline_machine": int(y[head].sum()),
        "headline": headline,
        "auroc_by_chars": by_chars,
        "auroc_by_tokens": by_tokens,
        "transfer": transfer,
    }


def si_markdown(si: dict) -> list[str]:
    lines = [
        "",
        f"## Rewritten text: HC3-Plus SI dev (`{si['file']}`)",
        "",
        f"{si['docs']} texts scored: all {si['headline_docs']} of >= {si['headline_chars']} "
        f"characters ({si['headline_machine']} machine) and a random sample of the shorter ones. "
        "Nothing shipped is fitted on this file (licence: tests and benchmarks only); the "
        "shipped combined score is fitted on HC3 QA dev. Cross-fitted = 5 stratified folds "
        "over the headline texts, 3 seeds averaged (the file has no task-type field).",
        "",
        f"Headline: texts of >= {si['headline_chars']} characters",
        "",
        "| score | AUROC | TPR@1%FPR | TPR@5%FPR |",
        "|---|---|---|---|",
    ]
    for k, v in si["headline"].items():
        lines.append(
            f"| {k} | {v['auroc']:.3f} | {v['tpr_at_1fpr']:.3f} | {v['tpr_at_5fpr']:.3f} |"
        )
    for title, key in (("characters", "auroc_by_chars"), ("scored tokens", "auroc_by_tokens")):
        names = [
            k for k in si["headline"] if not k.startswith("feature:") and "cross-fitted" not in k
        ]
        lines += [
            "",
            f"AUROC by length ({title}):",
            "",
            "| band | n | machine share | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names),
        ]
        for band, v in si[key].items():
            share = "–" if v["machine_share"] is None else f"{v['machine_share']:.2f}"
            cells = " | ".join(f"{v[n]:.3f}" for n in names)
            lines.append(f"| {band} | {v['n']} | {share} | {cells} |")
    lines += [
        "",
        "Transfer of a fitted head:",
        "",
        "| fit → test | AUROC | TPR@1%FPR |",
        "|---|---|---|",
    ]
    for k, v in si["transfer"].items():
        lines.append(f"| {k} | {v['auroc']:.3f} | {v['tpr_at_1fpr']:.3f} |")
    return lines
