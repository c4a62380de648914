"""Library parts of the analytic sub-models: metrics, report, ONNX export and Dask training.

Real libraries on seeded synthetic data; no network, no mocks.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from sklearn import metrics as skm

from zimo.eval.bootstrap import resample_indices
from zimo.tabular.dask_engine import rounds_by_early_stopping, train_dask
from zimo.tabular.metrics import classification_metrics, interval_coverage, regression_metrics
from zimo.tabular.onnx_export import (
    export_lightgbm_onnx,
    export_text_classifier_onnx,
    normalize_text,
    onnx_compatible_text_vectorizer,
)
from zimo.tabular.report import gain_importance, shap_importance, write_report


def delivery_table(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """A synthetic delivery-time table: distance, hour, load, and a categorical zone code.

    Zone effects are not monotone in the code, so only categorical splits model them well.
    Some distances are missing (NaN).
    """
    rng = np.random.default_rng(seed)
    zone_effect = np.array([4.0, -3.0, 9.0, 0.0, -6.0, 2.0, 7.0, -1.0, 5.0, -4.0])
    dist = rng.gamma(2.0, 2.0, size=n)
    hour = rng.integers(0, 24, size=n).astype(np.float64)
    load = rng.normal(0, 1, size=n)
    zone = rng.integers(0, zone_effect.size, size=n)
    y = 10 + 3 * dist + 4 * np.sin(hour / 24 * 2 * np.pi) + 2 * load + zone_effect[zone]
    y = y + rng.normal(0, 1.5, size=n)
    X = np.column_stack([dist, hour, load, zone.astype(np.float64)])
    X[rng.random(n) < 0.05, 0] = np.nan
    return X, y, ["distance_km", "hour", "load", "zone"], [3]


def train_booster(X, y, categorical, objective="regression", rounds=60, **extra):
    params = {
        "objective": objective,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 10,
        "verbose": -1,
        "num_threads": 1,
        "seed": 0,
        "deterministic": True,
        **extra,
    }
    ds = lgb.Dataset(X, y, categorical_feature=categorical, free_raw_data=False)
    return lgb.train(params, ds, num_boost_round=rounds)


class _Html(HTMLParser):
    """Collects tags and text of a page, to check a report without a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(path: Path) -> _Html:
    p = _Html()
    p.feed(path.read_text(encoding="utf-8"))
    return p


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def test_regression_metrics_match_sklearn_and_bootstrap_indices():
    rng = np.random.default_rng(1)
    y = rng.normal(30, 8, size=400)
    y[:10] = 0.0  # MAPE must skip these
    pred = y + rng.normal(0, 4, size=400)
    m = regression_metrics(y, pred, tolerance=5.0, n_boot=300, seed=3)
    assert m["n"] == 400
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    nz = y != 0
    assert m["mape_rows"] == 390
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y[nz], pred[nz]))
    assert m["within_tol"] == pytest.approx(np.mean(np.abs(pred - y) <= 5.0))
    for k in ("mae", "rmse", "r2", "mape", "within_tol"):
        lo, hi = m["ci"][k]
        assert lo <= m[k] <= hi, k
    # The CIs come from exactly the resamples zimo.eval.bootstrap.resample_indices draws.
    idx = resample_indices(400, 300, 3)
    boot_mae = np.abs(pred[idx] - y[idx]).mean(axis=1)
    assert m["ci"]["mae"] == pytest.approx(list(np.quantile(boot_mae, [0.025, 0.975])))
    yi = y[idx]
    sst = ((yi - yi.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    boot_r2 = 1 - ((pred[idx] - yi) ** 2).sum(axis=1) / sst
    assert m["ci"]["r2"] == pytest.approx(list(np.quantile(boot_r2, [0.025, 0.975])))
    # Seeded: a rerun gives the same intervals.
    assert regression_metrics(y, pred, n_boot=300, seed=3)["ci"] == m["ci"]


def test_regression_metrics_rejects_bad_input():
    with pytest.raises(ValueError):
        regression_metrics([], [])
    with pytest.raises(ValueError):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        regression_metrics([1.0, np.nan], [1.0, 2.0])


def test_classification_metrics():
    rng = np.random.default_rng(2)
    n, k = 300, 3
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = ["late", "on_time", "early"]
    m = classification_metrics(y, proba, classes, n_boot=200, seed=0)
    pred = proba.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    f1 = skm.f1_score(y, pred, average=None)
    assert [m["per_class_f1"][c] for c in classes] == pytest.approx(list(f1))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert 0 <= m["ece"] <= 1
    assert m["confusion"]["labels"] == classes
    assert m["confusion"]["matrix"] == skm.confusion_matrix(y, pred).tolist()
    for key in ("accuracy", "macro_f1"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi


def test_interval_coverage():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    c = interval_coverage(y, y - 1, np.array([2.0, 3.0, 2.5, 5.0]))
    assert c["coverage"] == 0.75
    assert c["above"] == 0.25 and c["below"] == 0.0
    assert c["mean_width"] == pytest.approx(np.mean([2.0, 2.0, 0.5, 2.0]))


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def test_importances_from_lightgbm():
    X, y, names, cat = delivery_table(800)
    booster = train_booster(X, y, cat, rounds=30)
    gain = gain_importance(booster, names)
    shap = shap_importance(booster, X, names, max_rows=300)
    assert set(gain) == set(shap) == set(names)
    # distance drives the target most; the sampled SHAP ranking must see that.
    assert max(shap, key=shap.get) == "distance_km"
    assert max(gain, key=gain.get) == "distance_km"
    # Without sampling, mean |SHAP| equals LightGBM's contributions averaged by hand.
    full = shap_importance(booster, X, names, max_rows=10_000)
    contrib = booster.predict(X, pred_contrib=True)[:, :-1]
    assert [full[f] for f in names] == pytest.approx(list(np.abs(contrib).mean(axis=0)))

    yc = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    multi = train_booster(X, yc, cat, objective="multiclass", rounds=10, num_class=3)
    ms = shap_importance(multi, X, names, max_rows=200)
    assert set(ms) == set(names) and all(v >= 0 for v in ms.values())


def test_regression_report(tmp_path):
    X, y, names, cat = delivery_table(1200)
    booster = train_booster(X[:900], y[:900], cat, rounds=40)
    yt = y[900:]
    pred = booster.predict(X[900:])
    mean_pred = np.full_like(yt, y[:900].mean())
    systems = {
        "lightgbm": {"pred": pred, "lo": pred - 3.0, "hi": pred + 3.0},
        "mean baseline": {"pred": mean_pred},
    }
    metrics = {name: regression_metrics(yt, s["pred"], n_boot=200) for name, s in systems.items()}
    importance = {
        "gain": gain_importance(booster, names),
        "shap": shap_importance(booster, X[900:], names),
    }
    columns = [
        {"name": "distance_km", "kind": "numeric", "reason": ""},
        {"name": "zone", "kind": "categorical", "reason": "10 distinct codes"},
        {"name": "order_id", "kind": "excluded", "reason": "identifier: unique per row"},
    ]
    path = write_report(
        tmp_path / "out",
        title="Delivery time",
        task="regression",
        y_true=yt,
        systems=systems,
        metrics=metrics,
        importance=importance,
        columns=columns,
        notes=["synthetic data"],
    )
    assert path == tmp_path / "out" / "report.html"
    page = parse_html(path)
    text = " ".join(page.text)
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) >= 3
    assert all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    # Self-contained: nothing is loaded from elsewhere.
    assert not [
        a for t, a in page.tags if t in ("script", "link") and (a.get("src") or a.get("href"))
    ]
    for heading in (
        "Headline metrics",
        "Errors of lightgbm",
        "Prediction intervals",
        "Feature importance",
        "Input columns",
    ):
        assert heading in text, heading
    for word in ("lightgbm", "mean baseline", "MAE", "RMSE", "R²", "MAPE", "within ±5"):
        assert word in text, word
    assert "identifier: unique per row" in text and "synthetic data" in text


def test_classification_report(tmp_path):
    rng = np.random.default_rng(5)
    n, classes = 300, ["late", "on_time", "early"]
    y = rng.integers(0, 3, size=n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    systems = {
        "tfidf+logreg": {"pred": proba.argmax(axis=1), "proba": proba},
        "majority": {"pred": np.zeros(n, dtype=int)},
    }
    metrics = {"tfidf+logreg": classification_metrics(y, proba, classes, n_boot=200)}
    path = write_report(
        tmp_path,
        title="Ticket routing",
        task="multiclass",
        y_true=y,
        systems=systems,
        metrics=metrics,
        importance=None,
        columns=[{"name": "text", "kind": "text", "reason": "TF-IDF char n-grams"}],
        notes=[],
    )
    page = parse_html(path)
    text = " ".join(page.text)
    for word in ("Headline metrics", "Confusion matrix of tfidf+logreg", "macro-F1", "accuracy"):
        assert word in text, word
    assert "tfidf+logreg" in text and "majority" in text and "on_time" in text
    assert any(t == "table" and a.get("class") == "confusion" for t, a in page.tags)


# ---------------------------------------------------------------------------------------------
# ONNX export
# ---------------------------------------------------------------------------------------------


def _check_rows(X: np.ndarray) -> np.ndarray:
    """Test rows plus edge cases: unseen / negative / NaN category codes and all-NaN numerics."""
    edge = X[:6].copy()
    edge[:, 3] = [10.0, 57.0, -1.0, np.nan, 0.0, 9.0]  # codes 10 and 57 never seen in training
    edge[4, :3] = np.nan
    # The same rows with the category missing: LightGBM does not treat NaN as code 0, and
    # neither may the ONNX graph.
    missing = X[:40].copy()
    missing[:, 3] = np.nan
    return np.vstack([X, edge, missing])


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_lightgbm_onnx_categorical_and_nan(tmp_path, task):
    X, y, _, cat = delivery_table(1500, seed=4)
    X[np.random.default_rng(4).random(len(X)) < 0.03, 3] = np.nan  # some zones missing
    if task == "regression":
        booster = train_booster(X[:1200], y[:1200], cat, rounds=60)
    elif task == "binary":
        yb = (y > np.median(y)).astype(int)
        booster = train_booster(X[:1200], yb[:1200], cat, objective="binary", rounds=40)
    else:
        yc = np.digitize(y, np.quantile(y, [0.33, 0.66]))
        booster = train_booster(
            X[:1200], yc[:1200], cat, objective="multiclass", rounds=30, num_class=3
        )
    # The trees really use many-vs-many categorical splits ("a||b||..." category sets).
    assert "||" in str(booster.dump_model())
    X_check = _check_rows(X[1200:])
    assert np.isnan(X_check).any()
    r = export_lightgbm_onnx(booster, 4, tmp_path / "m.onnx", X_check, task=task)
    assert r["agreement"] == 1.0
    assert r["max_abs_diff"] < (1e-3 if task == "regression" else 1e-5)
    assert r["rows"] == X_check.shape[0]
    assert (tmp_path / "m.onnx").stat().st_size == r["bytes"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp file left


def test_lightgbm_onnx_rejects_wrong_width(tmp_path):
    X, y, _, cat = delivery_table(300)
    booster = train_booster(X, y, cat, rounds=5)
    with pytest.raises(ValueError):
        export_lightgbm_onnx(booster, 5, tmp_path / "m.onnx", X, task="regression")
    assert not (tmp_path / "m.onnx").exists()


_EN = "parcel arrived late again refund please driver was rude food cold great fast service "
_EN += "thanks order missing item wrong address café naïve über"
_ZH = "包裹 又 迟到 了 请 退款 司机 态度 很差 饭菜 凉了 送得 很快 谢谢 订单 缺少 物品 地址 错误"
_BAD = {"late", "rude", "cold", "missing", "迟到", "很差", "凉了", "缺少"}


def text_data(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """English and Chinese complaint-like texts, 3 classes (ok / complaint / refund)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        zh = i % 2 == 1
        words = _ZH.split() if zh else _EN.split()
        ws = list(rng.choice(words, rng.integers(3, 9)))
        if not zh and rng.random() < 0.3:
            ws[0] = ws[0].capitalize()
        texts.append(("" if zh else " ").join(ws) + str(rng.choice(["", "!", "?", "。", "  ok"])))
        labels.append(2 if ("refund" in ws or "退款" in ws) else int(bool(_BAD & set(ws))))
    return texts, np.array(labels)


def _text_pipeline(vectorizer, calibrated: bool = False):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    clf = LogisticRegression(max_iter=1000)
    if calibrated:
        clf = CalibratedClassifierCV(clf, cv=2)
    return Pipeline([("tfidf", vectorizer), ("clf", clf)])


_ODD_TEXTS = ["Hello  World\n\tagain", "  leading", "ÉCOLE École", "你好，世界！ OK", "", "a\r\nb"]


@pytest.mark.parametrize(
    ("char_ngrams", "word_ngrams", "calibrated"),
    [((1, 3), (1, 2), False), ((2, 4), None, True), (None, (1, 2), False)],
)
def test_text_onnx_exact_with_compatible_vectorizer(tmp_path, char_ngrams, word_ngrams, calibrated):
    texts, y = text_data(320)
    norm = [normalize_text(t) for t in texts]
    vec = onnx_compatible_text_vectorizer(char_ngrams=char_ngrams, word_ngrams=word_ngrams)
    pipe = _text_pipeline(vec, calibrated).fit(norm[:220], y[:220])
    check = norm[220:] + [normalize_text(t) for t in _ODD_TEXTS]
    r = export_text_classifier_onnx(pipe, check, tmp_path / "text.onnx")
    assert r["agreement"] == 1.0 and r["max_abs_diff"] < 1e-4 and r["exact"], r
    assert (tmp_path / "text.onnx").stat().st_size == r["bytes"]
    # Chinese rows alone: the char n-grams carry them and still agree.
    zh = [t for t in check if any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert len(zh) > 40
    assert export_text_classifier_onnx(pipe, zh, tmp_path / "zh.onnx")["exact"]


def test_text_onnx_known_inexact_settings(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, y = text_data(300, seed=1)
    # char_wb has no converter.
    pipe = _text_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4))).fit(texts, y)
    with pytest.raises(ValueError, match="char_wb|cannot convert"):
        export_text_classifier_onnx(pipe, texts[:10], tmp_path / "a.onnx")
    # The default word pattern is replaced by an ASCII one: Chinese words are lost in ONNX.
    pipe = _text_pipeline(TfidfVectorizer(ngram_range=(1, 2))).fit(texts, y)
    r = export_text_classifier_onnx(pipe, texts, tmp_path / "b.onnx")
    assert not r["exact"]
    # sublinear_tf (log term frequency) is converted, but not exactly.
    vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 4), sublinear_tf=True)
    pipe = _text_pipeline(vec).fit(texts, y)
    assert export_text_classifier_onnx(pipe, texts, tmp_path / "s.onnx")["max_abs_diff"] > 1e-4
    # Raw text with whitespace runs: sklearn's char analyzer collapses them, ONNX does not.
    pipe = _text_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3))).fit(
        texts + _ODD_TEXTS * 3, np.r_[y, np.zeros(18, dtype=int)]
    )
    r = export_text_classifier_onnx(pipe, _ODD_TEXTS, tmp_path / "c.onnx")
    assert r["max_abs_diff"] > 1e-4


# ---------------------------------------------------------------------------------------------
# Dask training
# ---------------------------------------------------------------------------------------------


def test_dask_training_matches_single_process():
    import multiprocessing

    X, y, _, cat = delivery_table(4000, seed=7)
    Xtr, ytr = X[:2400], y[:2400]
    Xdev, ydev = X[2400:3200], y[2400:3200]
    Xte, yte = X[3200:], y[3200:]
    params = {
        "objective": "regression",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "verbose": -1,
        "seed": 0,
    }
    single = lgb.train(
        {**params, "num_threads": 1},
        lgb.Dataset(Xtr, ytr, categorical_feature=cat),
        num_boost_round=300,
        valid_sets=[lgb.Dataset(Xdev, ydev, categorical_feature=cat)],
        callbacks=[lgb.early_stopping(20, verbose=False)],
    )
    rounds = rounds_by_early_stopping(
        Xtr,
        ytr,
        Xdev,
        ydev,
        params=params,
        num_boost_round=300,
        early_stopping_rounds=20,
        categorical=cat,
    )
    assert rounds == single.best_iteration < 300

    booster = train_dask(
        Xtr,
        ytr,
        Xdev,
        ydev,
        params=params,
        num_boost_round=300,
        early_stopping_rounds=20,
        categorical=cat,
        n_workers=2,
    )
    # Both workers trained together (data-parallel), for exactly the early-stopping rounds.
    assert "[num_machines: 2]" in booster.model_to_string()
    assert booster.current_iteration() == rounds
    r2_single = skm.r2_score(yte, single.predict(Xte, num_iteration=single.best_iteration))
    r2_dask = skm.r2_score(yte, booster.predict(Xte))
    assert abs(r2_dask - r2_single) <= 0.02, (r2_dask, r2_single)
    # Far better than predicting the training mean (R² = 0 up to the mean's shift).
    r2_mean = skm.r2_score(yte, np.full_like(yte, ytr.mean()))
    assert r2_single > r2_mean + 0.5 and r2_dask > r2_mean + 0.5
    # The cluster this call started is gone: no worker processes left behind.
    assert multiprocessing.active_children() == []


@pytest.mark.slow  # a second cluster (~5 s); the regression test above covers the default run
def test_dask_multiclass_with_given_client():
    from distributed import Client, LocalCluster

    X, y, _, cat = delivery_table(1500, seed=8)
    yc = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 7, "verbose": -1}
    with pytest.raises(ValueError, match="codes 0..2"):
        train_dask(
            X,
            np.minimum(yc, 1),
            None,
            None,
            params=params,
            num_boost_round=5,
            early_stopping_rounds=0,
            categorical=cat,
        )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        booster = train_dask(
            X[:1200],
            yc[:1200],
            None,
            None,
            params=params,
            num_boost_round=30,
            early_stopping_rounds=10,
            categorical=cat,
            client=client,
        )
        assert client.status == "running"  # a caller's client is left open
    proba = booster.predict(X[1200:])
    assert proba.shape == (300, 3)
    assert booster.current_iteration() == 30  # no dev set: the given round count
    # Column j is class code j: accuracy far above the 1/3 of guessing.
    assert np.mean(proba.argmax(axis=1) == yc[1200:]) > 0.75
