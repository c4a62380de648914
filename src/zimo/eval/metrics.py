"""Task metrics with bootstrap confidence intervals: label, extract and generate tasks.

Every function takes per-item predictions and references (same order, one per test item) and
returns plain dicts (JSON-able) whose headline numbers are :class:`~zimo.eval.bootstrap.CI`
dicts. A prediction of ``None`` means the system gave no answer: it is *counted* (as wrong, or
as a score of 0), never dropped, and reported under ``failures``.

Scales: accuracy, F1, ECE, JSON validity and embedding similarity are in [0, 1]; chrF and
ROUGE-L are in [0, 100], as sacrebleu and most papers print them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from zimo.eval.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    bootstrap_mean,
    ci_from_sums,
)
from zimo.rouge import rouge_l_f1, tokenize

NO_ANSWER = "<no answer>"

# ---------------------------------------------------------------------------------------------
# label tasks
# ---------------------------------------------------------------------------------------------


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn), 0 where a class never occurs nor is predicted."""
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def label_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: Sequence[str] | None = None,
    *,
    confidences: Sequence[float | None] | None = None,
    n_bins: int = 10,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and calibration.

    A ``None`` (or out-of-set) prediction is wrong for its item: a false negative for the true
    class and a false positive for no declared class, so it lowers recall but cannot help any
    precision. Macro-F1 averages over the declared ``labels`` (default: labels seen in
    ``y_true``). The CIs of accuracy, macro-F1 and each class's F1 come from one set of
    resamples. With ``confidences`` (the model's probability for its predicted label) the
    result also carries ECE and reliability-bin data.
    """
    n = len(y_true)
    if n == 0:
        raise ValueError("no test items to score")
    if len(y_pred) != n:
        raise ValueError(f"{len(y_pred)} predictions for {n} test items")
    labels = list(labels) if labels is not None else sorted(set(y_true))
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    unknown_true = sorted({t for t in y_true if t not in index})
    if unknown_true:
        raise ValueError(f"test labels outside the declared set: {unknown_true[:5]}")
    t = np.array([index[x] for x in y_true], dtype=np.int64)
    # k = "no answer / outside the label set", an extra column of the confusion matrix.
    p = np.array([index.get(x, k) if x is not None else k for x in y_pred], dtype=np.int64)
    failures = int(sum(1 for x in y_pred if x is None))
    out_of_set = int(sum(1 for x in y_pred if x is not None and x not in index))

    # Per-item sufficient statistics: correct, and one-hot tp / fp / fn per class.
    eye = np.eye(k + 1)[:, :k]
    correct = (t == p).astype(np.float64)
    tp = eye[t] * correct[:, None]
    fp = eye[p] * (1 - correct)[:, None]
    fn = eye[t] * (1 - correct)[:, None]
    stats = np.concatenate([correct[:, None], tp, fp, fn], axis=1)

    def macro(s: np.ndarray) -> np.ndarray:
        f1 = _f1_from_counts(s[:, 1 : 1 + k], s[:, 1 + k : 1 + 2 * k], s[:, 1 + 2 * k :])
        return f1.mean(axis=1)

    kw = dict(n_boot=n_boot, seed=seed, confidence=confidence)
    acc = ci_from_sums(
        stats,
        lambda s: s[:, 0] / n,
        method="share of test items whose predicted label equals the true label "
        "(no answer = wrong); percentile bootstrap CI",
        **kw,
    )
    macro_f1 = ci_from_sums(
        stats,
        macro,
        method="unweighted mean of per-class F1 = 2TP/(2TP+FP+FN) over the declared labels; "
        "percentile bootstrap CI",
        **kw,
    )
    per_class = {}
    tot = stats.sum(axis=0)
    for i, lab in enumerate(labels):
        ci = ci_from_sums(
            stats,
            lambda s, i=i: _f1_from_counts(s[:, 1 + i], s[:, 1 + k + i], s[:, 1 + 2 * k + i]),
            method=f"F1 of class {lab!r} = 2TP/(2TP+FP+FN); percentile bootstrap CI",
            **kw,
        )
        ctp, cfp, cfn = tot[1 + i], tot[1 + k + i], tot[1 + 2 * k + i]
        per_class[lab] = {
            "precision": float(ctp / (ctp + cfp)) if ctp + cfp else 0.0,
            "recall": float(ctp / (ctp + cfn)) if ctp + cfn else 0.0,
            "f1": ci.to_dict(),
            "support": int(ctp + cfn),
        }
    conf = np.zeros((k, k + 1), dtype=np.int64)
    np.add.at(conf, (t, p), 1)
    result: dict[str, Any] = {
        "n": n,
        "accuracy": acc.to_dict(),
        "macro_f1": macro_f1.to_dict(),
        "per_class": per_class,
        "confusion": {
            "labels": labels,
            "columns": labels + [NO_ANSWER],
            # rows = true label, columns = predicted label (+ no answer / outside the set)
            "matrix": conf.tolist(),
        },
        "failures": failures,
        "out_of_set": out_of_set,
    }
    if confidences is not None:
        result["calibration"] = calibration(
            [c if c is not None else 0.0 for c in confidences], correct, n_bins=n_bins, **kw
        )
    return result


def calibration(
    confidences: Sequence[float],
    correct: Sequence[float],
    *,
    n_bins: int = 10,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Expected calibration error over equal-width confidence bins, with reliability data.

    ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b| (Guo et al. 2017). ``bins`` holds,
    per bin, its edges, item count, mean confidence and accuracy: the reliability diagram.
    """
    c = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(correct, dtype=np.float64)
    if c.shape != y.shape or c.size == 0:
        raise ValueError("calibration needs one confidence per scored item")
    # Bin i holds (i/B, (i+1)/B]; a confidence of exactly 0 goes to the first bin.
    b = np.clip(np.ceil(c * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    onehot = np.eye(n_bins)[b]
    stats = np.concatenate([onehot, onehot * c[:, None], onehot * y[:, None]], axis=1)

    def ece(s: np.ndarray) -> np.ndarray:
        cnt, sc, sy = s[:, :n_bins], s[:, n_bins : 2 * n_bins], s[:, 2 * n_bins :]
        return np.abs(sy - sc).sum(axis=1) / np.maximum(cnt.sum(axis=1), 1)

    ci = ci_from_sums(
        stats,
        ece,
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
        method=f"expected calibration error: {n_bins} equal-width confidence bins, "
        "Σ (bin share × |bin accuracy − bin mean confidence|); percentile bootstrap CI",
    )
    tot = stats.sum(axis=0)
    bins = []
    for i in range(n_bins):
        cnt = int(tot[i])
        bins.append(
            {
                "lo": i / n_bins,
                "hi": (i + 1) / n_bins,
                "count": cnt,
                "confidence": float(tot[n_bins + i] / cnt) if cnt else None,
                "accuracy": float(tot[2 * n_bins + i] / cnt) if cnt else None,
            }
        )
    return {"ece": ci.to_dict(), "bins": bins, "n_bins": n_bins}


# ---------------------------------------------------------------------------------------------
# extract tasks
# ---------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_json_answer(answer: str | dict | None) -> dict | None:
    """The JSON object in a model answer, or ``None`` when it is not valid JSON.

    Accepts a dict as is, and a string that is a JSON object, optionally wrapped in a Markdown
    code fence (small models add one often; stripping it is not lenient about the JSON).
    """
    if answer is None:
        return None
    if isinstance(answer, dict):
        return answer
    text = str(answer).strip()
    m = _FENCE.match(text)
    if m:
        text = m.group(1).strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _norm_value(v: Any) -> str:
    """Canonical form of a field value: case/width/space-insensitive strings, numeric numbers."""
    if isinstance(v, str):
        s = unicodedata.normalize("NFKC", v).casefold()
        s = " ".join(s.split())
        try:
            return json.dumps(float(s))  # "42" and 42 match
        except ValueError:
            return json.dumps(s, ensure_ascii=False)
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int | float):
        return json.dumps(float(v))
    if isinstance(v, list):
        return "[" + ",".join(sorted(_norm_value(x) for x in v)) + "]"
    if isinstance(v, dict):
        items = sorted((str(k), _norm_value(x)) for k, x in v.items())
        return "{" + ",".join(f"{k}:{x}" for k, x in items) + "}"
    return json.dumps(str(v), ensure_ascii=False)


def extract_metrics(
    predictions: Sequence[str | dict | None],
    references: Sequence[dict],
    *,
    fields: Sequence[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """JSON validity, whole-object exact match and field-level exact match / micro-F1.

    A field counts as a true positive when the prediction has it with the same normalised value
    as the reference (case, Unicode width and whitespace ignored; numbers compared as numbers;
    lists as multisets). Micro precision = TP / predicted fields, recall = TP / reference fields.
    Fields whose reference value is null or empty count as absent. Invalid JSON or no answer =
    zero predicted fields. ``fields`` restricts scoring to a schema's fields.
    """
    n = len(references)
    if n == 0:
        raise ValueError("no test items to score")
    if len(predictions) != n:
        raise ValueError(f"{len(predictions)} predictions for {n} test items")
    allowed = set(fields) if fields is not None else None

    def present(d: dict) -> dict[str, str]:
        return {
            str(k): _norm_value(v)
            for k, v in d.items()
            if v not in (None, "", [], {}) and (allowed is None or str(k) in allowed)
        }

    rows = []
    per_field: dict[str, list[int]] = {}
    for pred, ref in zip(predictions, references, strict=True):
        obj = parse_json_answer(pred)
        gold = present(ref)
        got = present(obj) if obj is not None else {}
        tp = sum(1 for k, v in got.items() if gold.get(k) == v)
        rows.append([obj is not None, obj is not None and got == gold, tp, len(got), len(gold)])
        for k, v in gold.items():
            per_field.setdefault(k, [0, 0])
            per_field[k][0] += int(got.get(k) == v)
            per_field[k][1] += 1
    stats = np.asarray(rows, dtype=np.float64)

    def micro_f1(s: np.ndarray) -> np.ndarray:
        return _f1_from_counts(s[:, 2], s[:, 3] - s[:, 2], s[:, 4] - s[:, 2])

    kw = dict(n_boot=n_boot, seed=seed, confidence=confidence)
    tot = stats.sum(axis=0)
    return {
        "n": n,
        "json_valid": ci_from_sums(
            stats,
            lambda s: s[:, 0] / n,
            method="share of answers that parse as a JSON object (a Markdown code fence "
            "around it is allowed); percentile bootstrap CI",
            **kw,
        ).to_dict(),
        "exact_match": ci_from_sums(
            stats,
            lambda s: s[:, 1] / n,
            method="share of answers whose fields all equal the reference's (normalised); "
            "percentile bootstrap CI",
            **kw,
        ).to_dict(),
        "field_f1": ci_from_sums(
            stats,
            micro_f1,
            method="micro-F1 over fields: a field is right when its normalised value equals "
            "the reference's; percentile bootstrap CI",
            **kw,
        ).to_dict(),
        "field_precision": float(tot[2] / tot[3]) if tot[3] else 0.0,
        "field_recall": float(tot[2] / tot[4]) if tot[4] else 0.0,
        "per_field_accuracy": {k: v[0] / v[1] for k, v in sorted(per_field.items())},
        "failures": int(sum(1 for p in predictions if p is None)),
    }


# ---------------------------------------------------------------------------------------------
# generate tasks: chrF, ROUGE-L, embedding similarity
# ---------------------------------------------------------------------------------------------

CHRF_CHAR_ORDER = 6
CHRF_BETA = 2.0
_EPS = 1e-16


def _char_ngrams(text: str, order: int) -> list[Counter]:
    # sacrebleu's chrF drops all whitespace before taking character n-grams.
    s = "".join(text.split())
    return [Counter(s[i : i + k] for i in range(len(s) - k + 1)) for k in range(1, order + 1)]


def chrf_stats(hypothesis: str | None, reference: str, order: int = CHRF_CHAR_ORDER) -> np.ndarray:
    """Per-segment chrF sufficient statistics: for each n, [hyp count, ref count, matches].

    Hand-written instead of calling sacrebleu because the bootstrap needs the per-segment
    statistics (sacrebleu keeps them private); tests check equality with sacrebleu.
    """
    hyp = _char_ngrams(hypothesis or "", order)
    ref = _char_ngrams(reference, order)
    out = np.zeros(3 * order, dtype=np.float64)
    for k in range(order):
        h, r = hyp[k], ref[k]
        # As sacrebleu: hypothesis n-grams of an order the reference lacks are not counted.
        out[3 * k] = sum(h.values()) if r else 0
        out[3 * k + 1] = sum(r.values())
        out[3 * k + 2] = sum((h & r).values())
    return out


def chrf_from_stats(
    stats: np.ndarray, order: int = CHRF_CHAR_ORDER, beta: float = CHRF_BETA
) -> np.ndarray:
    """chrF (0–100) from summed statistics; ``stats`` is ``(3·order,)`` or ``(B, 3·order)``.

    Same formula as sacrebleu 2.x (``CHRF._compute_f_score``): per-order precision and recall
    are averaged over the orders that have any n-grams, then combined with F-beta.
    """
    s = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    hyp, ref, match = s[:, 0::3], s[:, 1::3], s[:, 2::3]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(hyp > 0, match / np.where(hyp > 0, hyp, 1), 0.0)
        rec = np.where(ref > 0, match / np.where(ref > 0, ref, 1), 0.0)
    eff = np.maximum(1, ((hyp > 0) & (ref > 0)).sum(axis=1))
    p = prec.sum(axis=1) / eff
    r = rec.sum(axis=1) / eff
    b2 = beta**2
    denom = b2 * p + r
    f = np.where(denom > 0, (1 + b2) * p * r / np.where(denom > 0, denom, 1), 0.0)
    return 100.0 * f


def chrf(hypothesis: str | None, reference: str) -> float:
    """Sentence-level chrF (0–100; character 6-grams, β = 2, whitespace ignored)."""
    return float(chrf_from_stats(chrf_stats(hypothesis, reference))[0])


def rouge_l(hypothesis: str | None, reference: str, tokenizer: str = "char") -> float:
    """ROUGE-L F1 (0–100) on :func:`zimo.rouge.tokenize` tokens (LCS-based, β = 1)."""
    return 100.0 * rouge_l_f1(tokenize(hypothesis, tokenizer), tokenize(reference, tokenizer))


def embedding_similarity(hypotheses: Sequence[str | None], references: Sequence[str]) -> np.ndarray:
    """Cosine similarity of MiniLM sentence embeddings, per item (no answer = 0)."""
    from zimo.embeddings import embed

    hyp = [h or "" for h in hypotheses]
    vh = embed(hyp)
    vr = embed(list(references))
    sims = np.einsum("ij,ij->i", vh, vr).astype(np.float64)
    sims[[not h.strip() for h in hyp]] = 0.0
    return sims


GENERATE_METRICS = ("chrf", "rouge_l", "embed_sim")


def generate_item_scores(
    hypotheses: Sequence[str | None],
    references: Sequence[str],
    metrics: Sequence[str] = GENERATE_METRICS,
    tokenizer: str = "char",
) -> dict[str, np.ndarray]:
    """Per-item scores: ``chrf_stats`` (n, 18), ``chrf`` (sentence), ``rouge_l``, ``embed_sim``."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} answers for {len(references)} references")
    unknown = set(metrics) - set(GENERATE_METRICS)
    if unknown:
        raise ValueError(f"unknown generate metrics {sorted(unknown)}; use {GENERATE_METRICS}")
    out: dict[str, np.ndarray] = {}
    if "chrf" in metrics:
        st = np.stack([chrf_stats(h, r) for h, r in zip(hypotheses, references, strict=True)])
        out["chrf_stats"] = st
        out["chrf"] = chrf_from_stats(st)
    if "rouge_l" in metrics:
        out["rouge_l"] = np.array(
            [rouge_l(h, r, tokenizer) for h, r in zip(hypotheses, references, strict=True)]
        )
    if "embed_sim" in metrics:
        out["embed_sim"] = embedding_similarity(hypotheses, references)
    return out


METRIC_METHODS = {
    "chrf": "corpus chrF (sacrebleu definition: character 1–6-grams, whitespace removed, β=2), "
    "0–100; percentile bootstrap CI over test items",
    "rouge_l": "mean over items of ROUGE-L F1 (longest common subsequence), tokens = single CJK "
    "characters and lower-cased Latin words, punctuation dropped, 0–100; percentile bootstrap CI",
    "embed_sim": "mean cosine similarity of all-MiniLM-L6-v2 sentence embeddings of answer and "
    "reference (English-trained: on Chinese it mostly reflects shared characters), no answer = 0; "
    "percentile bootstrap CI",
}


def generate_metrics(
    hypotheses: Sequence[str | None],
    references: Sequence[str],
    *,
    metrics: Sequence[str] = GENERATE_METRICS,
    tokenizer: str = "char",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    item_scores: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Headline generate metrics with CIs: corpus chrF, mean ROUGE-L, mean embedding similarity.

    A ``None`` or empty answer scores 0 on every metric and is counted under ``failures``.
    """
    n = len(references)
    if n == 0:
        raise ValueError("no test items to score")
    scores = item_scores or generate_item_scores(hypotheses, references, metrics, tokenizer)
    kw = dict(n_boot=n_boot, seed=seed, confidence=confidence)
    out: dict[str, Any] = {"n": n}
    if "chrf" in metrics:
        out["chrf"] = ci_from_sums(
            scores["chrf_stats"], chrf_from_stats, method=METRIC_METHODS["chrf"], **kw
        ).to_dict()
    for name in ("rouge_l", "embed_sim"):
        if name in metrics:
            out[name] = bootstrap_mean(scores[name], method=METRIC_METHODS[name], **kw).to_dict()
    out["failures"] = int(sum(1 for h in hypotheses if h is None or not str(h).strip()))
    return out


def label_metrics_from_proba(
    y_true: Sequence[int],
    proba: np.ndarray,
    labels: Sequence[str],
    positive: str | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Label metrics from class probabilities (argmax = prediction, its probability = confidence).

    Returns the flat numbers the label report uses (``accuracy``, ``macro_f1``,
    ``per_class_f1``, ``confusion``, ``ece`` and ``<positive>_f1``) plus ``ci`` (a CI dict per
    headline number) and ``calibration`` (ECE CI and reliability bins), so adding CIs and a
    reliability diagram to a report is a drop-in change.
    """
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(axis=1)
    names = list(labels)
    r = label_metrics(
        [names[i] for i in y_true],
        [names[i] for i in pred],
        names,
        confidences=proba.max(axis=1).tolist(),
        n_boot=n_boot,
        seed=seed,
        confidence=confidence,
    )
    out: dict[str, Any] = {
        "accuracy": r["accuracy"]["value"],
        "macro_f1": r["macro_f1"]["value"],
        "per_class_f1": {k: v["f1"]["value"] for k, v in r["per_class"].items()},
        "confusion": [row[: len(names)] for row in r["confusion"]["matrix"]],
        "ece": r["calibration"]["ece"]["value"],
        "ci": {
            "accuracy": r["accuracy"],
            "macro_f1": r["macro_f1"],
            "ece": r["calibration"]["ece"],
            **{f"{k}_f1": v["f1"] for k, v in r["per_class"].items()},
        },
        "calibration": r["calibration"],
    }
    if positive:
        out[f"{positive}_f1"] = out["per_class_f1"][positive]
    return out
