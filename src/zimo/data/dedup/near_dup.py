"""Near-duplicate removal: MinHash signatures + LSH banding, vectorised with numpy.

Shingles are character n-grams for CJK text (no spaces to split on) and word n-grams
otherwise, both hashed with one polynomial rolling hash computed for all windows at once from
prefix sums (``H[a:b] = (S[b] - S[a]) * P^-a  mod 2^64``; P is odd, so it has an inverse
mod 2^64). MinHash applies ``num_perm`` multiply-add permutations to the shingle hashes of a
whole batch of documents and reduces per document with ``np.minimum.reduceat``. We wrote this
instead of using datasketch's per-document ``MinHash.update`` loop (or datatrove's per-shingle
Python hashing) because hashing is where near-dup time goes; see benchmarks/curate_dedup.py.

Selection is deterministic: documents sharing an LSH bucket are linked to the bucket's first
document, optionally verified by the signatures' estimated Jaccard, and each connected group
keeps its earliest document.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from zimo.data.pipeline import GlobalStep, Step, record_text
from zimo.data.step_spec import StepSpec

_P = 1099511628211  # odd 64-bit multiplier (the FNV prime)
_P_INV = pow(_P, -1, 1 << 64)
_U64 = np.uint64

# Punctuation, symbols and underscores become spaces before shingling ("AI," matches "AI").
BATCH_CHARS = 1 << 21  # code points hashed per numpy pass (bounds the prefix arrays)
MINHASH_BLOCK = 8192  # shingles per permutation block: keeps temporaries in L2 cache


class _Powers:
    """P^i and P^-i mod 2^64 for i < n, grown on demand (shared by every document)."""

    def __init__(self) -> None:
        self.pow = np.ones(1, dtype=_U64)
        self.inv = np.ones(1, dtype=_U64)

    def ensure(self, n: int) -> None:
        if len(self.pow) >= n:
            return
        n = max(n, 2 * len(self.pow), BATCH_CHARS + (1 << 16))
        with np.errstate(over="ignore"):
            one = np.ones(1, dtype=_U64)  # (a Python [1] would promote the result to float64)
            self.pow = np.concatenate((one, np.cumprod(np.full(n - 1, _P, dtype=_U64))))
            self.inv = np.concatenate((one, np.cumprod(np.full(n - 1, _P_INV, dtype=_U64))))


_POW = _Powers()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads polynomial hashes over all 64 bits."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U64(27))
        x = x * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def _window_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    _POW.ensure(len(codes) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(codes) + 1, dtype=_U64)
        np.cumsum(codes.astype(_U64) * _POW.pow[: len(codes)], out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * _POW.inv[starts]


class _CharTables:
    """Per-code-point lookup tables for the Basic Multilingual Plane, built once (~50 ms):
    lowercase mapping, "is a word character" (letters and digits), "is CJK". They let numpy
    normalise a whole batch of texts at once instead of running a regex per text (which was
    80% of the time)."""

    def __init__(self) -> None:
        n = 0x10000
        self.lower = np.arange(n, dtype=np.uint32)
        self.word = np.zeros(n, dtype=bool)
        for i in range(n):
            if 0xD800 <= i <= 0xDFFF:
                continue
            ch = chr(i)
            if ch.isalnum():
                self.word[i] = True
            lo = ch.lower()
            if len(lo) == 1 and lo != ch:
                self.lower[i] = ord(lo)
        self.cjk = np.zeros(n, dtype=bool)
        for lo, hi in (
            (0x3040, 0x30FF),
            (0x3400, 0x4DBF),
            (0x4E00, 0x9FFF),
            (0xAC00, 0xD7AF),
            (0xF900, 0xFAFF),
        ):
            self.cjk[lo : hi + 1] = True


_TABLES: _CharTables | None = None


def _tables() -> _CharTables:
    global _TABLES
    if _TABLES is None:
        _TABLES = _CharTables()
    return _TABLES


def _flat_shingles(
    texts: list[str], ngram: int, word_ngram: int, min_chars: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of many texts at once: ``(values, counts)``, values grouped by text.

    Texts are lowercased and every run of non-letters/digits becomes one space. A text counts
    as CJK when at least a third of its characters are CJK; its shingles are then
    ``ngram``-character windows with spaces removed, otherwise ``word_ngram``-word windows.
    A text shorter than one window is one shingle; an empty (or < ``min_chars``) text has none.
    Everything is vectorised over the texts joined by spaces: one pass hashes every window.
    """
    tab = _tables()
    n_docs = len(texts)
    texts = [t if len(t) >= min_chars else "" for t in texts]
    raw = np.frombuffer(" ".join(texts).encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n_docs)
    doc = np.repeat(np.arange(n_docs), lens + 1)[: len(raw)]
    clipped = np.minimum(raw, 0xFFFF)
    codes = tab.lower[clipped]
    is_word = tab.word[clipped]
    astral = raw > 0xFFFF
    if astral.any():  # outside the BMP (rare): keep as is, count as letters
        codes[astral] = raw[astral]
        is_word[astral] = True
    codes[~is_word] = 32
    # One space per run, none at a text's start: keep a space only right after a letter.
    prev_word = np.concatenate(([False], is_word[:-1])) & (doc == np.concatenate(([-1], doc[:-1])))
    keep = is_word | prev_word
    codes, doc, is_word = codes[keep], doc[keep], is_word[keep]
    sizes = np.bincount(doc, minlength=n_docs)
    cjk = np.bincount(
        doc, weights=(codes < 0x10000) & tab.cjk[np.minimum(codes, 0xFFFF)], minlength=n_docs
    )
    char_mode = (cjk * 3 >= sizes) & (sizes > 0)
    keep = is_word | ~char_mode[doc]  # CJK texts: spaces carry no meaning
    codes, doc, is_word = codes[keep], doc[keep], is_word[keep]
    doc_start = np.searchsorted(doc, np.arange(n_docs))
    lens = np.bincount(doc, minlength=n_docs)

    # Character windows.
    cm = char_mode & (lens > 0)
    c_lens, c_start, c_doc = lens[cm], doc_start[cm], np.flatnonzero(cm)
    c_count = np.maximum(c_lens - ngram + 1, 1)
    c_rep = np.repeat(np.arange(len(c_lens)), c_count)
    first = np.concatenate(([0], np.cumsum(c_count)[:-1])).astype(np.int64)
    c_s = c_start[c_rep] + (np.arange(int(c_count.sum())) - first[c_rep])
    c_e = c_s + np.minimum(ngram, c_lens)[c_rep]
    c_d = c_doc[c_rep]

    # Word windows (word texts only).
    wm = is_word & ~char_mode[doc]
    prev = np.concatenate(([False], wm[:-1]))
    nxt = np.concatenate((wm[1:], [False]))
    w_start = np.flatnonzero(wm & ~prev)
    w_end = np.flatnonzero(wm & ~nxt) + 1
    w_doc = doc[w_start]
    k = word_ngram
    if len(w_doc) >= k:
        m = len(w_doc) - k + 1
        same = w_doc[:m] == w_doc[k - 1 :]
        g_s, g_e, g_d = w_start[:m][same], w_end[k - 1 :][same], w_doc[:m][same]
    else:
        g_s = g_e = g_d = np.empty(0, dtype=np.int64)
    n_words = np.bincount(w_doc, minlength=n_docs)
    short = np.flatnonzero((n_words > 0) & (n_words < k))
    if len(short):  # fewer than k words: one shingle spanning them all
        g_s = np.concatenate((g_s, w_start[np.searchsorted(w_doc, short, side="left")]))
        g_e = np.concatenate((g_e, w_end[np.searchsorted(w_doc, short, side="right") - 1]))
        g_d = np.concatenate((g_d, short))

    starts = np.concatenate((c_s, g_s)).astype(np.int64)
    ends = np.concatenate((c_e, g_e)).astype(np.int64)
    docs = np.concatenate((c_d, g_d)).astype(np.int64)
    order = np.argsort(docs, kind="stable")
    values = _mix(_window_hashes(codes, starts[order], ends[order]))
    return values, np.bincount(docs, minlength=n_docs)


def flat_shingles(
    texts: list[str], ngram: int = 5, word_ngram: int = 5, min_chars: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_flat_shingles` over batches of about ``BATCH_CHARS`` characters."""
    vals, counts = [], []
    i = 0
    while i < len(texts):
        j, size = i, 0
        while j < len(texts) and (j == i or size + len(texts[j]) <= BATCH_CHARS):
            size += len(texts[j]) + 1
            j += 1
        v, c = _flat_shingles(texts[i:j], ngram, word_ngram, min_chars)
        vals.append(v)
        counts.append(c)
        i = j
    if not vals:
        return np.empty(0, dtype=_U64), np.empty(0, dtype=np.int64)
    return np.concatenate(vals), np.concatenate(counts)


def shingle_hashes(text: str, ngram: int = 5, word_ngram: int = 5) -> np.ndarray:
    """Unique 64-bit hashes of one text's shingles (CJK: ``ngram`` characters; otherwise
    ``word_ngram`` words), after lowercasing and turning punctuation into spaces."""
    values, _ = _flat_shingles([text], ngram, word_ngram)
    return np.unique(values)


def _optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positives + false negatives around ``threshold``."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


class MinHasher:
    """MinHash signatures for many documents at once."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 63, size=num_perm, dtype=np.uint64) | _U64(1)
        self.b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signatures(self, shingles: list[np.ndarray]) -> np.ndarray:
        """(len(shingles), num_perm) uint64 for per-document shingle arrays."""
        counts = np.fromiter((len(x) for x in shingles), dtype=np.int64, count=len(shingles))
        flat = np.concatenate(shingles) if len(shingles) else np.empty(0, dtype=_U64)
        return self.signatures_flat(flat.astype(_U64, copy=False), counts)

    def signatures_flat(self, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Signatures from shingle values grouped by document (``counts`` per document).

        A document without shingles gets an all-max signature (never matched). Documents are
        processed in groups of about ``MINHASH_BLOCK`` shingles, permutations in blocks of 32,
        so the temporary matrix stays in cache; that alone made this 6× faster than one big
        matrix.
        """
        n_docs = len(counts)
        out = np.full((n_docs, self.num_perm), np.iinfo(np.uint64).max, dtype=_U64)
        ends = np.cumsum(counts)
        starts = ends - counts
        doc = 0
        while doc < n_docs:
            if counts[doc] == 0:
                doc += 1
                continue
            # Grow the group while it stays under the block size (a huge document goes alone).
            last = int(np.searchsorted(ends, starts[doc] + MINHASH_BLOCK, side="right"))
            last = max(last, doc + 1)
            group = np.arange(doc, last)
            group = group[counts[group] > 0]
            lo, hi = int(starts[doc]), int(ends[last - 1])
            block = values[lo:hi]
            offsets = starts[group] - lo
            for p0 in range(0, self.num_perm, 32):
                a = self.a[p0 : p0 + 32, None]
                b = self.b[p0 : p0 + 32, None]
                if hi - lo > 4 * MINHASH_BLOCK:  # one long document: chunk its shingles
                    mins = np.full(len(a), np.iinfo(np.uint64).max, dtype=_U64)
                    for c0 in range(0, hi - lo, MINHASH_BLOCK):
                        with np.errstate(over="ignore"):
                            part = block[None, c0 : c0 + MINHASH_BLOCK] * a + b
                        np.minimum(mins, part.min(axis=1), out=mins)
                    out[group, p0 : p0 + 32] = mins
                else:
                    with np.errstate(over="ignore"):
                        permuted = block[None, :] * a + b
                    out[group, p0 : p0 + 32] = np.minimum.reduceat(permuted, offsets, axis=1).T
            doc = last
        return out


def lsh_duplicates(
    sigs: np.ndarray, bands: int, rows: int, verify_threshold: float | None
) -> np.ndarray:
    """For each document the index of the document it duplicates (itself if none)."""
    n = len(sigs)
    if n < 2:
        return np.arange(n)
    rng = np.random.default_rng(7)
    mult = rng.integers(1, 1 << 63, size=rows, dtype=np.uint64) | _U64(1)
    valid = sigs[:, 0] != np.iinfo(np.uint64).max
    src, dst = [], []
    for band in range(bands):
        block = sigs[:, band * rows : (band + 1) * rows]
        with np.errstate(over="ignore"):
            keys = _mix((block * mult).sum(axis=1, dtype=_U64))
        order = np.argsort(keys, kind="stable")
        order = order[valid[order]]
        sk = keys[order]
        if len(sk) < 2:
            continue
        same = np.concatenate(([False], sk[1:] == sk[:-1]))
        run_start = np.maximum.accumulate(np.where(~same, np.arange(len(sk)), 0))
        members = np.flatnonzero(same)
        src.append(order[run_start[members]])  # the run's first (= earliest) document
        dst.append(order[members])
    if not src:
        return np.arange(n)
    a = np.concatenate(src)
    b = np.concatenate(dst)
    pairs = np.unique(a.astype(np.int64) * n + b)
    a, b = pairs // n, pairs % n
    if verify_threshold is not None and len(a):
        est = np.empty(len(a))
        for s in range(0, len(a), 65536):  # bounded temporaries
            est[s : s + 65536] = (sigs[a[s : s + 65536]] == sigs[b[s : s + 65536]]).mean(axis=1)
        keep = est >= verify_threshold
        a, b = a[keep], b[keep]
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n))
    return first[labels]


class NearDedup(GlobalStep):
    """Drop documents whose MinHash-estimated Jaccard similarity to an earlier one is above
    ``threshold`` (reason ``near_duplicate``, ``meta.duplicate_of`` = the kept one).

    Texts under ``min_chars`` characters are left to exact dedup (short texts share too few
    shingles for MinHash to mean much).
    """

    name = "near_dup"

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        ngram: int = 5,
        word_ngram: int = 5,
        min_chars: int = 30,
        verify: bool = True,
        seed: int = 1,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.ngram = ngram
        self.word_ngram = word_ngram
        self.min_chars = min_chars
        self.verify = verify
        self.hasher = MinHasher(num_perm, seed)
        self.bands, self.rows = _optimal_bands(threshold, num_perm)

    def signature(self, rec: dict[str, Any]) -> np.ndarray:
        return self.signatures([rec])[0]

    def signatures(self, recs: list[dict[str, Any]]) -> np.ndarray:
        return self.signatures_for_texts([record_text(r) for r in recs])

    def signatures_for_texts(self, texts: list[str]) -> np.ndarray:
        values, counts = flat_shingles(texts, self.ngram, self.word_ngram, self.min_chars)
        return self.hasher.signatures_flat(values, counts)

    def duplicate_index(self, sigs: np.ndarray) -> np.ndarray:
        """Index of the kept document each document duplicates (itself when it is kept)."""
        # Verification tolerates the estimate's noise (σ ≈ 0.035 at 128 perms and J=0.8) so
        # recall at the threshold is not halved; it still rejects band collisions far below.
        verify = self.threshold - 0.1 if self.verify else None
        return lsh_duplicates(sigs, self.bands, self.rows, verify)

    def select(self, items: list[tuple[int, str, Any]]) -> dict[int, tuple[str, str]]:
        if not items:
            return {}
        sigs = np.stack([np.asarray(sig, dtype=_U64) for _, _, sig in items])
        rep = self.duplicate_index(sigs)
        drops: dict[int, tuple[str, str]] = {}
        for pos in np.flatnonzero(rep != np.arange(len(items))):
            drops[items[pos][0]] = ("near_duplicate", items[int(rep[pos])][1])
        return drops

    def run(self, records, reject):  # type: ignore[no-untyped-def]
        buf = list(records)
        self.stats.seen += len(buf)
        sigs = self.signatures(buf) if buf else np.empty((0, self.hasher.num_perm), _U64)
        rep = self.duplicate_index(sigs) if buf else np.empty(0, dtype=np.int64)
        for i, rec in enumerate(buf):
            if rep[i] != i:
                rec.setdefault("meta", {})["duplicate_of"] = str(buf[int(rep[i])].get("id"))
                self.drop(rec, "near_duplicate", reject)
            else:
                self.stats.kept += 1
                yield rec


class NearDupSpec(StepSpec):
    """MinHash-LSH near-duplicate removal on character n-grams (word n-grams for non-CJK)."""

    step: Literal["near_dup"] = "near_dup"
    threshold: float = Field(default=0.8, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)
    ngram: int = Field(default=5, ge=1)  # characters for CJK text; see word_ngram for others
    word_ngram: int = Field(default=5, ge=1)
    min_chars: int = Field(default=30, ge=0)  # shorter texts are left to exact dedup
    verify: bool = True  # confirm candidate pairs with the estimated Jaccard

    def build(self) -> Step:
        return NearDedup(**self.model_dump(exclude={"step", "enabled"}))
