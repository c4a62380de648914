"""Train and load a classical text sub-model (TF-IDF n-grams + logistic regression).

It is the cheapest tier a label project can serve: a few milliseconds per message on one core.
Probabilities are calibrated by cross-validation on the train split (``CalibratedClassifierCV``),
so they can be compared with a threshold in a cascade; the positive label's decision threshold
is then chosen on the dev split, as for the LoRA sub-model, and stored with the model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from zimo.classical.config import ClassicalTrainConfig
from zimo.fileio import atomic_path, read_json_optional, write_json_atomic

MODEL_FILE = "classical.joblib"


def make_pipeline(cfg: ClassicalTrainConfig):
    """TF-IDF features that export to ONNX exactly (see ``zimo.tabular.onnx_export``: plain
    "char" n-grams, ASCII word n-grams, texts normalised before both runtimes) and a logistic
    regression, calibrated by cross-validation unless ``calibration: none``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from zimo.tabular.onnx_export import onnx_compatible_text_vectorizer

    if not cfg.char_ngrams and not cfg.word_ngrams:
        raise ValueError("train: classical needs char_ngrams or word_ngrams")
    # Plain "char" (not "char_wb"): Chinese has no spaces, so word-bounded n-grams would see a
    # whole message as one word.
    features = onnx_compatible_text_vectorizer(
        char_ngrams=tuple(cfg.char_ngrams) if cfg.char_ngrams else None,
        word_ngrams=tuple(cfg.word_ngrams) if cfg.word_ngrams else None,
        min_df=cfg.min_df,
    )
    lr = LogisticRegression(max_iter=3000, C=cfg.C, class_weight=cfg.class_weight,
                            random_state=cfg.seed)  # fmt: skip
    clf = (
        lr
        if cfg.calibration == "none"
        else CalibratedClassifierCV(lr, method=cfg.calibration, cv=3)
    )
    return Pipeline([("tfidf", features), ("clf", clf)])


def normalise(texts) -> list[str]:
    from zimo.tabular.onnx_export import normalize_text

    return [normalize_text(t) for t in texts]


def train_classical(
    train: list[dict],
    dev: list[dict],
    labels: list[str],
    cfg: ClassicalTrainConfig,
    out_dir: Path,
    *,
    positive_label: str | None = None,
) -> dict[str, Any]:
    import joblib

    from zimo.infer.label import dev_threshold

    index = {lab: i for i, lab in enumerate(labels)}
    rows = [r for r in train if r.get("label") in index and isinstance(r.get("text"), str)]
    y = np.array([index[r["label"]] for r in rows])
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise ValueError("the train split has fewer than two labels; add data")
    cv_ok = np.bincount(y).min() >= 3 if len(present) == len(labels) else False
    if cfg.calibration != "none" and not cv_ok:
        cfg = cfg.model_copy(update={"calibration": "none"})  # too few rows per class for CV
    model = make_pipeline(cfg)
    t0 = time.perf_counter()
    model.fit(normalise(r["text"] for r in rows), y)
    fit_s = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / MODEL_FILE) as tmp:
        joblib.dump(model, tmp)
    threshold = None
    dev_rows = [r for r in dev if r.get("label") in index]
    if positive_label is not None and len(dev_rows) >= 10:
        p_dev = _full_proba(model, [r["text"] for r in dev_rows], len(labels))
        threshold = dev_threshold(np.array([index[r["label"]] for r in dev_rows]), p_dev,
                                  index[positive_label])  # fmt: skip
    write_json_atomic(out_dir / "label_task.json", {
        "labels": labels, "positive_label": positive_label, "decision_threshold": threshold,
    })  # fmt: skip
    return {"fit_s": round(fit_s, 3), "train_rows": len(rows), "calibration": cfg.calibration,
            "decision_threshold": threshold}  # fmt: skip


def _full_proba(model, texts: list[str], n_labels: int) -> np.ndarray:
    """Probabilities over every declared label (a label absent from train gets 0)."""
    p = model.predict_proba(normalise(texts))
    classes = model.classes_
    if len(classes) == n_labels:
        return p
    out = np.zeros((len(texts), n_labels))
    out[:, classes] = p
    return out


class ClassicalPredictor:
    """A trained classical sub-model, as the eval stage and the gateway use it."""

    def __init__(self, folder: Path):
        import joblib

        self.folder = Path(folder)
        self.model = joblib.load(self.folder / MODEL_FILE)
        task = read_json_optional(self.folder / "label_task.json")
        self.meta = read_json_optional(self.folder / "zimo_model.json")
        self.labels: list[str] = list(task.get("labels") or self.meta.get("labels") or [])
        self.positive_label: str | None = task.get("positive_label")
        self.threshold: float | None = task.get("decision_threshold")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return _full_proba(self.model, list(texts), len(self.labels))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        from zimo.infer.label import decide

        pos = self.labels.index(self.positive_label) if self.positive_label else None
        return decide(proba, pos, self.threshold)

    def label(self, text: str) -> tuple[str, dict[str, float]]:
        proba = self.predict_proba([text])
        pred = int(self.decide(proba)[0])
        probs = {lab: round(float(p), 6) for lab, p in zip(self.labels, proba[0], strict=True)}
        return self.labels[pred], probs
