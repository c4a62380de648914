"""The detection benchmark's English section (``benchmarks/detect.py --english N``).

The shipped style adapter and calibration are for Chinese (gecko-zh). English text is scored by
gecko (SmolLM2-135M) with the plain model, and since there is no English calibration the guard
scores it but never flags it. This section measures how well the plain scores would separate
English machine text from human text, so the docs can say what an English calibration could do.

Data, all from ``../shared/data``:

- human: the human-written outputs of the Self-Instruct seed tasks (Apache-2.0; answers to
  instructions, the same genre as the machine side) and the opening of English news articles
  from the article-extraction benchmark (MIT; another genre, so a second human register);
- machine: GPT-4 answers from ``alpaca_en_1k.json`` (CC BY-NC: measured here, never fitted on
  for anything shipped).

Only texts of at least ``MIN_CHARS`` characters are used; each article contributes its first
paragraphs up to ``ARTICLE_CHARS`` characters. Nothing is fitted: the simple scores are
zero-shot, and the combined score is reported cross-fitted (5 stratified folds) to show what a
calibration fitted on such English text would reach.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np

from detect_si import _auroc, _m
from zimo.guard.scores import SIMPLE_SCORES, feature_matrix, out_of_fold_combined, simple_score

MIN_CHARS = 150
ARTICLE_CHARS = 800
CHAR_BANDS = [(150, 300), (300, 600), (600, 10**9)]


def _article_openings(data: Path) -> list[str]:
    """The first paragraphs (up to ``ARTICLE_CHARS`` characters) of each English article."""
    truth = json.loads(
        (data / "webpages/article-extraction-benchmark/ground-truth.json").read_text()
    )
    out = []
    for art in truth.values():
        body = art.get("articleBody") or ""
        text = ""
        for para in re.split(r"\n+", body):
            if len(text) + len(para) > ARTICLE_CHARS and text:
                break
            text = f"{text}\n{para}".strip()
        letters = [c for c in text if c.isalpha()]
        latin = sum(c.isascii() for c in letters)
        if len(text) >= MIN_CHARS and letters and latin / len(letters) > 0.95:
            out.append(text)
    return out


def en_rows(data: Path, n: int, seed: int = 0) -> list[dict]:
    """Up to ``n`` human texts (seed outputs first, then article openings) and as many machine
    ones, each ``{"text", "label", "source"}``."""
    seeds = [
        json.loads(x) for x in (data / "self_instruct_seed_tasks.jsonl").read_text().splitlines()
    ]
    human = [
        {"text": i["output"], "label": 0, "source": "self-instruct seed output"}
        for r in seeds
        for i in r["instances"]
        if len(i["output"]) >= MIN_CHARS
    ]
    human += [
        {"text": t, "label": 0, "source": "news article opening"} for t in _article_openings(data)
    ]
    rng = random.Random(seed)
    human = human[:n]
    gpt4 = [
        r["output"]
        for r in json.loads((data / "alpaca_en_1k.json").read_text())
        if len(r["output"]) >= MIN_CHARS
    ]
    rng.shuffle(gpt4)
    machine = [
        {"text": t, "label": 1, "source": "alpaca_en GPT-4 answer"} for t in gpt4[: len(human)]
    ]
    return human + machine


def en_section(rows: list[dict], stats, model: str) -> dict:
    """Every zero-shot score, and the combined score cross-fitted, on the English texts."""
    y = np.array([r["label"] for r in rows])
    chars = np.array([len(r["text"]) for r in rows])
    scores = {name: np.array([simple_score(name, s) for s in stats]) for name in SIMPLE_SCORES}
    X = feature_matrix(stats)
    scores["combined cross-fitted on these texts"] = np.mean(
        [out_of_fold_combined(X, y, seed=k) for k in range(3)], 0
    )
    # log-rank against each human register alone (all machine texts on the other side).
    src = np.array([r["source"] for r in rows])
    human_only = {
        name: _m(scores["logrank"][(y == 1) | (src == name)], y[(y == 1) | (src == name)])
        for name in sorted(set(src[y == 0]))
    }
    bands = {}
    for lo, hi in CHAR_BANDS:
        m = (chars >= lo) & (chars < hi)
        key = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
        bands[key] = {"n": int(m.sum()), "machine_share": float(y[m].mean()) if m.any() else None}
        if m.any() and len(set(y[m])) == 2:
            bands[key] |= {k: _auroc(v[m], y[m]) for k, v in scores.items()}
    return {
        "model": model,
        "docs": len(rows),
        "machine": int(y.sum()),
        "mean_tokens": float(np.mean([s.n_tokens for s in stats])),
        "scores": {k: _m(v, y) for k, v in scores.items()},
        "logrank_by_human_source": human_only,
        "auroc_by_chars": bands,
    }


def en_markdown(en: dict) -> list[str]:
    lines = [
        "",
        f"## English text (scored by {en['model']}, plain model, no calibration shipped)",
        "",
        f"{en['docs']} texts of >= {MIN_CHARS} characters, {en['machine']} machine (GPT-4 answers, "
        "alpaca_en); human = Self-Instruct seed outputs and news article openings. Mean "
        f"{en['mean_tokens']:.0f} scored tokens. The guard scores English text but never flags it "
        "(no English calibration).",
        "",
        "| score | AUROC | TPR@1%FPR | TPR@5%FPR |",
        "|---|---|---|---|",
    ]
    for k, v in en["scores"].items():
        lines.append(
            f"| {k} | {v['auroc']:.3f} | {v['tpr_at_1fpr']:.3f} | {v['tpr_at_5fpr']:.3f} |"
        )
    lines += ["", "log-rank AUROC against each human source alone:", ""]
    for k, v in en["logrank_by_human_source"].items():
        lines.append(f"- {k}: {v['auroc']:.3f} (TPR@1%FPR {v['tpr_at_1fpr']:.3f})")
    lines += ["", "log-rank AUROC by length (characters):", ""]
    for band, v in en["auroc_by_chars"].items():
        auc = v.get("logrank")
        share = "–" if v["machine_share"] is None else f"{v['machine_share']:.2f}"
        lines.append(
            f"- {band}: {'–' if auc is None else f'{auc:.3f}'} ({v['n']} texts, machine share {share})"
        )
    return lines
