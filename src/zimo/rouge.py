"""ROUGE-L, one implementation for the whole house: the Self-Instruct novelty filter (synth)
and the generate-task metric (eval) tokenise and match the same way.

- Tokens: NFKC, case-folded; each CJK character alone (the usual character-level ROUGE for
  Chinese, which needs no segmenter), other letter/digit runs as words, punctuation dropped;
  ``mode="jieba"`` segments Chinese into words instead. The reference implementation
  (``rouge-score``) tokenises by ``[a-z0-9]+``, which deletes Chinese text entirely.
- LCS: the bit-parallel algorithm (Allison & Dix 1986; Hyyrö 2004), O(|a|·|b|/64) on Python
  integers for one pair; :class:`RougePool` advances a whole pool of ≤ 64-token candidates
  one token column at a time with numpy, so scoring against 10k instructions is a few ms.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_CJK = (
    r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
    r"\U00020000-\U0002ebef\U00030000-\U0003134f"
)
# One CJK character (ideograph, kana or hangul syllable), or a run of letters/digits.
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+", re.UNICODE)
_CJK_CHAR = re.compile(rf"[{_CJK}]")


def tokenize(text: str | None, mode: str = "char") -> list[str]:
    """Tokens for ROUGE: each CJK character alone, Latin/digit runs as lower-cased words.

    Punctuation is dropped. ``mode="jieba"`` segments Chinese into words with jieba (when it
    is installed); character tokens are the common choice for Chinese ROUGE because they need
    no segmenter and do not depend on its dictionary.
    """
    if not text:
        return []
    text = unicodedata.normalize("NFKC", text).casefold()
    if mode == "jieba":
        try:
            import jieba  # optional: word-level Chinese ROUGE
        except ImportError as e:
            raise ValueError("tokenizer 'jieba' needs `pip install jieba`") from e
        toks: list[str] = []
        for w in jieba.lcut(text):
            toks.extend(_TOKEN.findall(w) if not _CJK_CHAR.search(w) else ["".join(w.split())])
        return [t for t in toks if t and (_CJK_CHAR.search(t) or t.isalnum())]
    if mode != "char":
        raise ValueError(f"unknown ROUGE tokenizer {mode!r}: use 'char' or 'jieba'")
    return _TOKEN.findall(text)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel)."""
    if not a or not b:
        return 0
    m = len(b)
    masks: dict[str, int] = {}
    for j, t in enumerate(b):
        masks[t] = masks.get(t, 0) | (1 << j)
    full = (1 << m) - 1
    v = full
    for t in a:
        u = v & masks.get(t, 0)
        v = ((v + u) | (v - u)) & full
    return m - bin(v).count("1")


def rouge_l_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 in [0, 1] between two token lists (``rouge-score``'s ``rougeL`` fmeasure)."""
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(b), lcs / len(a)
    return 2 * p * r / (p + r)


class RougePool:
    """A growing pool of token lists; :meth:`max_score` = best ROUGE-L F1 of a candidate."""

    def __init__(self) -> None:
        self._vocab: dict[str, int] = {}
        self._rows: list[np.ndarray] = []  # token ids per pool entry
        self._lens: list[int] = []
        self._matrix: np.ndarray | None = None  # (n, max_len) int32, -1 padded
        self._len_arr: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def _ids(self, tokens: list[str], grow: bool) -> np.ndarray:
        if grow:
            return np.array(
                [self._vocab.setdefault(t, len(self._vocab)) for t in tokens], dtype=np.int32
            )
        return np.array([self._vocab.get(t, -2) for t in tokens], dtype=np.int32)

    def add(self, tokens: list[str]) -> None:
        self._rows.append(self._ids(tokens, grow=True))
        self._lens.append(len(tokens))
        self._matrix = None

    def _build(self) -> None:
        width = max(self._lens, default=0) or 1
        mat = np.full((len(self._rows), width), -1, dtype=np.int32)
        for i, row in enumerate(self._rows):
            mat[i, : len(row)] = row
        self._matrix = mat
        self._len_arr = np.array(self._lens, dtype=np.float64)

    def scores(self, tokens: list[str]) -> np.ndarray:
        """ROUGE-L F1 of ``tokens`` against every pool entry."""
        n = len(self._rows)
        if n == 0 or not tokens:
            return np.zeros(n)
        if self._matrix is None:
            self._build()
        assert self._matrix is not None and self._len_arr is not None
        if len(tokens) > 64:
            lcs = np.array([self._lcs_exact(tokens, row) for row in self._rows], dtype=np.float64)
        else:
            lcs = self._lcs_vectorised(tokens)
        m = float(len(tokens))
        with np.errstate(divide="ignore", invalid="ignore"):
            p = lcs / self._len_arr
            r = lcs / m
            f = np.where(lcs > 0, 2 * p * r / (p + r), 0.0)
        return f

    def max_score(self, tokens: list[str]) -> float:
        s = self.scores(tokens)
        return float(s.max()) if s.size else 0.0

    def _lcs_exact(self, tokens: list[str], row: np.ndarray) -> int:
        ids = self._ids(tokens, grow=False)
        return lcs_length([str(i) for i in ids], [str(i) for i in row.tolist()])

    def _lcs_vectorised(self, tokens: list[str]) -> np.ndarray:
        assert self._matrix is not None
        ids = self._ids(tokens, grow=False)
        m = len(ids)
        # Match mask of the candidate for each vocabulary id that occurs in it.
        uniq = np.unique(ids[ids >= 0])
        table_ids = np.full(len(self._vocab) + 1, -1, dtype=np.int64)  # vocab id -> table row
        table_ids[uniq] = np.arange(len(uniq))
        masks = np.zeros(len(uniq) + 1, dtype=np.uint64)  # last row: no match
        for i, t in enumerate(ids):
            if t >= 0:
                masks[table_ids[t]] |= np.uint64(1) << np.uint64(i)
        full = np.uint64((1 << m) - 1) if m < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
        v = np.full(self._matrix.shape[0], full, dtype=np.uint64)
        no_match = len(uniq)
        with np.errstate(over="ignore"):
            for col in self._matrix.T:
                # Padding (-1) and tokens absent from the candidate map to the zero mask.
                rows = np.where(col >= 0, table_ids[np.maximum(col, 0)], -1)
                rows = np.where(rows >= 0, rows, no_match)
                u = v & masks[rows]
                v = ((v + u) | (v - u)) & full
        zeros = m - _popcount(v)
        return zeros.astype(np.float64)


def _popcount(v: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(v).astype(np.int64)
    b = v.view(np.uint8).reshape(-1, 8)
    return np.unpackbits(b, axis=1).sum(axis=1).astype(np.int64)
