"""Metric values against hand-computed cases (Chinese included) and bootstrap sanity."""

from __future__ import annotations

import random

import numpy as np
import pytest

from zimo.eval.bootstrap import (
    bootstrap_mean,
    bootstrap_quantile,
    ci_from_sums,
    paired_difference,
    resampled_sums,
)
from zimo.eval.metrics import (
    calibration,
    chrf,
    chrf_from_stats,
    chrf_stats,
    extract_metrics,
    generate_metrics,
    label_metrics,
    label_metrics_from_proba,
    parse_json_answer,
    rouge_l,
)
from zimo.rouge import lcs_length, tokenize

# ------------------------------------------------------------------------------------------
# label
# ------------------------------------------------------------------------------------------


def test_label_metrics_hand_computed():
    y = ["spam", "spam", "ham", "ham", "ham", "ham"]
    p = ["spam", "ham", "ham", "ham", "spam", None]
    r = label_metrics(y, p, ["ham", "spam"], n_boot=200)
    assert r["accuracy"]["value"] == pytest.approx(3 / 6)
    # spam: tp=1 fp=1 fn=1 -> F1 = 2/(2+1+1) = 0.5 ; ham: tp=2 fp=1 fn=2 -> 4/(4+1+2)
    assert r["per_class"]["spam"]["f1"]["value"] == pytest.approx(0.5)
    assert r["per_class"]["ham"]["f1"]["value"] == pytest.approx(4 / 7)
    assert r["macro_f1"]["value"] == pytest.approx((0.5 + 4 / 7) / 2)
    assert r["per_class"]["ham"]["recall"] == pytest.approx(2 / 4)
    assert r["failures"] == 1
    # the no-answer row lands in the extra column, not dropped
    assert r["confusion"]["columns"] == ["ham", "spam", "<no answer>"]
    assert r["confusion"]["matrix"] == [[2, 1, 1], [1, 1, 0]]
    for key in ("accuracy", "macro_f1"):
        assert r[key]["low"] <= r[key]["value"] <= r[key]["high"]


def test_label_metrics_agree_with_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(3)
    labels = ["a", "b", "c"]
    y = list(rng.choice(labels, 300))
    p = [t if rng.random() < 0.7 else str(rng.choice(labels)) for t in y]
    r = label_metrics(y, p, labels, n_boot=100)
    assert r["accuracy"]["value"] == pytest.approx(accuracy_score(y, p))
    assert r["macro_f1"]["value"] == pytest.approx(f1_score(y, p, labels=labels, average="macro"))


def test_calibration_ece_hand_computed():
    conf = [0.95, 0.95, 0.65, 0.65, 0.65, 0.65]
    correct = [1, 0, 1, 1, 1, 1]
    r = calibration(conf, correct, n_bins=10, n_boot=100)
    # bin 0.9-1.0: acc 0.5, conf .95 -> |.45| * 2/6 ; bin .6-.7: acc 1, conf .65 -> .35 * 4/6
    assert r["ece"]["value"] == pytest.approx(0.45 * 2 / 6 + 0.35 * 4 / 6)
    b9 = r["bins"][9]
    assert b9["count"] == 2 and b9["accuracy"] == 0.5 and b9["confidence"] == pytest.approx(0.95)
    assert r["bins"][0]["count"] == 0 and r["bins"][0]["accuracy"] is None


def test_label_metrics_with_confidences_has_calibration():
    r = label_metrics(["a", "b"], ["a", "a"], ["a", "b"], confidences=[0.9, 0.8], n_boot=100)
    assert r["calibration"]["ece"]["value"] == pytest.approx((0.1 + 0.8) / 2)


# ------------------------------------------------------------------------------------------
# extract
# ------------------------------------------------------------------------------------------


def test_parse_json_answer():
    assert parse_json_answer('{"a": 1}') == {"a": 1}
    assert parse_json_answer('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_answer("[1, 2]") is None
    assert parse_json_answer("name: x") is None
    assert parse_json_answer(None) is None


def test_extract_metrics_hand_computed():
    refs = [
        {"name": "张三", "phone": "13800000000", "city": "北京"},
        {"name": "Li Si", "amount": 42},
        {"name": "王五"},
    ]
    preds = [
        '{"name": "张三", "phone": "13800000000", "city": "上海"}',  # 2 of 3 right
        '```json\n{"name": "li  si", "amount": "42"}\n```',  # all right after normalising
        "not json",  # invalid
    ]
    r = extract_metrics(preds, refs, n_boot=100)
    assert r["json_valid"]["value"] == pytest.approx(2 / 3)
    assert r["exact_match"]["value"] == pytest.approx(1 / 3)
    tp, n_pred, n_gold = 2 + 2, 3 + 2, 3 + 2 + 1
    prec, rec = tp / n_pred, tp / n_gold
    assert r["field_f1"]["value"] == pytest.approx(2 * prec * rec / (prec + rec))
    assert r["per_field_accuracy"]["city"] == 0.0
    assert r["per_field_accuracy"]["name"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------
# generate
# ------------------------------------------------------------------------------------------


def test_tokenize_cjk_chars_and_latin_words():
    assert tokenize("我爱Python 3.11和NLP！Hello, World") == [
        "我", "爱", "python", "3", "11", "和", "nlp", "hello", "world",
    ]  # fmt: skip
    assert tokenize("ＡＢＣ　ｄｅｆ") == ["abc", "def"]  # full-width folded by NFKC
    assert tokenize("") == [] and tokenize(None) == []


def test_rouge_l_chinese_hand_computed():
    # hyp 我爱北京天安门 (7 chars), ref 我爱北京 (4): LCS 4 -> P 4/7, R 1
    p, r = 4 / 7, 1.0
    assert rouge_l("我爱北京天安门", "我爱北京") == pytest.approx(100 * 2 * p * r / (p + r))
    # punctuation does not count; order matters: LCS(今天天气好, 天气今天好) = 3
    assert rouge_l("今天，天气好。", "天气今天好") == pytest.approx(100 * 3 / 5)
    assert rouge_l("", "我") == 0.0 and rouge_l(None, "我") == 0.0
    # mixed: words for Latin text
    assert rouge_l("the cat sat", "a cat sat down") == pytest.approx(
        100 * 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    )


def test_lcs_bit_parallel_matches_dynamic_programming():
    def dp(a, b):
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                t[i + 1][j + 1] = t[i][j] + 1 if a[i] == b[j] else max(t[i][j + 1], t[i + 1][j])
        return t[-1][-1]

    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("甲乙丙丁") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("甲乙丙丁") for _ in range(rng.randint(0, 40))]
        assert lcs_length(a, b) == dp(a, b)


def test_chrf_hand_computed_chinese():
    # hyp 我爱北京 vs ref 我爱北京天安门: every hyp n-gram matches (precision 1 for n=1..4,
    # orders 5-6 have no hyp n-grams). Recall per order n = (4-n+1)/(7-n+1).
    rec = [4 / 7, 3 / 6, 2 / 5, 1 / 4]
    p, r = 1.0, sum(rec) / 4
    expected = 100 * (1 + 4) * p * r / (4 * p + r)
    assert chrf("我爱北京", "我爱北京天安门") == pytest.approx(expected)
    assert chrf("我爱北京天安门", "我爱北京天安门") == pytest.approx(100.0)
    assert chrf(None, "我爱北京") == 0.0


def test_chrf_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps = [
        "我爱北京天安门",
        "the cat sat on the mat",
        "",
        "猫坐在垫子上 the mat",
        "x",
        "今天天气很好",
    ]
    refs = ["我爱北京", "a cat sat on a mat", "空的", "猫在垫子上", "y z", "今天天气不错，很好"]
    metric = sacrebleu.metrics.CHRF()
    for h, r in zip(hyps, refs, strict=True):
        assert chrf(h, r) == pytest.approx(metric.sentence_score(h, [r]).score, abs=1e-9)
    stats = np.stack([chrf_stats(h, r) for h, r in zip(hyps, refs, strict=True)])
    corpus = chrf_from_stats(stats.sum(axis=0))[0]
    assert corpus == pytest.approx(metric.corpus_score(hyps, [refs]).score, abs=1e-9)


def test_generate_metrics_count_failures_as_zero():
    refs = ["今天天气很好", "我喜欢读书", "猫在睡觉"]
    good = generate_metrics(refs, refs, metrics=["chrf", "rouge_l"], n_boot=200)
    assert good["chrf"]["value"] == pytest.approx(100.0)
    assert good["rouge_l"]["value"] == pytest.approx(100.0)
    missing = generate_metrics([refs[0], None, ""], refs, metrics=["chrf", "rouge_l"], n_boot=200)
    assert missing["failures"] == 2
    assert missing["rouge_l"]["value"] == pytest.approx(100.0 / 3)  # zeros kept in the mean
    # corpus chrF: precision 1 at every order (only the first answer has n-grams), recall per
    # order n = matched / all reference n-grams: (6,5,4,3,2,1) / (15,12,9,6,3,1)
    rec = np.mean([6 / 15, 5 / 12, 4 / 9, 3 / 6, 2 / 3, 1 / 1])
    assert missing["chrf"]["value"] == pytest.approx(100 * 5 * rec / (4 + rec))


def test_embedding_similarity_ranks_paraphrase_above_unrelated():
    refs = ["The weather is sunny today.", "I like reading books."]
    near = ["Today the weather is sunny.", "I enjoy reading books."]
    far = ["Stock prices fell sharply.", "Install the package with pip."]
    a = generate_metrics(near, refs, metrics=["embed_sim"], n_boot=100)["embed_sim"]["value"]
    b = generate_metrics(far, refs, metrics=["embed_sim"], n_boot=100)["embed_sim"]["value"]
    assert a > 0.8 and b < 0.4
    none = generate_metrics([None, ""], refs, metrics=["embed_sim"], n_boot=100)
    assert none["embed_sim"]["value"] == 0.0


# ------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    v = np.random.default_rng(1).random(200)
    a, b = bootstrap_mean(v, seed=5), bootstrap_mean(v, seed=5)
    assert a == b
    assert a.low < a.value < a.high
    assert bootstrap_mean(v, seed=6) != a


def test_resampled_sums_chunking_is_exact(monkeypatch):
    import zimo.eval.bootstrap as bs

    x = np.arange(50, dtype=float)
    full = resampled_sums(x, 300, seed=2)
    monkeypatch.setattr(bs, "_MAX_CELLS", 60)  # force many small chunks
    assert np.allclose(resampled_sums(x, 300, seed=2), full)
    idx = np.random.default_rng(2).integers(0, 50, size=(300, 50))
    assert np.allclose(full, x[idx].sum(axis=1))


def test_bootstrap_ci_coverage():
    """A 90% CI for a Bernoulli mean should cover the true mean about 90% of the time."""
    rng = np.random.default_rng(0)
    true_p, n, trials = 0.3, 200, 300
    covered = 0
    for t in range(trials):
        sample = (rng.random(n) < true_p).astype(float)
        ci = bootstrap_mean(sample, n_boot=400, seed=t, confidence=0.9)
        covered += ci.low <= true_p <= ci.high
    assert 0.84 <= covered / trials <= 0.96


def test_quantile_ci():
    v = np.arange(1, 101, dtype=float)
    ci = bootstrap_quantile(v, 0.5, n_boot=500)
    assert ci.value == pytest.approx(50.5)
    assert ci.low < 50.5 < ci.high and ci.high - ci.low < 25


def test_paired_difference_is_tighter_than_separate_cis():
    rng = np.random.default_rng(4)
    base = rng.random(150)
    better = base + 0.03 + rng.normal(0, 0.01, 150)  # same items, a small consistent gain
    a, b = bootstrap_mean(better), bootstrap_mean(base)
    assert a.overlaps(b)  # separate CIs cannot tell them apart
    d = paired_difference(better, base)
    assert d["diff"]["low"] > 0 and d["p_not_better"] == 0.0  # the paired test can
    assert d["diff"]["value"] == pytest.approx(better.mean() - base.mean())


def test_ratio_statistic_ci_from_sums():
    # micro-averaged ratio sum(x)/sum(y) of per-item pairs
    stats = np.array([[1.0, 2.0], [2.0, 2.0], [0.0, 4.0], [3.0, 4.0]])
    ci = ci_from_sums(stats, lambda s: s[:, 0] / s[:, 1], n_boot=300)
    assert ci.value == pytest.approx(6 / 12)
    assert 0 <= ci.low <= ci.value <= ci.high <= 1


def test_label_metrics_from_proba_matches_label_report_keys():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    proba = np.clip(np.stack([1 - y, y], axis=1) * 0.6 + rng.random((200, 2)) * 0.5, 0, None)
    proba /= proba.sum(axis=1, keepdims=True)
    r = label_metrics_from_proba(y, proba, ["ham", "spam"], "spam", n_boot=200)
    pred = proba.argmax(axis=1)
    assert r["spam_f1"] == pytest.approx(f1_score(y, pred))
    assert r["ci"]["spam_f1"]["value"] == pytest.approx(r["spam_f1"])
    assert r["confusion"] == [[int(((y == a) & (pred == b)).sum()) for b in (0, 1)] for a in (0, 1)]
    assert sum(b["count"] for b in r["calibration"]["bins"]) == 200
    assert 0 <= r["ece"] <= 1
