"""ROUGE-L for the Self-Instruct novelty filter, CJK-aware and fast.

Self-Instruct keeps a generated instruction only if its ROUGE-L F-measure against every
instruction already in the pool is below 0.7. The reference implementation (``rouge-score``)
tokenises by ``[a-z0-9]+`` after lowercasing, which deletes Chinese text entirely, and its LCS
is a pure-Python O(m·n) table, so the paper ran it in a process pool. Here:

- tokens are lowercase ASCII words/numbers (as ``rouge-score``) plus *single characters* for
  CJK scripts (the usual character-level ROUGE for Chinese);
- the LCS uses the bit-parallel algorithm (Allison & Dix 1986; Hyyrö 2004): for a candidate of
  ≤ 64 tokens, one uint64 per pool entry, and the whole pool advances one token column at a
  time with numpy, so scoring against 10k instructions is a few ms. Longer candidates fall back
  to the same algorithm on Python integers (exact, arbitrary width).
"""

from __future__ import annotations

import re

import numpy as np

_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[a-z0-9]+"
)


def tokenize(text: str) -> list[str]:
    """Lowercase ASCII words and numbers, plus one token per CJK character."""
    return _TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (bit-parallel on Python ints; any length)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 between two token lists (as ``rouge-score``'s ``rougeL`` fmeasure)."""
    if not a or not b:
        return 0.0
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
