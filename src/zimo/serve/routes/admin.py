"""Admin endpoints: ``GET/POST /admin/models``, ``DELETE /admin/models/{name}``,
``POST /admin/reload`` (admin keys only; loopback without keys)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request

from zimo.serve.config import SubModel
from zimo.serve.errors import APIError, model_not_found
from zimo.serve.registry import load_submodel
from zimo.serve.routes.common import read_body, state_of
from zimo.serve.schemas import validate
from zimo.serve.service import is_loopback

log = logging.getLogger("zimo.serve")


router = APIRouter()


# ------------------------------------------------------------------ admin
def _admin(request: Request) -> None:
    st = state_of(request)
    if st.auth_required():
        key = st.authenticate(request.headers.get("authorization"))
        if key is None or not key.admin:
            raise APIError(403, "admin endpoints need an admin key (zimo keys create --admin)")
    elif not is_loopback(request.client.host if request.client else None):
        raise APIError(403, "without API keys the admin endpoints answer localhost only")


@router.get("/admin/models")
async def admin_list(request: Request):
    _admin(request)
    st = state_of(request)
    assert st.registry is not None and st.backend is not None
    return {
        "models": [
            {
                "name": n,
                "source": st.registry.sources.get(n),
                "adapter_dir": st.registry.get(n).adapter_dir,
                "task": st.registry.get(n).task,
            }  # fmt: skip
            for n in st.registry.names()
        ],
        "backend": st.backend.stats(),
    }


@router.post("/admin/models")
async def admin_add(request: Request):
    """Body: ``{"path": "<trained folder>", "name": optional}`` or a SubModel entry."""
    _admin(request)
    st = state_of(request)
    raw = await read_body(request)
    if not isinstance(raw, dict):
        raise APIError(400, "body must be a JSON object")
    try:
        if "path" in raw:
            sub = load_submodel(raw["path"], raw.get("name"))
        else:
            sub = validate(SubModel, raw)
        assert st.registry is not None
        changed = st.registry.add(sub, "admin")
    except (ValueError, TypeError, OSError) as e:
        raise APIError(400, str(e)) from None
    except Exception as e:
        status = getattr(e, "status", 400)
        raise APIError(status, getattr(e, "message", str(e))) from None
    return {"name": sub.name, "changed": changed, "task": sub.task}


@router.delete("/admin/models/{name:path}")
async def admin_remove(name: str, request: Request):
    _admin(request)
    st = state_of(request)
    assert st.registry is not None
    if not st.registry.remove(name):
        raise model_not_found(name)
    return {"name": name, "removed": True}


@router.post("/admin/reload")
async def admin_reload(request: Request):
    _admin(request)
    st = state_of(request)
    assert st.registry is not None
    changed = await asyncio.to_thread(st.registry.refresh)
    if st.analytic is not None:
        changed += await asyncio.to_thread(st.analytic.refresh)
    return {"changed": changed, "models": st.registry.names()}
