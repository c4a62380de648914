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
from zimo.tabular.metrics import classification_metrics, interval_coverage, regression_metrics
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
