"""Zero-shot AI-written-text detection with an embedded causal LM.

One forward pass per batch gives per-token statistics (:mod:`zimo.guard.lm_stats`); the scores
(:mod:`zimo.guard.scores`) are cheap functions of them. The scorer model is chosen per language
(gecko-zh = Gemma 3 270M for Chinese and other non-Latin text, gecko = SmolLM2-135M for English)
and the threshold comes from a calibration for a target false-positive rate.

Library use::

    from zimo.guard import Detector, GuardConfig
    det = Detector(GuardConfig())  # score: auto = each model's calibrated default
    rows = det.score(["一段文字……", "Some text ..."])  # [{"guard_score", "guard_flag", ...}]
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ConfigError, ZimoError
from zimo.guard.calibration import load_calibration, threshold_from
from zimo.guard.config import GuardConfig
from zimo.guard.lm_stats import TokenStats, compute_token_stats, merge_windows, tokenize_windows
from zimo.guard.scores import combined_from_stats, needs_for, simple_score, uses_hidden
from zimo.guard.style import adapter_id, resolve_adapter

_LATIN = re.compile(r"[A-Za-z]")
_MODELS: dict[tuple[str, str, str | None], tuple[Any, Any]] = {}


def pick_model(text: str) -> str:
    """gecko (English) for Latin-script text, gecko-zh (multilingual Gemma) as soon as a fifth of
    the letters are not Latin (Chinese with English terms in it is Chinese)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "gecko"
    latin = sum(1 for c in letters if _LATIN.match(c))
    return "gecko" if (len(letters) - latin) / len(letters) < 0.2 else "gecko-zh"


def load_scorer(name: str, dtype_name: str = "fp32", style: Path | None = None):
    """``(model, tokenizer)`` for a preset or path, loaded once per process.

    ``style``: a machine-style adapter folder (:mod:`zimo.guard.style`) merged into the weights,
    so the scorer still costs one plain forward pass.

    ``dtype_name="bf16"``: a copy whose Linear weights (and an untied vocabulary projection)
    are stored in bf16 once, to run under bf16 autocast. Why not autocast on the fp32 model:
    autocast re-casts every fp32 weight on every call; for Gemma 3 270M that re-cast of the
    262k x 640 vocabulary projection per chunk was 30% of the CPU time. Embeddings and norms
    stay fp32.
    """
    key = (name, dtype_name, str(style) if style else None)
    if key not in _MODELS:
        import torch

        if dtype_name == "bf16":
            import copy

            base, tok = load_scorer(name, "fp32", style)
            model = copy.deepcopy(base)
            for mod in model.modules():
                if isinstance(mod, torch.nn.Linear):
                    # A new Parameter also unties a projection shared with the embedding.
                    mod.weight = torch.nn.Parameter(
                        mod.weight.detach().to(torch.bfloat16), requires_grad=False
                    )
                    if mod.bias is not None:
                        mod.bias = torch.nn.Parameter(
                            mod.bias.detach().to(torch.bfloat16), requires_grad=False
                        )
            _MODELS[key] = (model.eval(), tok)
        else:
            from zimo.models import load_causal_lm

            model, tok = load_causal_lm(name, dtype=torch.float32, adapter=style)
            if style is not None:
                model = model.merge_and_unload().eval()
            _MODELS[key] = (model, tok)
    return _MODELS[key]


def pick_threads(requested: int | None = None, own_load: float = 0.0) -> int:
    """Intra-op threads for scoring: ``requested``, else the cores that are idle now.

    Why not always every core: torch's OpenMP workers meet at a barrier after every op, and on a
    shared, oversubscribed machine (load average above the core count) one descheduled worker
    stalls the others, which spin while they wait. Measured on the 2-core dev box at load ~10:
    one forward pass of Gemma 3 270M over 110 tokens took 0.95 s wall / 0.37 s CPU with one
    thread and 8.1 s wall / 3.0 s CPU with two. So we use as many threads as there are idle
    cores (at least one). ``own_load``: threads this process itself kept busy over the last
    minute (they are in the load average too, and must not count as neighbours).
    """
    import os

    from zimo.hw import cores as usable_cores

    cores = usable_cores()
    if requested:
        return max(1, min(int(requested), cores))
    try:
        busy = max(0.0, os.getloadavg()[0] - own_load)
    except OSError:  # not available on this platform
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` intra-op threads, then restore the process setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def choose_bf16(
    model_name: str,
    mode: str = "auto",
    probe_tokens: int = 64,
    batch: int = 2,
    style: Path | None = None,
) -> bool:
    """Whether to score with the bf16 copy of the model (:func:`load_scorer`): only where the CPU
    has bf16 hardware (:func:`zimo.hw.cpu_has_fast_bf16`) AND a short probe (same batch, fp32 vs
    bf16, alternated) measures bf16 at least 15% cheaper. The probe compares CPU time of this
    process, not wall time: on a shared machine wall time mostly measures the neighbours."""
    import torch

    from zimo.hw import cpu_has_fast_bf16

    if mode == "off":
        return False
    if mode == "on":
        return True
    if not cpu_has_fast_bf16():
        return False
    fp32, _ = load_scorer(model_name, "fp32", style)
    bf16, _ = load_scorer(model_name, "bf16", style)
    vocab = fp32.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(vocab, 30000), (batch, probe_tokens), generator=g).tolist()
    runs = {"fp32": (fp32, None), "bf16": (bf16, torch.bfloat16)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    compute_token_stats(bf16, ids[:1], need=("logp",), dtype=torch.bfloat16)  # warm-up
    for _ in range(2):
        for k, (m, dt) in runs.items():
            t = time.process_time()
            compute_token_stats(m, ids, need=("logp", "logrank"), dtype=dt, batch_size=batch)
            times[k].append(time.process_time() - t)
    return min(times["bf16"]) < 0.85 * min(times["fp32"])


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
        self.last_threads: int | None = None
        self._last_used = -math.inf
        self._cal: dict[str, dict] = {}
        # Models picked automatically (model: auto) that have no calibration: their documents
        # are scored with a plain score but never flagged (a threshold from another language
        # or model would be meaningless).
        self.uncalibrated: set[str] = set()
        # model -> the score that judges its records (``score: auto`` reads the calibration).
        self._score: dict[str, str] = {}
        # model -> (adapter folder, its content id); the id hashes the weights, so once.
        self._style: dict[str, tuple[Path | None, str | None]] = {}

    def _usable(self, model: str) -> bool:
        """False for an auto-picked model without a calibration (scored, never flagged)."""
        if self.config.model != "auto" or self.config.threshold is not None:
            return True
        if model in self.uncalibrated:
            return False
        if model not in self._cal:
            try:
                cal = self._load(model)
            except ZimoError:
                self.uncalibrated.add(model)
                return False
            self._cal[model] = self._checked(cal, model)  # another adapter's: an error
        if self.score_name(model) not in self._cal[model]["scores"]:
            # An explicit score this model's calibration has no threshold for (the English one
            # calibrates the zero-shot scores only, not `combined`): scored, not judged.
            self.uncalibrated.add(model)
            return False
        return True

    def score_name(self, model: str) -> str:
        """The score that judges ``model``'s records: ``guard.score``; with ``auto``, the one
        its calibration names (``default_score``; calibrations without one: ``combined``), and
        plain log-rank for a model that has no calibration (scored, never flagged)."""
        if self.config.score != "auto":
            return self.config.score
        if model not in self._score:
            cal = self._cal.get(model)
            if cal is None and model not in self.uncalibrated:
                try:
                    cal = self._load(model)
                except ConfigError:
                    raise
                except ZimoError:  # none found: the fallback below
                    cal = None
            self._score[model] = (
                cal.get("default_score", "combined") if cal is not None else "logrank"
            )
        return self._score[model]

    def _load(self, model: str) -> dict:
        """The calibration of ``model``: ``guard.calibration`` if it was fitted for that model,
        else the shipped one. Why per model: with ``model: auto`` every record is routed by its
        script (:func:`pick_model`), so a mixed file needs the Chinese and the English
        calibration at once, and one fitted for gecko-zh says nothing about gecko's scores. A
        calibration that names no model, or a model other than auto, is used as given."""
        cal = load_calibration(model, self.config.calibration)
        fitted_for = cal.get("model")
        if self.config.model == "auto" and fitted_for and fitted_for != model:
            return load_calibration(model)
        return cal

    # ----------------------------------------------------------------- models and calibration
    def model_for(self, text: str) -> str:
        return pick_model(text) if self.config.model == "auto" else self.config.model

    def style(self, model: str) -> Path | None:
        """The machine-style adapter merged into ``model`` (``guard.style_adapter``)."""
        if model not in self._style:
            path = resolve_adapter(self.config.style_adapter, model)
            self._style[model] = (path, adapter_id(path))
        return self._style[model][0]

    def style_id(self, model: str) -> str | None:
        self.style(model)
        return self._style[model][1]

    def calibration(self, model: str) -> dict | None:
        """The calibration for ``model`` (None if there is none and a threshold is given)."""
        if model not in self._cal:
            # With a fixed threshold only the combined score needs one (its weights live there).
            fixed = self.config.calibration is None and self.config.threshold is not None
            if fixed and self.score_name(model) != "combined":
                return None
            self._cal[model] = self._checked(self._load(model), model)
        return self._cal[model]

    def _checked(self, cal: dict, model: str) -> dict:
        """Refuse a calibration made with another style adapter: its thresholds and weights
        belong to other scores."""
        have, used = cal.get("style_adapter"), self.style_id(model)
        if have != used:
            raise ConfigError(
                f"the guard calibration for {model} was made with style adapter "
                f"{have or 'none'}, but the guard scores with {used or 'none'}",
                "set guard.style_adapter to match, or recalibrate with `zimo guard calibrate`",
            )
        return cal

    def threshold(self, model: str) -> float:
        if self.config.threshold is not None:
            return float(self.config.threshold)
        return threshold_from(
            self.calibration(model), self.score_name(model), self.config.target_fpr
        )

    def combined_model(self, model: str) -> dict:
        """The stored weights of the combined score for ``model`` (from its calibration)."""
        return self.calibration(model)["scores"]["combined"]["model"]

    def min_tokens(self, model: str) -> int:
        """Fewest scored tokens for a trusted score: ``guard.min_tokens``, and never fewer than
        the calibration's own minimum (its thresholds were set on longer texts only; below
        it no threshold was measured, so a flag would be a guess)."""
        cal = self._cal.get(model)
        if cal is None and (self.config.threshold is None or self.score_name(model) == "combined"):
            cal = self.calibration(model)
        return max(self.config.min_tokens, int((cal or {}).get("min_tokens", 0)))

    def threads(self) -> int:
        """Intra-op threads for the next scoring call (see :func:`pick_threads`); our own
        scoring within the last minute is not counted as load from the neighbours."""
        recent = self.last_threads if time.monotonic() - self._last_used < 60 else 0
        n = pick_threads(self.config.threads, own_load=float(recent or 0))
        self.last_threads = n
        self._last_used = time.monotonic()
        return n

    def uses_bf16(self, model_name: str) -> bool:
        if model_name not in self._bf16:
            with torch_threads(self.threads()):
                self._bf16[model_name] = choose_bf16(
                    model_name, self.config.bf16, style=self.style(model_name)
                )
        return self._bf16[model_name]

    # ----------------------------------------------------------------- scoring
    def token_stats(
        self,
        texts: Sequence[str],
        model_name: str,
        need: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
        pool_hidden: bool = False,
    ) -> list[TokenStats]:
        """Per-token statistics of ``texts`` under one scorer model (the first ``max_tokens``
        tokens of each, in windows of ``token_budget``; ``pool_hidden``: with each text's mean
        hidden state)."""
        import torch

        bf16 = self.uses_bf16(model_name)
        model, tok = load_scorer(model_name, "bf16" if bf16 else "fp32", self.style(model_name))
        ids, owner = tokenize_windows(texts, tok, self.config.token_budget, self.config.max_tokens)
        dtype = torch.bfloat16 if bf16 else None
        counted = [0, 0]  # windows done, texts reported

        def windows_done(k: int) -> None:
            # Progress is counted in texts: report the share of windows done, in text units.
            counted[0] += k
            now = counted[0] * len(texts) // max(len(ids), 1)
            if progress and now > counted[1]:
                progress(now - counted[1])
                counted[1] = now

        with torch_threads(self.threads()):
            stats = compute_token_stats(
                model,
                ids,
                need=need or needs_for(self.score_name(model_name)),
                batch_size=self.config.batch_size,
                dtype=dtype,
                progress=windows_done,
                pool_hidden=pool_hidden,
            )
        self._last_used = time.monotonic()  # our threads were busy until now
        return merge_windows(stats, owner, len(texts))

    def scores_from_stats(
        self, stats: Sequence[TokenStats], model_name: str, score: str | None = None
    ) -> np.ndarray:
        """The configured score (or ``score``) for each document (NaN for empty ones)."""
        name = score or self.score_name(model_name)
        if name == "combined":
            return combined_from_stats(stats, self.combined_model(model_name))
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
            score = self.score_name(name)
            score = score if usable or score != "combined" else "logrank"
            hidden = score == "combined" and uses_hidden(self.combined_model(name))
            stats = self.token_stats(
                [texts[i] for i in idx],
                name,
                need=needs_for(score),
                progress=progress,
                pool_hidden=hidden,
            )
            scores = self.scores_from_stats(stats, name, score)
            thr = self.threshold(name) if usable else math.inf
            floor = self.min_tokens(name) if usable else self.config.min_tokens
            for i, s, st in zip(idx, scores, stats, strict=True):
                trusted = usable and st.n_tokens >= floor and not math.isnan(s)
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
            "style_adapters": {m: self.style_id(m) for m in self._bf16},
            "threads_used": self.last_threads,
            "thresholds": {m: self.threshold(m) for m in self._bf16 if m not in self.uncalibrated},
            # The score that judged each model's records (``score: auto`` picks it per model).
            "scores": {m: self.score_name(m) for m in self._bf16},
            "uncalibrated_models": sorted(self.uncalibrated),
        }
