"""Library parts of the analytic sub-models: metrics, report, ONNX export and Dask training.

Real libraries on seeded synthetic data; no network, no mocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from zimo.eval.bootstrap import resample_indices
from zimo.tabular.metrics import classification_metrics, interval_coverage, regression_metrics

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
