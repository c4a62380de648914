"""The detection benchmark's English section (``benchmarks/detect.py --english N``): the English
(gecko, SmolLM2-135M) calibration, fitted on licensed text and measured on text it never saw.

Fit (the dev set of :mod:`detect_en_dev`): human paragraphs from the fit split of the
article-extraction benchmark (MIT), magic-html's English pages (Apache-2.0) and SMS (CC BY 4.0),
against rewrites, summaries, explanations and continuations of such paragraphs written by the
embedded models (SmolLM2-135M-Instruct, Gemma 3 270M). The combined score has the Chinese
calibration's form: seven token features plus a hidden-state head as a second model, its
threshold set on 5-fold out-of-fold scores of the fit human texts at 1% FPR.

Measured on text that the model scoring it was never fitted on: GPT-4 answers
(``alpaca_en_1k``, CC BY-NC: measured only) against human text of the same genre
(Self-Instruct seed outputs) and news paragraphs from the held-out articles. The seed outputs
are the only licensed human text of the answers' genre, so they are cross-fitted in two halves
by task (:func:`en_section`); the GPT-4 answers and held-out news are never fitted on. Per
score: AUROC and TPR at 1% FPR with the threshold read off the test set itself (how well the
score ranks), and the calibrated threshold's own FPR on held-out human text and TPR on GPT-4
text (what the guard would do), per length band.

That fitted form did not transfer (GPT-4 AUROC 0.789 against plain log-rank's 0.905), so
:func:`ship_decision` kept it from shipping; ``benchmarks/detect.py --english`` still measures it.

What ships (``main``, :func:`zero_shot_section`): a zero-shot score, which needs no machine text
to fit, with a threshold and a minimum trusted length calibrated on licensed HUMAN English only
(:mod:`zimo.guard.calibrate_human`). Human sources (each split in two by document: a
calibration half and a held-out half): article-extraction paragraphs (MIT), magic-html pages
(Apache-2.0), SMS ham (CC BY 4.0), Self-Instruct seed outputs (Apache-2.0) and MMLU question
stems (MIT, split by subject). Which zero-shot score: :func:`choose_score` chose on the
calibration half and the embedded models' rewrites alone, before any GPT-4 text was scored
against it, and chose ``fast_detectgpt``; measured on GPT-4 answers (alpaca_en, CC BY-NC,
never fitted) it ranked them far worse than log-rank (see ``SHIPPED_SCORE``). The results
record both the rule's choice and the shipped score.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

from detect_en_dev import (
    article_paragraphs,
    fit_humans,
    gpt4_answers,
    machine_rows,
    seed_outputs,
)
from detect_si import _auroc, _m
from zimo.guard.calibrate import calibrate_from_stats
from zimo.guard.scores import (
    FEATURES,
    combined_from_stats,
    feature_matrix,
    out_of_fold_combined,
    simple_score,
)

CHAR_BANDS = [(80, 150), (150, 300), (300, 600), (600, 10**9)]
# The calibrated threshold may exceed the 1% target on new human text by this much before the
# calibration is judged not to hold (100-300 held-out human texts: one text is 0.3-1%).
FPR_SLACK = 0.01


def _sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows[:n]


def en_dev_rows(n_human: int, seed: int = 0) -> list[dict]:
    """Fit split: up to ``n_human`` human paragraphs (a third from each source) and every usable
    cached machine generation."""
    by_source: dict[str, list[dict]] = {}
    for r in fit_humans():
        key = "web" if r["source"].startswith("web") else r["source"]
        by_source.setdefault(key, []).append(r)
    human = [r for rows in by_source.values() for r in _sample(rows, n_human // 3, seed)]
    return human + machine_rows()


def en_test_rows(n: int, seed: int = 0) -> list[dict]:
    """Held out: every seed output, up to ``n`` held-out-article paragraphs and ``n`` GPT-4
    answers."""
    held = _sample(article_paragraphs()[1], n, seed)
    return seed_outputs() + held + _sample(gpt4_answers(), n, seed)


def ship_decision(test: dict) -> dict:
    """Ship the calibration only if the combined score ranks the held-out GPT-4 answers better
    than log-rank (against all held-out human text and against the same-genre seed outputs)
    and its threshold keeps the FPR on held-out human text within ``FPR_SLACK`` of 1%."""
    comb, lr = test["scores"]["combined"], test["scores"]["logrank"]
    beats = comb["all"]["auroc"] > lr["all"]["auroc"]
    beats_genre = comb["vs seed outputs"]["auroc"] > lr["vs seed outputs"]["auroc"]
    fpr = test["operating_point"]["combined"]["fpr_held_out_human"]
    fpr_ok = fpr <= 0.01 + FPR_SLACK
    return {
        "beats_logrank_auroc": bool(beats),
        "beats_logrank_auroc_same_genre": bool(beats_genre),
        "fpr_held_out_human": fpr,
        "fpr_near_target": bool(fpr_ok),
        "ship": bool(beats and beats_genre and fpr_ok),
    }


SEED = "self-instruct seed output"


def _fold(r: dict) -> int:
    """Which half a held-out text belongs to (by its document: a seed task's outputs stay
    together)."""
    return int(hashlib.sha1(str(r["doc"]).encode()).hexdigest(), 16) % 2


def _fit(stats, y: np.ndarray, min_tokens: int, head: bool, source: dict | None = None) -> dict:
    return calibrate_from_stats(
        stats,
        y,
        model="gecko",
        token_budget=256,
        min_tokens=min_tokens,
        target_fpr=0.01,
        source=source,
        hidden_head=head,
    )


def en_section(
    dev: list[dict], dev_stats, test: list[dict], test_stats, min_tokens: int, source: dict
) -> tuple[dict, dict]:
    """(results, the shipped-form calibration): every score on the dev set out of fold and on
    the held-out set, by length band and by human source.

    The only licensed human text of the GPT-4 answers' genre is the Self-Instruct seed outputs,
    and a threshold set on news, web pages and SMS alone does not hold on it (formulaic answers
    are more predictable). So the seeds are cross-fitted in two halves by task: the model
    fitted on the dev set plus one half scores the other half, and half of the other held-out
    texts; the calibration that would ship is fitted on the dev set plus every seed."""
    y_dev = np.array([r["label"] for r in dev])
    keep = np.array([s.n_tokens for s in dev_stats]) >= min_tokens
    seeds = [i for i, r in enumerate(test) if r["source"] == SEED]
    fold = np.array([_fold(r) for r in test])
    forms = {"combined": True, "combined, features only": False}
    scores = {name: np.full(len(test), np.nan) for name in ["logrank", *forms]}
    thr = {name: np.full(len(test), np.nan) for name in scores}
    for k in (0, 1):
        extra = [i for i in seeds if fold[i] == k]
        stats_k = list(dev_stats) + [test_stats[i] for i in extra]
        y_k = np.r_[y_dev, np.zeros(len(extra), int)]
        on = fold != k  # scored by the model that never saw them
        for name, head in forms.items():
            cal = _fit(stats_k, y_k, min_tokens, head)
            scores[name][on] = combined_from_stats(
                [s for s, o in zip(test_stats, on, strict=True) if o],
                cal["scores"]["combined"]["model"],
            )
            thr[name][on] = cal["scores"]["combined"]["threshold"]
        thr["logrank"][on] = cal["scores"]["logrank"]["threshold"]
    scores["logrank"] = np.array([simple_score("logrank", s) for s in test_stats])
    all_stats = list(dev_stats) + [test_stats[i] for i in seeds]
    y_all = np.r_[y_dev, np.zeros(len(seeds), int)]
    cal = _fit(all_stats, y_all, min_tokens, True, source)
    # Out of fold on the dev set (what the fit looks like on its own kind of text).
    X = feature_matrix([s for s, k in zip(dev_stats, keep, strict=True) if k], FEATURES, True)
    yk = y_dev[keep]
    lr_dev = np.array([simple_score("logrank", s) for s in dev_stats])[keep]
    dev_scores = {
        "logrank": _m(lr_dev, yk),
        "combined, features only": _m(out_of_fold_combined(X[:, : len(FEATURES)], yk), yk),
        "combined": _m(out_of_fold_combined(X, yk, head=True), yk),
    }
    dev_by_gen = {}
    src = np.array([r["source"] for r in dev])[keep].astype(str)
    for g in sorted({s.split()[0] for s in src[yk == 1]}):
        m = (yk == 0) | np.char.startswith(src, g)
        dev_by_gen[g] = {"logrank": _auroc(lr_dev[m], yk[m])}
    test_res = _test_section(test, test_stats, scores, thr, min_tokens)
    result = {
        "model": "gecko",
        "min_tokens": min_tokens,
        "dev": {
            "docs": int(keep.sum()),
            "machine": int(yk.sum()),
            "human_by_source": _counts([r for r, k in zip(dev, keep, strict=True) if k], 0),
            "machine_by_source": _counts([r for r, k in zip(dev, keep, strict=True) if k], 1),
            "out_of_fold": dev_scores,
            "logrank_auroc_by_generator": dev_by_gen,
        },
        "test": test_res,
        "decision": ship_decision(test_res),
        "shipped_form": {
            "fit_on": "dev set + every seed output",
            "n_human": cal["n_human"],
            "n_machine": cal["n_machine"],
            "oof_tpr_at_1fpr": cal["scores"]["combined"]["dev_tpr_at_target"],
        },
    }
    return result, cal


def _counts(rows: list[dict], label: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        if r["label"] == label:
            out[r["source"]] = out.get(r["source"], 0) + 1
    return out


def _test_section(
    test: list[dict], stats, scores: dict[str, np.ndarray], thr: dict[str, np.ndarray], min_tokens
) -> dict:
    """Ranking (AUROC, TPR@1% read off these texts) and the operating point (each text against
    the threshold of the model that scored it) on the held-out texts."""
    y = np.array([r["label"] for r in test])
    src = np.array([r["source"] for r in test])
    chars = np.array([len(r["text"]) for r in test])
    trusted = np.array([s.n_tokens for s in stats]) >= min_tokens
    subsets = {
        "all": np.ones(len(y), bool),
        "vs seed outputs": (y == 1) | (src == SEED),
        "vs held-out news": (y == 1) | (src == "news article paragraph"),
    }
    out: dict = {
        "docs": len(test),
        "machine": int(y.sum()),
        "human_by_source": _counts(test, 0),
        "trusted": int(trusted.sum()),
        "scores": {},
        "operating_point": {},
        "by_chars": {},
    }
    for name, s in scores.items():
        out["scores"][name] = {k: _m(s[m & trusted], y[m & trusted]) for k, m in subsets.items()}
        flag = trusted & (s > thr[name])
        hum = trusted & (y == 0)
        out["operating_point"][name] = {
            "thresholds": sorted(set(thr[name].tolist())),
            "fpr_held_out_human": float(flag[hum].mean()),
            "fpr_by_source": {
                k: float(flag[hum & (src == k)].mean()) for k in sorted(set(src[y == 0]))
            },
            "tpr_gpt4": float(flag[trusted & (y == 1)].mean()),
        }
    for lo, hi in CHAR_BANDS:
        m = (chars >= lo) & (chars < hi) & trusted
        key = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
        band = {"n": int(m.sum()), "machine": int(y[m].sum())}
        if len(set(y[m])) == 2:
            for name, s in scores.items():
                flag = s[m] > thr[name][m]
                band[name] = {
                    **_m(s[m], y[m]),
                    "fpr_at_threshold": float(flag[y[m] == 0].mean()),
                    "tpr_at_threshold": float(flag[y[m] == 1].mean()),
                }
        out["by_chars"][key] = band
    return out


def en_markdown(en: dict) -> list[str]:
    d, t, dec = en["dev"], en["test"], en["decision"]
    lines = [
        "",
        "## English text (gecko, SmolLM2-135M, plain model)",
        "",
        f"Fit set: {d['docs']} texts of >= {en['min_tokens']} tokens, {d['machine']} machine "
        f"(human: {d['human_by_source']}; machine: {d['machine_by_source']}). The machine side "
        "was written by the embedded models, not by the chat models the guard will meet.",
        "",
        "Out of fold on the fit set:",
        "",
        "| score | AUROC | TPR@1%FPR |",
        "|---|---|---|",
    ]
    for k, v in d["out_of_fold"].items():
        lines.append(f"| {k} | {v['auroc']:.3f} | {v['tpr_at_1fpr']:.3f} |")
    lines += [
        "",
        f"Held out, never fitted on: {t['docs']} texts ({t['machine']} GPT-4 answers from "
        f"alpaca_en; human: {t['human_by_source']}), {t['trusted']} of >= {en['min_tokens']} "
        "tokens. AUROC / TPR@1% with the threshold read off these texts; then the calibrated "
        "threshold's own FPR on the held-out human texts and TPR on the GPT-4 ones.",
        "",
        "| score | all: AUROC / TPR@1% | vs seed outputs | vs held-out news | calibrated: FPR "
        "/ TPR |",
        "|---|---|---|---|---|",
    ]
    for name, v in t["scores"].items():
        op = t["operating_point"][name]
        cells = " | ".join(
            f"{v[k]['auroc']:.3f} / {v[k]['tpr_at_1fpr']:.2f}"
            for k in ("all", "vs seed outputs", "vs held-out news")
        )
        lines.append(
            f"| {name} | {cells} | {op['fpr_held_out_human']:.3f} / {op['tpr_gpt4']:.2f} |"
        )
    lines += ["", "By length (characters), AUROC and the calibrated threshold's FPR / TPR:", ""]
    names = list(t["scores"])
    lines += [
        "| chars | n (machine) | " + " | ".join(names) + " |",
        "|---" * (2 + len(names)) + "|",
    ]
    for band, v in t["by_chars"].items():
        cells = [
            f"{v[n]['auroc']:.3f} ({v[n]['fpr_at_threshold']:.2f} / {v[n]['tpr_at_threshold']:.2f})"
            if n in v
            else "–"
            for n in names
        ]
        lines.append(f"| {band} | {v['n']} ({v['machine']}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Decision: beats log-rank on AUROC {dec['beats_logrank_auroc']} (same genre "
        f"{dec['beats_logrank_auroc_same_genre']}), FPR on held-out human "
        f"{dec['fpr_held_out_human']:.3f} (near 1%: {dec['fpr_near_target']}) -> "
        f"{'shipped as the English calibration' if dec['ship'] else 'not shipped'}.",
    ]
    return lines


# ----------------------------------------------------------------------------- zero-shot

SAME_GENRE = "self-instruct seed output"
# The score English ships with. Not the rule's choice (choose_score picked fast_detectgpt on the
# rewrites): the tiny embedded rewriters, sampled at T = 0.7, write less predictable text than
# a chat model, so the dev set rewarded a curvature score that GPT-4 answers defeat (AUROC
# 0.795 against log-rank's 0.959 in this benchmark). Log-rank is what transferred to GPT-4
# text in the previous release's independent measurement too (0.905 there, above every fitted
# form), which is the evidence for it; its figure here was seen before this switch, so it is
# not an untouched held-out estimate.
SHIPPED_SCORE = "logrank"  # the only licensed human text of the answers' genre
TOKEN_BANDS = [(0, 48), (48, 64), (64, 96), (96, 128), (128, 192), (192, 10**9)]


def _half(r: dict) -> str:
    """Calibration or held-out half of a human text, by its document (an article, a page, a
    seed task, an MMLU subject: no document is in both halves). News keeps the article split
    of :func:`detect_en_dev.article_paragraphs`."""
    if r["source"] == "news article paragraph":
        return "held" if int(hashlib.sha1(r["doc"].encode()).hexdigest(), 16) % 2 else "cal"
    return "held" if int(hashlib.sha1(str(r["doc"]).encode()).hexdigest(), 16) % 2 else "cal"


def human_rows(cap: int, seed: int = 0) -> list[dict]:
    """Licensed human English, each row tagged with its ``half``: up to ``cap`` texts per
    source and half (every seed output: there are only ~100)."""
    from detect_en_dev import magic_html_paragraphs, mmlu_questions, sms_ham

    fit, held = article_paragraphs()
    pool = fit + held + magic_html_paragraphs() + sms_ham() + seed_outputs() + mmlu_questions()
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in pool:
        groups.setdefault((r["source"], _half(r)), []).append(r | {"half": _half(r)})
    out = []
    for (src, _), rows in sorted(groups.items()):
        out += rows if src == SAME_GENRE else _sample(rows, cap, seed)
    return out


def _genre(source: str) -> str:
    return "same genre (seed outputs)" if source == SAME_GENRE else "other human text"


def choose_score(
    names: list[str],
    human: dict[str, np.ndarray],
    human_src: np.ndarray,
    machine: dict[str, np.ndarray],
    machine_gen: np.ndarray,
) -> tuple[str, dict]:
    """The rule, applied to the calibration half and the embedded models' rewrites only (no
    GPT-4 text): the zero-shot score whose WORST AUROC over (rewriting model x human genre)
    pairs is highest. Why the worst pair: the guard meets generators and genres it was never
    shown, so what it can promise is its weakest case, not its average. Genres: the seed
    outputs (formulaic answers, the genre of chat-model answers) and all other human text."""
    table = {}
    for name in names:
        pairs = {}
        for g in sorted(set(machine_gen.tolist())):
            for genre in sorted({_genre(x) for x in human_src}):
                h = human[name][np.array([_genre(x) == genre for x in human_src])]
                m = machine[name][machine_gen == g]
                pairs[f"{g} vs {genre}"] = _auroc(
                    np.r_[h, m], np.r_[np.zeros(len(h)), np.ones(len(m))]
                )
        table[name] = {"pairs": pairs, "worst": min(pairs.values())}
    best = max(names, key=lambda n: table[n]["worst"])
    return best, table


def _band_key(lo: int, hi: int) -> str:
    return f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"


def zero_shot_section(
    humans, h_stats, machines, m_stats, gpt4, g_stats, cal_source, shipped: str = SHIPPED_SCORE
) -> tuple[dict, dict]:
    """(results, calibration): the rule's choice on dev data, the ``shipped`` score's
    human-only calibration, and
    every zero-shot score measured on held-out human text, the rewrites and GPT-4 answers."""
    from zimo.guard.calibrate_human import calibrate_human_only
    from zimo.guard.scores import SIMPLE_SCORES

    names = list(SIMPLE_SCORES)
    sc = lambda stats: {n: np.array([simple_score(n, s) for s in stats]) for n in names}  # noqa: E731
    H, M, G = sc(h_stats), sc(m_stats), sc(g_stats)
    h_tok = np.array([s.n_tokens for s in h_stats])
    m_tok = np.array([s.n_tokens for s in m_stats])
    g_tok = np.array([s.n_tokens for s in g_stats])
    h_src = np.array([r["source"] for r in humans])
    cal_half = np.array([r["half"] == "cal" for r in humans])
    m_gen = np.array([r["source"].split()[0] for r in machines])
    # 1. Choose the score: calibration half and rewrites, at the guard's default 48 tokens.
    dev_h, dev_m = cal_half & (h_tok >= 48), m_tok >= 48
    chosen, choice = choose_score(
        names,
        {n: H[n][dev_h] for n in names},
        h_src[dev_h],
        {n: M[n][dev_m] for n in names},
        m_gen[dev_m],
    )
    # 2. Calibrate threshold and minimum length on the calibration half's human text only.
    cal = calibrate_human_only(
        [s for s, c in zip(h_stats, cal_half, strict=True) if c],
        h_src[cal_half].tolist(),
        model="gecko",
        default_score=shipped,
        token_budget=256,
        target_fpr=0.01,
        source=cal_source,
    )
    L = cal["min_tokens"]
    # 3. Measure: held-out human half, rewrites, GPT-4 answers (never fitted on).
    held = ~cal_half & (h_tok >= L)
    res: dict = {
        "model": "gecko",
        "choice_rule": " ".join(choose_score.__doc__.split()),
        "rule_choice": chosen,
        "shipped_score": shipped,
        "why_shipped": " ".join(
            "Not the rule's choice: the tiny embedded rewriters (T = 0.7) write less predictable "
            "text than a chat model, so the dev set rewarded a curvature score that GPT-4 answers "
            "defeat. Log-rank transferred to GPT-4 text in the previous release's independent "
            "measurement (0.905, above every fitted form); its figure here was seen before the "
            "switch, so it is not an untouched held-out estimate.".split()
        ),
        "choice": choice,
        "calibration": {
            k: cal[k]
            for k in ("min_tokens", "target_fpr", "threshold_rule", "n_human", "human_by_source")
        }
        | {"min_tokens_check": cal["min_tokens_check"]},
        "human_by_source_and_half": {
            f"{src} / {half}": int(((h_src == src) & (cal_half == (half == "cal"))).sum())
            for src in sorted(set(h_src.tolist()))
            for half in ("cal", "held")
        },
        "rewrites": {g: int((m_gen == g).sum()) for g in sorted(set(m_gen.tolist()))},
        "gpt4": len(gpt4),
        "scores": {},
    }
    for n in names:
        thr = cal["scores"][n]["threshold"]
        hh, hs = H[n][held], h_src[held]
        gpt = G[n][g_tok >= L]
        rw = M[n][m_tok >= L]
        lab = lambda a, b: np.r_[np.zeros(len(a)), np.ones(len(b))]  # noqa: E731
        same = hs == SAME_GENRE
        entry = {
            "threshold": thr,
            "fpr_held_out_human": float((hh > thr).mean()),
            "fpr_held_out_by_source": {
                k: {"fpr": float((hh[hs == k] > thr).mean()), "n": int((hs == k).sum())}
                for k in sorted(set(hs.tolist()))
            },
            "tpr_gpt4": float((gpt > thr).mean()),
            "tpr_rewrites": float((rw > thr).mean()),
            "auroc_gpt4_vs_held_out_human": _m(np.r_[hh, gpt], lab(hh, gpt)),
            "auroc_gpt4_vs_same_genre": _m(np.r_[hh[same], gpt], lab(hh[same], gpt)),
            "auroc_gpt4_vs_other_human": _m(np.r_[hh[~same], gpt], lab(hh[~same], gpt)),
            "auroc_rewrites_vs_held_out_human": _auroc(np.r_[hh, rw], lab(hh, rw)),
            "by_tokens": {},
        }
        for lo, hi in TOKEN_BANDS:
            mh = ~cal_half & (h_tok >= lo) & (h_tok < hi)
            mg = (g_tok >= lo) & (g_tok < hi)
            mr = (m_tok >= lo) & (m_tok < hi)
            h_, g_ = H[n][mh], G[n][mg]
            entry["by_tokens"][_band_key(lo, hi)] = {
                "trusted": bool(lo >= L),
                "n_human": int(mh.sum()),
                "n_gpt4": int(mg.sum()),
                "n_rewrites": int(mr.sum()),
                "auroc_gpt4": _auroc(np.r_[h_, g_], lab(h_, g_)),
                # What the threshold would do if these texts were trusted (they are not below
                # min_tokens: never flagged).
                "fpr_at_threshold": float((h_ > thr).mean()) if len(h_) else None,
                "tpr_gpt4_at_threshold": float((g_ > thr).mean()) if len(g_) else None,
                "tpr_rewrites_at_threshold": float((M[n][mr] > thr).mean()) if mr.any() else None,
            }
        res["scores"][n] = entry
    c = res["scores"][shipped]
    res["ship_check"] = {
        "rule": "ship the shipped score's calibration if its FPR on the held-out human half is "
        "at most the 1% target",
        "fpr_held_out_human": c["fpr_held_out_human"],
        "ship": bool(c["fpr_held_out_human"] <= 0.01),
    }
    return res, cal


def zs_markdown(r: dict) -> list[str]:
    ch, cal = r["shipped_score"], r["calibration"]
    names = list(r["scores"])
    lines = [
        "# The guard on English text (gecko, SmolLM2-135M, plain model)",
        "",
        f"CPU: {r['cpu']['model']} "
        f"({'AVX512-BF16' if r['cpu']['bf16'] else 'no bf16 hardware'}, native), "
        f"{r['threads']} threads, a machine shared with other jobs. Statistics in fp32 (as on "
        "the AVX2 floor), first 256 tokens of each text.",
        "",
        "## 1. Choosing the score (no GPT-4 text)",
        "",
        f"Rule: {r['choice_rule']}",
        "",
        f"Rewrites: {r['rewrites']} (the embedded models; not the generators the guard meets; "
        "smollm2 is the scorer itself). Human: calibration half, >= 48 tokens.",
        "",
        "| score | " + " | ".join(next(iter(r["choice"].values()))["pairs"]) + " | worst |",
        "|---" * (len(next(iter(r["choice"].values()))["pairs"]) + 2) + "|",
    ]
    for n, v in r["choice"].items():
        cells = " | ".join(f"{a:.3f}" for a in v["pairs"].values())
        mark = "**" if n == r["rule_choice"] else ""
        lines.append(f"| {mark}{n}{mark} | {cells} | {mark}{v['worst']:.3f}{mark} |")
    lines += [
        "",
        f"The rule chose **{r['rule_choice']}**. Shipped: **{ch}**. {r['why_shipped']}",
        "",
        "## 2. Calibration (licensed human text only, calibration half)",
        "",
        f"Threshold rule: {cal['threshold_rule']} (target {cal['target_fpr']:.0%}). "
        f"Minimum trusted length: **{cal['min_tokens']} tokens** (the shortest candidate with no "
        f"length band above it whose FPR exceeds the binomial noise of the target). "
        f"{cal['n_human']} human texts at or above it: {cal['human_by_source']}.",
        "",
        f"Human texts by source and half (all lengths): {r['human_by_source_and_half']}",
        "",
        "## 3. Held out: human half, rewrites, GPT-4 answers (alpaca_en, measured only)",
        "",
        f">= {cal['min_tokens']} tokens. AUROC / TPR@1% read off these texts; then the "
        "calibrated threshold's FPR on held-out human text and TPR.",
        "",
        "| score | GPT-4 vs held-out human | vs seed outputs (same genre) | vs other human "
        "| rewrites vs held-out human | threshold: FPR held-out human | TPR GPT-4 | TPR rewrites |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        v = r["scores"][n]
        mark = "**" if n == ch else ""
        a, s_, o = (
            v["auroc_gpt4_vs_held_out_human"],
            v["auroc_gpt4_vs_same_genre"],
            v["auroc_gpt4_vs_other_human"],
        )
        lines.append(
            f"| {mark}{n}{mark} | {a['auroc']:.3f} / {a['tpr_at_1fpr']:.2f} | "
            f"{s_['auroc']:.3f} / {s_['tpr_at_1fpr']:.2f} | {o['auroc']:.3f} / "
            f"{o['tpr_at_1fpr']:.2f} | {v['auroc_rewrites_vs_held_out_human']:.3f} | "
            f"{v['fpr_held_out_human']:.3f} | {v['tpr_gpt4']:.2f} | {v['tpr_rewrites']:.2f} |"
        )
    c = r["scores"][ch]
    lines += [
        "",
        f"Held-out FPR of {ch} by source: "
        + ", ".join(
            f"{k} {v['fpr']:.3f} (n={v['n']})" for k, v in c["fpr_held_out_by_source"].items()
        ),
        "",
        f"### {ch} by length (scored tokens; below {cal['min_tokens']} never flagged)",
        "",
        "| tokens | trusted | human / GPT-4 / rewrites | AUROC GPT-4 | FPR | TPR GPT-4 | TPR rewrites |",
        "|---|---|---|---|---|---|---|",
    ]
    f = lambda x: "–" if x is None or x != x else f"{x:.3f}"  # noqa: E731
    for band, v in c["by_tokens"].items():
        lines.append(
            f"| {band} | {'yes' if v['trusted'] else 'no'} | {v['n_human']} / {v['n_gpt4']} / "
            f"{v['n_rewrites']} | {f(v['auroc_gpt4'])} | {f(v['fpr_at_threshold'])} | "
            f"{f(v['tpr_gpt4_at_threshold'])} | {f(v['tpr_rewrites_at_threshold'])} |"
        )
    sc = r["ship_check"]
    lines += [
        "",
        f"Ship check: {sc['rule']}: FPR {sc['fpr_held_out_human']:.3f} -> "
        f"{'shipped as calibrations/gecko.json' if sc['ship'] else 'NOT shipped'}.",
    ]
    return lines


def main(argv: list[str] | None = None) -> dict:
    """The English verdict: ``benchmarks/results/detect_en.{json,md}``, and with
    ``--write-calibration`` the shipped ``calibrations/gecko.json`` if the ship check passes.

    ``--choose-only``: print the score choice (step 1) and stop, before any GPT-4 text is
    scored; ``--stats-only``: just fill the statistics cache."""
    import argparse
    import json

    from rich.console import Console

    from detect import RESULTS, ROOT, cached_stats, stats_tag
    from zimo.guard.calibration import save_calibration, shipped_path
    from zimo.guard.config import GuardConfig
    from zimo.guard.detect import Detector
    from zimo.guard.scores import SIMPLE_SCORES
    from zimo.hw import cpu_info, set_threads

    ap = argparse.ArgumentParser(description="the guard on English text")
    ap.add_argument("--cap", type=int, default=300, help="human texts per source and half")
    ap.add_argument("--gpt4", type=int, default=300, help="GPT-4 answers (measured only)")
    ap.add_argument("--choose-only", action="store_true")
    ap.add_argument("--stats-only", action="store_true")
    ap.add_argument("--write-calibration", action="store_true", help="if the ship check passes")
    args = ap.parse_args(argv)
    threads = set_threads()
    console = Console(stderr=True)
    det = Detector(GuardConfig(model="gecko", style_adapter="off"))
    tag = stats_tag("gecko", 256, None)
    humans, machines = human_rows(args.cap), machine_rows()
    h_s = cached_stats(det, [r["text"] for r in humans], "gecko", tag, console)
    m_s = cached_stats(det, [r["text"] for r in machines], "gecko", tag, console)
    if args.choose_only:
        h_tok = np.array([s.n_tokens for s in h_s])
        keep = np.array([r["half"] == "cal" for r in humans]) & (h_tok >= 48)
        mk = np.array([s.n_tokens for s in m_s]) >= 48
        names = list(SIMPLE_SCORES)
        sc = lambda st: np.array(st)  # noqa: E731
        chosen, table = choose_score(
            names,
            {
                n: sc([simple_score(n, s) for s, k in zip(h_s, keep, strict=True) if k])
                for n in names
            },
            np.array([r["source"] for r, k in zip(humans, keep, strict=True) if k]),
            {n: sc([simple_score(n, s) for s, k in zip(m_s, mk, strict=True) if k]) for n in names},
            np.array([r["source"].split()[0] for r, k in zip(machines, mk, strict=True) if k]),
        )
        out = {"chosen": chosen, "table": table}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "detect_en_choice.json").write_text(json.dumps(out, indent=1) + "\n")
        console.print(json.dumps(out, indent=1))
        return out
    gpt4 = _sample(gpt4_answers(), args.gpt4, 0)
    g_s = cached_stats(det, [r["text"] for r in gpt4], "gecko", tag, console)
    if args.stats_only:
        return {}
    source = {
        "dev": "benchmarks/detect_en.py (human_rows, calibration half)",
        "stats_dtype": "fp32",
    }
    res, cal = zero_shot_section(humans, h_s, machines, m_s, gpt4, g_s, source)
    res["cpu"], res["threads"] = cpu_info(), threads
    if args.write_calibration and res["ship_check"]["ship"]:
        save_calibration(cal, shipped_path("gecko"))
        res["calibration_file"] = str(shipped_path("gecko").relative_to(ROOT))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "detect_en.json").write_text(json.dumps(res, indent=1))
    (RESULTS / "detect_en.md").write_text("\n".join(zs_markdown(res)) + "\n")
    console.print("\n".join(zs_markdown(res)))
    return res


if __name__ == "__main__":
    main()
