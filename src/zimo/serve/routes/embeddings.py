"""``POST /v1/embeddings``: the embedded MiniLM, or the upstream for other models."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zimo.serve.errors import APIError, model_not_found
from zimo.serve.image import image_embeddings
from zimo.serve.responses import embedding_data
from zimo.serve.routes.common import begin
from zimo.serve.schemas import EmbeddingRequest
from zimo.serve.service import EMBEDDING_MODELS

log = logging.getLogger("zimo.serve")


router = APIRouter()


# ------------------------------------------------------------------ embeddings
@router.post("/v1/embeddings")
async def embeddings(request: Request):
    st, t0, key, raw, req = await begin(request, EmbeddingRequest)
    if (body := await image_embeddings(st, key, req, t0)) is not None:
        return JSONResponse(body, headers={"x-zimo-model": req.model, "x-zimo-cost": "0"})
    if req.model not in EMBEDDING_MODELS or not st.settings.embeddings:
        if st.upstream is not None and st.upstream.handles(req.model):
            if key is not None and not key.allows(req.model):
                st.check_model(req.model, key)
            data = await st.upstream.post("/embeddings", raw)
            return JSONResponse(data, headers={"x-zimo-model": req.model})
        raise model_not_found(req.model)
    if key is not None and not key.allows(req.model) and not key.allows(EMBEDDING_MODELS[0]):
        st.check_model(req.model, key)
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not texts or len(texts) > 2048:
        raise APIError(400, "input must hold 1 to 2048 texts", param="input")
    if any(not isinstance(t, str) for t in texts):
        raise APIError(400, "input must be a string or a list of strings", param="input")
    from zimo.embeddings import get_embedder

    emb = get_embedder()
    vecs, counts = await asyncio.to_thread(lambda: (emb.embed(texts), emb.token_counts(texts)))
    if req.dimensions is not None and req.dimensions != vecs.shape[1]:
        raise APIError(
            400, f"{EMBEDDING_MODELS[0]} has {vecs.shape[1]} dimensions", param="dimensions"
        )
    data = embedding_data(vecs, req.encoding_format)
    pt = int(np.sum(counts))
    latency = time.perf_counter() - t0
    st.metrics.observe("embeddings", req.model, 200, latency, prompt_tokens=pt)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": EMBEDDING_MODELS[0],
            "usage": {"prompt_tokens": pt, "total_tokens": pt},
        },  # fmt: skip
        headers={"x-zimo-model": EMBEDDING_MODELS[0], "x-zimo-cost": "0"},
    )
