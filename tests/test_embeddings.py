"""The embedded MiniLM: real weights, normalised vectors, LRU and disk caches."""

from __future__ import annotations

import numpy as np
import pytest

from zimo.embeddings import DIM, Embedder, embed, get_embedder
from zimo.errors import ZimoError

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is sitting on a rug.",
    "Quarterly revenue grew by twelve percent.",
    "贷款诈骗短信要求你先付手续费。",
]


@pytest.fixture(scope="module")
def vecs():
    return embed(TEXTS)


def test_shape_norm_and_meaning(vecs):
    assert vecs.shape == (4, DIM) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    # Paraphrases are closer than unrelated sentences: the model is real, not a hash.
    assert sims[0, 1] > 0.5 > sims[0, 2]


def test_order_batching_and_duplicates_do_not_change_vectors(vecs):
    emb = Embedder(cache_size=0)
    texts = [TEXTS[2], TEXTS[0], TEXTS[2], "x " * 400]  # a long one forces truncation
    out = emb.embed(texts, batch_size=1)
    assert np.allclose(out[0], vecs[2], atol=1e-5) and np.allclose(out[1], vecs[0], atol=1e-5)
    assert np.array_equal(out[0], out[2])
    assert emb.stats["computed"] == 3  # the duplicate is embedded once
    assert emb.token_counts(["x " * 400])[0] == emb.max_seq_length


def test_lru_then_disk_cache(tmp_path):
    db = tmp_path / "emb.sqlite"
    first = Embedder(cache_path=db)
    a = first.embed(TEXTS[:2])
    first.embed(TEXTS[:2])
    assert first.stats == {"computed": 2, "lru_hits": 2, "disk_hits": 0}
    second = Embedder(cache_path=db)  # a new process would start like this
    b = second.embed(TEXTS[:2])
    assert second.stats["computed"] == 0 and second.stats["disk_hits"] == 2
    assert np.array_equal(a, b)
    # A different truncation length is a different cache entry.
    third = Embedder(cache_path=db, max_seq_length=16)
    third.embed(TEXTS[:1])
    assert third.stats["computed"] == 1


def test_shared_embedder_and_bad_input():
    assert get_embedder() is get_embedder()
    assert embed([]).shape == (0, DIM)
    assert embed("one text").shape == (1, DIM)
    with pytest.raises(ZimoError, match="batch_size"):
        embed(TEXTS, batch_size=0)
    with pytest.raises(ZimoError, match="max_seq_length"):
        Embedder(max_seq_length=2)
