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


# The prompt's *form*, not its topic: how many options, how long and how alike they are, whether
# they are numbers, negated stems ("Which is NOT ..."), paired statements, calculations, code.
# These describe what kind of task a prompt is in words any subject shares, so a router that reads
# them should carry over to subjects it never saw better than one that reads the topic
# (benchmarks/route_mmlu.py --holdout measures whether it does).
FORM_FEATURES = (
    "n_options",
    "log_stem_chars",
    "log_option_chars",
    "option_len_cv",
    "numeric_options",
    "negated",
    "statements",
    "true_false_options",
    "all_none_option",
    "which_following",
    "compute_verb",
    "numbers_in_stem",
    "code_lines",
    "blank",
    "latex",
)
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s*(.*)$")
_NEG = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE|INCORRECT)\b")
_NEG_LOWER = re.compile(r"\b(not|except|least|incorrect|false)\b", re.I)
_COMPUTE = re.compile(
    r"\b(calculate|compute|find|solve|evaluate|simplify|how many|how much|what is the value|"
    r"determine|estimate)\b",
    re.I,
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_CODE = re.compile(r"(;\s*$|[{}]\s*$|^\s*(def|return|print|for|while|if|int|void|class)\b|==|\+\+)")
_NUMERIC = re.compile(r"^[\s$€£%\d.,\-+/*^()=x√πe]+$")


def form_features(texts: Sequence[str]) -> np.ndarray:
    """Topic-free statistics of the prompt's form (see ``FORM_FEATURES``), shape ``(n, 15)``."""
    out = np.zeros((len(texts), len(FORM_FEATURES)), dtype=np.float64)
    for i, t in enumerate(texts):
        lines = t.splitlines()
        opts = [m.group(2) for m in (_OPTION_LINE.match(ln) for ln in lines) if m]
        if len(opts) < 2:
            opts = []
        stem = "\n".join(ln for ln in lines if not _OPTION_LINE.match(ln)) if opts else t
        olen = np.array([len(o) for o in opts], dtype=np.float64)
        low = t.lower()
        stem_lines = [ln for ln in stem.splitlines() if ln.strip()]
        out[i] = (
            len(opts),
            math.log1p(len(stem)),
            math.log1p(olen.mean()) if len(olen) else 0.0,
            (olen.std() / max(olen.mean(), 1.0)) if len(olen) else 0.0,
            (sum(bool(_NUMERIC.match(o.strip())) for o in opts) / len(opts)) if opts else 0.0,
            float(bool(_NEG.search(stem))) + 0.5 * float(bool(_NEG_LOWER.search(stem))),
            float("statement 1" in low),
            float(
                bool(opts) and all(o.strip().lower().startswith(("true", "false")) for o in opts)
            ),
            float(
                any(("all of the above" in o.lower() or "none of the" in o.lower()) for o in opts)
            ),
            float("which of the following" in low),
            float(bool(_COMPUTE.search(stem))),
            math.log1p(len(_NUMBER.findall(stem))),
            (sum(bool(_CODE.search(ln)) for ln in stem_lines) / len(stem_lines))
            if stem_lines
            else 0.0,
            float("___" in t or " _ " in t),
            float("$" in t or "\\frac" in t or "^" in t),
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
