"""Prompt features for pre-call routers: MiniLM embeddings and cheap surface statistics.

The surface features cost microseconds and carry real signal about difficulty (long prompts,
many digits or formulas, multi-part statements are harder for small models); they are also the
router's fallback when a deployment cannot afford an embedding per request.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import numpy as np

SURFACE_FEATURES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_share",
    "math_share",
    "upper_share",
    "non_ascii_share",
    "punct_share",
    "mean_word_len",
    "question_marks",
    "longest_line_share",
)

_MATH = re.compile(r"[=+\-*/^<>%√∑∫π|{}\[\]]")
_PUNCT = re.compile(r"[.,;:!?\"'()]")


def surface_features(texts: Sequence[str]) -> np.ndarray:
    """Cheap per-prompt statistics (see ``SURFACE_FEATURES``), shape ``(n, 11)``."""
    out = np.zeros((len(texts), len(SURFACE_FEATURES)), dtype=np.float64)
    for i, t in enumerate(texts):
        n = max(len(t), 1)
        words = t.split()
        lines = [ln for ln in t.splitlines() if ln.strip()] or [t]
        out[i] = (
            math.log1p(len(t)),
            math.log1p(len(words)),
            math.log1p(len(lines)),
            sum(c.isdigit() for c in t) / n,
            len(_MATH.findall(t)) / n,
            sum(c.isupper() for c in t) / n,
            sum(ord(c) > 127 for c in t) / n,
            len(_PUNCT.findall(t)) / n,
            (sum(len(w) for w in words) / len(words)) if words else 0.0,
            math.log1p(t.count("?")),
            max(len(ln) for ln in lines) / n,
        )
    return out


def length_feature(texts: Sequence[str]) -> np.ndarray:
    """log(1 + characters), shape ``(n, 1)``: the prompt-length baseline router."""
    return np.array([[math.log1p(len(t))] for t in texts], dtype=np.float64)


def prompt_embeddings(
    texts: Sequence[str],
    *,
    max_seq_length: int = 256,
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = False,
    dtype: str = "auto",
) -> np.ndarray:
    """Normalised MiniLM embeddings of the prompts (cached; see :mod:`zimo.embeddings`).

    Prompts that fit in ``max_seq_length`` share cache entries with other truncation lengths;
    ``dtype="auto"`` runs MiniLM in bf16 where the CPU has native bf16 (1.6x faster, cosine
    0.9999 to float32).
    """
    from zimo.embeddings import embed

    return embed(
        list(texts),
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        cache_path=cache_path,
        progress=progress,
        dtype=dtype,
        share_untruncated=True,
    )


def estimate_tokens(texts: Sequence[str]) -> np.ndarray:
    """Rough token count for pricing (≈ 4 characters per token in English, 1 per CJK char)."""
    out = np.empty(len(texts), dtype=np.float64)
    for i, t in enumerate(texts):
        cjk = sum(1 for c in t if "\u3400" <= c <= "\u9fff")
        out[i] = cjk + (len(t) - cjk) / 4
    return out
