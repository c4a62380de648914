"""The optional engines (llama.cpp, vLLM): real runs when their package is installed, else a
skip that says why. The default engine is covered by test_serve_api.py."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from zimo.serve.backends.base import Job, SamplingParams
from zimo.serve.backends.factory import make_backend
from zimo.serve.config import BackendConfig, SubModel

NEEDS_LLAMA_CPP = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (optional extra: pip install 'zimo[llamacpp]')",
)


async def _run(backend, model, messages, **params):
    ids = backend.encode_chat(model, messages)
    job = backend.submit(Job(model, ids, SamplingParams(**params), stream=True))
    pieces = [d.text async for d in job.iter_deltas()]
    return await job.future, "".join(pieces)


@NEEDS_LLAMA_CPP
def test_llamacpp_backend_serves_gecko_gguf():
    be = make_backend(BackendConfig(kind="llamacpp", base="gecko", threads=1, n_ctx=512))
    be.start()
    try:
        be.add_model(SubModel(name="gecko"))
        msgs = [{"role": "user", "content": "What is 2+2?"}]
        res, streamed = asyncio.run(_run(be, "gecko", msgs, max_tokens=6, temperature=0))
        assert res.text and res.text == streamed and res.completion_tokens <= 6
        again, _ = asyncio.run(_run(be, "gecko", msgs, max_tokens=6, temperature=0))
        assert again.text == res.text  # greedy decoding is deterministic
    finally:
        be.close()


@NEEDS_LLAMA_CPP
@pytest.mark.slow
def test_llamacpp_label_scores_match_default_engine():
    """A label sub-model on the bare base: the same label as the default engine (which runs the
    dequantised weights of the same GGUF), probabilities within a few points."""
    cls = SubModel(name="cls", metadata={"task": "label", "labels": ["ham", "spam"]})
    sms = [{"role": "user", "content": "WINNER! Claim your free prize now, call 0900"}]
    out = {}
    for kind in ("llamacpp", "transformers"):
        be = make_backend(BackendConfig(kind=kind, base="gecko", threads=1, n_ctx=512))
        be.start()
        try:
            be.add_model(cls)
            ids = be.encode_chat("cls", sms)

            async def label(backend=be, ids=ids):
                job = backend.submit(Job("cls", ids, SamplingParams(), kind="label"))
                return await job.future

            out[kind] = (ids, asyncio.run(label()))
        finally:
            be.close()
    (ids_l, got), (ids_t, want) = out["llamacpp"], out["transformers"]
    assert ids_l == ids_t and got.text == want.text
    # llama.cpp multiplies Q4_1 weights with 8-bit-quantised activations; the default engine
    # runs the same weights dequantised in fp32, so probabilities agree to a few points only.
    assert got.label_probs["spam"] == pytest.approx(want.label_probs["spam"], abs=0.1)


@NEEDS_LLAMA_CPP
def test_llamacpp_label_prompts_reuse_the_cached_prefix():
    """A label request evaluates only the tokens after what the previous one shares with it,
    and scores as a fresh evaluation of its whole prompt does."""
    import numpy as np
    from llama_cpp import Llama

    from zimo.serve.backends.llamacpp import base_gguf, eval_after_cached_prefix, label_log_scores

    llm = Llama(model_path=str(base_gguf("gecko")), n_ctx=256, n_threads=1, verbose=False)
    a, b = [1, 520, 2317, 28, 260, 1035], [1, 520, 2317, 28, 3345, 429, 17]
    labels = [[3345], [1035, 30]]
    want = []
    for ids in (b, a):
        llm.reset()
        want.append(label_log_scores(llm, ids, labels, first_tokens_distinct=False))
    llm.reset()
    assert eval_after_cached_prefix(llm, a) == 0
    assert eval_after_cached_prefix(llm, b) == 4  # the shared [1, 520, 2317, 28]
    assert eval_after_cached_prefix(llm, b) == len(b) - 1  # the last token always runs
    got = [label_log_scores(llm, ids, labels, first_tokens_distinct=False) for ids in (b, a)]
    np.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vllm is not installed (optional, needs a CUDA GPU: pip install vllm)",
)
def test_vllm_backend_serves_base():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    be = make_backend(BackendConfig(kind="vllm", base="gecko", n_ctx=1024))
    be.start()
    try:
        be.add_model(SubModel(name="gecko"))
        res, _ = asyncio.run(
            _run(be, "gecko", [{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        )
        assert res.text and res.completion_tokens <= 4
    finally:
        be.close()
