"""Load a trained table sub-model and answer prediction requests with it.

Used by the eval stage, the gateway (KServe v2 ``/v2/models/{name}/infer`` and ``/v1/predict``)
and the ONNX export check, so all three compute predictions the same way.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zimo.tabular.features import FeatureBuilder


class TabularPredictor:
    def __init__(self, folder: Path):
        import lightgbm as lgb

        self.folder = Path(folder)
        self.features = FeatureBuilder.from_json(
            json.loads((self.folder / "features.json").read_text(encoding="utf-8"))
        )
        self.plan = self.features.plan
        self.booster = lgb.Booster(model_file=str(self.folder / "model.txt"))
        self.lower = self.upper = None
        if (self.folder / "lower.txt").is_file() and (self.folder / "upper.txt").is_file():
            self.lower = lgb.Booster(model_file=str(self.folder / "lower.txt"))
            self.upper = lgb.Booster(model_file=str(self.folder / "upper.txt"))
        self.meta = _read_json(self.folder / "zimo_model.json")
        self._lock = threading.Lock()
        self.unseen: dict[str, int] = {}  # served values of categorical columns never trained on

    @property
    def objective(self) -> str:
        return self.plan.objective

    @property
    def inputs(self) -> list[str]:
        return self.plan.inputs

    def input_kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.plan.columns if c.kind != "excluded"}

    def predict_frame(self, df: pd.DataFrame) -> dict[str, Any]:
        """Predictions for a frame of raw columns (a test split or request rows)."""
        X, unseen = self.features.transform(df)
        return self.predict_matrix(X, unseen)

    def predict_matrix(self, X: np.ndarray, unseen: dict[str, int] | None = None) -> dict[str, Any]:
        # One thread for a handful of rows: LightGBM's thread start-up costs more than the trees.
        threads = 1 if len(X) < 64 else 0
        out: dict[str, Any] = {"unseen": unseen or {}}
        if unseen:
            with self._lock:
                for k, v in unseen.items():
                    self.unseen[k] = self.unseen.get(k, 0) + v
        raw = self.booster.predict(X, num_threads=threads)
        if self.objective == "regression":
            out["prediction"] = raw
            if self.lower is not None:
                lo = self.lower.predict(X, num_threads=threads)
                hi = self.upper.predict(X, num_threads=threads)
                # Two separately fitted quantile models can cross; an interval must not.
                out["lower"] = np.minimum(np.minimum(lo, hi), raw)
                out["upper"] = np.maximum(np.maximum(lo, hi), raw)
        else:
            proba = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
            out["proba"] = proba
            out["prediction"] = proba.argmax(axis=1)
        return out

    def answer_rows(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The plain-JSON answer for request rows (RowError on a bad row)."""
        self.features.check_rows(rows)  # a RowError names the bad field
        res = self.predict_matrix(*self.features.transform_rows(rows))
        body: dict[str, Any] = {}
        if self.objective == "regression":
            body["predictions"] = [float(v) for v in res["prediction"]]
            if "lower" in res:
                body["intervals"] = [
                    [float(a), float(b)] for a, b in zip(res["lower"], res["upper"], strict=True)
                ]
        else:
            classes = self.plan.classes or []
            body["predictions"] = [classes[int(i)] for i in res["prediction"]]
            body["probabilities"] = [
                {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)}
                for row in res["proba"]
            ]
        if res["unseen"]:
            body["unseen_categories"] = res["unseen"]
        return body


def _read_json(path: Path) -> dict[str, Any]:
    from zimo.fileio import read_json_optional

    return read_json_optional(path)
