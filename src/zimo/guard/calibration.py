"""Detector calibration: thresholds for a target false-positive rate, stored as JSON.

A calibration is fitted on a labelled dev split (label 1 = machine-written) for one scorer model
and token budget. It keeps, per score, quantiles of the *human* scores, so the threshold for any
false-positive rate can be read off later without the dev data, and for ``combined`` the
logistic model's weights. Zimo ships one per embedded model in ``zimo/guard/calibrations/``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ConfigError, ZimoError

SHIPPED_DIR = Path(__file__).parent / "calibrations"
# Human-score quantiles stored per score (1001 points: FPR resolution 0.1%).
_QUANTILES = np.linspace(0.0, 1.0, 1001)


def threshold_for_fpr(human_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose share of human scores strictly above it is <= ``fpr``."""
    h = np.sort(np.asarray(human_scores, dtype=np.float64))
    h = h[~np.isnan(h)]
    if h.size == 0:
        raise ValueError("no human scores to calibrate on")
    k = int(math.floor(fpr * h.size))  # at most k humans may be above the threshold
    return float(h[h.size - 1 - k]) if k < h.size else float(h[0])


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """True-positive rate at the threshold that keeps the false-positive rate <= ``fpr``."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    ok = ~np.isnan(scores)
    thr = threshold_for_fpr(scores[ok & (labels == 0)], fpr)
    pos = scores[ok & (labels == 1)]
    return float((pos > thr).mean()) if pos.size else math.nan


def build_calibration(
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
    n_tokens: np.ndarray,
    *,
    model: str,
    token_budget: int,
    min_tokens: int,
    target_fpr: float,
    combined_model: dict | None = None,
    source: dict | None = None,
    style_adapter: str | None = None,
) -> dict[str, Any]:
    """Calibration dict from dev-split scores (documents below ``min_tokens`` are left out,
    since the detector never flags them)."""
    labels = np.asarray(labels)
    keep = np.asarray(n_tokens) >= min_tokens
    out: dict[str, Any] = {
        "version": 1,
        "model": model,
        # The machine-style adapter merged into the scorer (zimo.guard.style.adapter_id), or
        # None: scores from another adapter are on another scale.
        "style_adapter": style_adapter,
        "token_budget": token_budget,
        "min_tokens": min_tokens,
        "target_fpr": target_fpr,
        "source": source or {},
        "n_human": int((keep & (labels == 0)).sum()),
        "n_machine": int((keep & (labels == 1)).sum()),
        "scores": {},
    }
    for name, s in scores.items():
        s = np.asarray(s, float)
        human = s[keep & (labels == 0) & ~np.isnan(s)]
        entry = {
            "threshold": threshold_for_fpr(human, target_fpr),
            "human_quantiles": np.quantile(human, _QUANTILES).tolist(),
            "dev_tpr_at_target": tpr_at_fpr(s[keep], labels[keep], target_fpr),
        }
        if name == "combined":
            if combined_model is None:
                raise ValueError("a combined calibration needs its fitted model")
            entry["model"] = combined_model
        out["scores"][name] = entry
    return out


def threshold_from(calibration: dict, score: str, fpr: float) -> float:
    """Threshold of ``score`` for false-positive rate ``fpr`` from a calibration."""
    entry = calibration["scores"].get(score)
    if entry is None:
        raise ConfigError(
            f"the calibration for {calibration.get('model')} has no score {score!r}",
            f"use one of {sorted(calibration['scores'])} or recalibrate",
        )
    if math.isclose(fpr, calibration.get("target_fpr", -1)):
        return float(entry["threshold"])
    q = np.asarray(entry["human_quantiles"])
    return float(np.interp(1.0 - fpr, _QUANTILES, q))


def save_calibration(calibration: dict, path: Path) -> Path:
    """Write atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(calibration, f, indent=1)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a calibration is shared like any config file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # no half-written file left beside the real one
        raise
    return path


def shipped_path(model: str) -> Path:
    return SHIPPED_DIR / f"{model}.json"


def load_calibration(model: str, path: Path | None = None) -> dict:
    """The calibration at ``path`` (a JSON file, or a folder holding ``<model>.json`` per
    scorer model, as Zimo's shipped folder does), else the shipped one for ``model``."""
    p = Path(path) if path else shipped_path(model)
    if p.is_dir():
        p = p / f"{model}.json"
    if not p.is_file():
        raise ZimoError(
            f"no guard calibration for model {model!r} ({p} not found)",
            "calibrate on a labelled dev split (`zimo guard calibrate`) and set "
            "`guard.calibration`, or set `guard.threshold`",
        )
    try:
        cal = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"guard calibration {p} is not valid JSON ({e})", "recalibrate") from e
    if "scores" not in cal:
        raise ConfigError(f"guard calibration {p} has no `scores`", "recalibrate")
    return cal
