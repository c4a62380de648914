"""The router's cost: cheap imports, embeddings shared across truncations, a fast decide()."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from route_fixtures import fit_small_router
from zimo.embeddings import Embedder

HEAVY = ("sklearn", "torch", "sentence_transformers", "transformers", "scipy")


def _imported_modules(code: str) -> set[str]:
    """Top-level modules a fresh interpreter imports to run ``code`` (from -X importtime)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    mods = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            mods.add(name.split(".")[0])
    assert "zimo" in mods, out.stderr[-2000:]  # the parse worked
    return mods


def test_cli_plugin_and_package_import_no_heavy_library():
    mods = _imported_modules("import zimo.route.cli, zimo.route, zimo.route.scorers")
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_lazy_package_names_resolve():
    import zimo.route as route

    assert route.Router.__name__ == "Router"
    assert callable(route.fit_router) and callable(route.calibrate_cascade)
    assert "Router" in dir(route)
    with pytest.raises(AttributeError):
        route.NoSuchName  # noqa: B018


SHORT = "Which organelle makes most of the ATP in a eukaryotic cell?"
LONG = " ".join(f"Statement {i}: the enzyme binds its substrate." for i in range(40))


def test_untruncated_texts_share_cache_across_lengths(tmp_path):
    db = tmp_path / "e.sqlite"
    full = Embedder(cache_path=db, max_seq_length=256)
    ref = full.embed([SHORT, LONG])
    short = Embedder(cache_path=db, max_seq_length=32, share_untruncated=True)
    got = short.embed([SHORT, LONG])
    # SHORT fits in 32 tokens: its 256-token vector is the same one, served from disk;
    # LONG is cut at 32 tokens, a different vector that must be computed.
    assert short.stats["disk_hits"] == 1 and short.stats["computed"] == 1
    assert np.array_equal(got[0], ref[0])
    assert float(got[1] @ ref[1]) < 0.999
    # Without sharing (the default) every truncation length keeps its own entries.
    plain = Embedder(cache_path=db, max_seq_length=32)
    plain.embed([SHORT])
    assert plain.stats["computed"] == 1


def test_bf16_embeddings_match_float32():
    texts = [SHORT, LONG, "Compute 17 * 23 and give the answer mod 7."]
    a = Embedder(cache_size=0, max_seq_length=128).embed(texts)
    b = Embedder(cache_size=0, max_seq_length=128, dtype="bfloat16").embed(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() > 0.995, cos
    with pytest.raises(Exception, match="dtype"):
        Embedder(dtype="float8")


def _ensemble_router(tmp_path, embedder: str):
    """The default ensemble router, fitted on a few real MMLU outcomes with ``embedder``."""
    return fit_small_router(tmp_path, {"kind": "ensemble", "folds": 3, "embedder": embedder})[1]


# A ~100-token prompt; "variant i" makes each one unseen.
_BODY = " ".join(["the mitochondrion produces ATP by oxidative phosphorylation"] * 12)


def _decide_times(router, clock) -> list[float]:
    """``clock`` seconds of ``decide()`` on 8 unseen ~100-token prompts."""
    times = []
    for i in range(8):
        c = clock()
        tier, score = router.decide(f"{_BODY} variant {i}?")
        times.append(clock() - c)
        assert tier in ("weak", "strong") and 0 <= score <= 1
    return times


def _assert_repeat_is_cached(router) -> None:
    t = time.perf_counter()
    router.decide(f"{_BODY} variant 0?")  # repeated: answered from the LRU cache
    assert time.perf_counter() - t < 0.1


def test_decide_on_a_100_token_prompt_is_cheap(tmp_path):
    router = _ensemble_router(tmp_path, "minilm")
    router.decide("warm up")
    from zimo.embeddings import get_embedder

    emb = get_embedder(
        max_seq_length=router.config.router.max_seq_length,
        cache_path=tmp_path / "e.sqlite",
        dtype=router.config.router.embed_dtype,
        share_untruncated=True,
    )
    model = emb._model
    cpu = _decide_times(router, time.thread_time)
    assert emb._model is model  # no per-call model rebuild
    assert emb.stats["computed"] >= 8  # unseen prompts were really embedded
    # CPU time, not wall time: it does not grow with the other jobs on a shared machine.
    # About 25-40 ms on a 2-core EPYC (bf16 / fp32); 250 ms flags a regression (no truncation,
    # a rebuild per call), not a slow CI machine.
    assert np.median(cpu) < 0.25, cpu
    _assert_repeat_is_cached(router)


def test_auto_embedder_follows_the_cpu(monkeypatch):
    from zimo.route.lm_features import AUTO_LM, resolve_embedder

    monkeypatch.setenv("ZIMO_BF16", "1")
    assert resolve_embedder("auto") == AUTO_LM
    monkeypatch.setenv("ZIMO_BF16", "0")  # no bf16 hardware: the LM pass would miss 50 ms
    assert resolve_embedder("auto") == "minilm"
    assert resolve_embedder("gecko@7") == "gecko@7"


def test_decide_on_the_lm_embedder_is_cheap(tmp_path):
    """Where the CPU has bf16 the default router reads gecko's first 12 layers instead of
    MiniLM: ~49 ms wall per 100-token prompt on a 2-core EPYC (benchmarks/results/route_mmlu.md)."""
    from zimo.route.lm_features import AUTO_LM

    router = _ensemble_router(tmp_path, AUTO_LM)
    assert router.meta["embedder"] == AUTO_LM and router.embedder is not None
    router.decide("warm up")
    wall = _decide_times(router, time.perf_counter)
    # Wall time: the LM pass runs on all cores. 0.5 s flags a regression (the LM head or all
    # 30 layers run, a model load per call), not a busy CI machine or one without bf16.
    assert np.median(wall) < 0.5, wall
    _assert_repeat_is_cached(router)
