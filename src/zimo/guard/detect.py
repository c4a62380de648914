"""Zero-shot AI-written-text detection with an embedded causal LM.

One forward pass per batch gives per-token statistics (:mod:`zimo.guard.lm_stats`); the scores
(:mod:`zimo.guard.scores`) are cheap functions of them. The scorer model is chosen per language
(gecko-zh = Gemma 3 270M for Chinese and other non-Latin text, gecko = SmolLM2-135M for English)
and the threshold comes from a calibration for a target false-positive rate.

Library use::

    from zimo.guard import Detector, GuardConfig
    det = Detector(GuardConfig(score="combined"))
    rows = det.score(["一段文字……", "Some text ..."])  # [{"guard_score", "guard_flag", ...}]
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zimo.errors import ZimoError
from zimo.guard.calibration import load_calibration, threshold_from
from zimo.guard.config import GuardConfig
from zimo.guard.lm_stats import TokenStats, compute_token_stats, tokenize
from zimo.guard.scores import combined_scores, feature_matrix, needs_for, simple_score

_LATIN = re.compile(r"[A-Za-z]")
_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}


def pick_model(text: str) -> str:
    """gecko (English) for Latin-script text, gecko-zh (multilingual Gemma) as soon as a fifth of
    the letters are not Latin (Chinese with English terms in it is Chinese)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "gecko"
    latin = sum(1 for c in letters if _LATIN.match(c))
    return "gecko" if (len(letters) - latin) / len(letters) < 0.2 else "gecko-zh"


def load_scorer(name: str, dtype_name: str = "fp32"):
    """``(model, tokenizer)`` for a preset or path, loaded once per process."""
    key = (name, dtype_name)
    if key not in _MODELS:
        import torch

        from zimo.models import load_causal_lm

        model, tok = load_causal_lm(name, dtype=torch.float32)
        _MODELS[key] = (model, tok)
    return _MODELS[key]


def choose_bf16(model, mode: str = "auto", probe_tokens: int = 96, batch: int = 4) -> bool:
    """Whether to run under bf16 autocast: only where the CPU has bf16 hardware AND a short
    probe (same batch, fp32 vs bf16, alternated) measures bf16 at least 15% faster."""
    import torch

    from zimo.hw import cpu_has_fast_bf16

    if mode == "off":
        return False
    if mode == "on":
        return True
    if not cpu_has_fast_bf16():
        return False
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(vocab, 30000), (batch, probe_tokens), generator=g).tolist()
    times = {torch.float32: [], torch.bfloat16: []}
    compute_token_stats(model, ids[:1], need=("logp",), dtype=torch.bfloat16)  # warm-up
    for _ in range(2):
        for dt in (torch.float32, torch.bfloat16):
            t = time.perf_counter()
            compute_token_stats(model, ids, need=("logp", "logrank"), dtype=dt, batch_size=batch)
            times[dt].append(time.perf_counter() - t)
    return min(times[torch.bfloat16]) < 0.85 * min(times[torch.float32])


@dataclass
class ScoredDoc:
    """One document's guard result."""

    score: float
    flag: bool
    trusted: bool
    n_tokens: int
    model: str


class Detector:
    """Scores texts for "written by a model" with the embedded LMs and a calibration."""

    def __init__(self, config: GuardConfig | None = None):
        self.config = config or GuardConfig()
        self._bf16: dict[str, bool] = {}
        self._cal: dict[str, dict] = {}
        # Models picked automatically (model: auto) that have no calibration: their documents
        # are scored with a plain score but never flagged (a threshold from another language
        # or model would be meaningless).
        self.uncalibrated: set[str] = set()

    def _usable(self, model: str) -> bool:
        """False for an auto-picked model without a calibration (scored, never flagged)."""
        if self.config.model != "auto" or self.config.threshold is not None:
            return True
        if model in self.uncalibrated:
            return False
        try:
            self.calibration(model)
            return True
        except ZimoError:
            self.uncalibrated.add(model)
            return False

    # ----------------------------------------------------------------- models and calibration
    def model_for(self, text: str) -> str:
        return pick_model(text) if self.config.model == "auto" else self.config.model

    def calibration(self, model: str) -> dict | None:
        """The calibration for ``model`` (None if there is none and a threshold is given)."""
        if model not in self._cal:
            if self.config.calibration is None and self.config.threshold is not None:
                if self.config.score == "combined":
                    # The combined score's weights live in the calibration.
                    self._cal[model] = load_calibration(model, None)
                else:
                    return None
            else:
                self._cal[model] = load_calibration(model, self.config.calibration)
        return self._cal[model]

    def threshold(self, model: str) -> float:
        if self.config.threshold is not None:
            return float(self.config.threshold)
        return threshold_from(self.calibration(model), self.config.score, self.config.target_fpr)

    def uses_bf16(self, model_name: str) -> bool:
        if model_name not in self._bf16:
            model, _ = load_scorer(model_name)
            self._bf16[model_name] = choose_bf16(model, self.config.bf16)
        return self._bf16[model_name]

    # ----------------------------------------------------------------- scoring
    def token_stats(
        self,
        texts: Sequence[str],
        model_name: str,
        need: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[TokenStats]:
        """Per-token statistics of ``texts`` under one scorer model."""
        import torch

        model, tok = load_scorer(model_name)
        ids = tokenize(texts, tok, self.config.token_budget)
        dtype = torch.bfloat16 if self.uses_bf16(model_name) else None
        return compute_token_stats(
            model,
            ids,
            need=need or needs_for(self.config.score),
            batch_size=self.config.batch_size,
            dtype=dtype,
            progress=progress,
        )

    def scores_from_stats(
        self, stats: Sequence[TokenStats], model_name: str, score: str | None = None
    ) -> np.ndarray:
        """The configured score (or ``score``) for each document (NaN for empty ones)."""
        name = score or self.config.score
        if name == "combined":
            cal = self.calibration(model_name)
            return combined_scores(feature_matrix(stats), cal["scores"]["combined"]["model"])
        return np.array([simple_score(name, s) for s in stats], dtype=np.float64)

    def score(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[ScoredDoc]:
        """Score every text; each gets the score, the flag and whether it is trusted
        (at least ``min_tokens`` tokens; untrusted documents are never flagged)."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        by_model: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            by_model.setdefault(self.model_for(t), []).append(i)
        out: list[ScoredDoc | None] = [None] * len(texts)
        for name, idx in by_model.items():
            usable = self._usable(name)
            score = self.config.score if usable or self.config.score != "combined" else "logrank"
            stats = self.token_stats(
                [texts[i] for i in idx], name, need=needs_for(score), progress=progress
            )
            scores = self.scores_from_stats(stats, name, score)
            thr = self.threshold(name) if usable else math.inf
            for i, s, st in zip(idx, scores, stats, strict=True):
                trusted = usable and st.n_tokens >= self.config.min_tokens and not math.isnan(s)
                out[i] = ScoredDoc(
                    score=float(s),
                    flag=bool(trusted and s > thr),
                    trusted=trusted,
                    n_tokens=st.n_tokens,
                    model=name,
                )
        return out  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """Settings that produced the scores (for reports)."""
        return json.loads(self.config.model_dump_json()) | {
            "bf16": dict(self._bf16),
            "thresholds": {m: self.threshold(m) for m in self._bf16 if m not in self.uncalibrated},
            "uncalibrated_models": sorted(self.uncalibrated),
        }
