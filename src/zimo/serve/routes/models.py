"""``GET /healthz``, ``GET /metrics``, ``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from zimo.serve.errors import model_not_found
from zimo.serve.routes.common import owner_of_model, state_of
from zimo.serve.service import EMBEDDING_MODELS

log = logging.getLogger("zimo.serve")


router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request):
    st = state_of(request)
    be = st.backend
    return {
        "status": "ok",
        "uptime_s": round(time.time() - st.started, 1),
        "backend": be.kind if be else None,
        "models": st.local_names(),
        "queue": be.queue_depth() if be else 0,
        "auth": st.auth_required(),
        "upstream": bool(st.upstream),
    }


@router.get("/metrics")
async def metrics(request: Request):
    st = state_of(request)
    if st.backend is not None:
        st.metrics.queue.set(st.backend.queue_depth())
        st.metrics.adapters.set(len(getattr(st.backend, "_loaded", {})))
    return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/models")
async def models(request: Request):
    st = state_of(request)
    key = st.authenticate(request.headers.get("authorization"))
    names = list(st.virtual) + st.local_names()
    if st.settings.embeddings:
        names.append(EMBEDDING_MODELS[0])
    if st.upstream is not None and st.upstream.cfg.models:
        names += [m for m in st.upstream.cfg.models if m not in names]
    if key is not None:  # a key sees only the models it may use
        names = [n for n in names if key.allows(n)]
    created = int(st.started)
    return {
        "object": "list",
        "data": [
            {"id": n, "object": "model", "created": created, "owned_by": owner_of_model(st, n)}
            for n in names
        ],
    }


@router.get("/v1/models/{model:path}")
async def model_info(model: str, request: Request):
    st = state_of(request)
    key = st.authenticate(request.headers.get("authorization"))
    known = set(st.virtual) | set(st.local_names()) | {EMBEDDING_MODELS[0]}
    if model not in known and not (
        st.upstream and st.upstream.cfg.models and model in st.upstream.cfg.models
    ):
        raise model_not_found(model)
    if key is not None and not key.allows(model):  # same answer as for a missing model
        raise model_not_found(model)
    return {
        "id": model,
        "object": "model",
        "created": int(st.started),
        "owned_by": owner_of_model(st, model),
    }
