"""The OpenAI-compatible HTTP server: ``create_app(settings) -> FastAPI``.

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE stream), ``POST /v1/completions``,
``GET /v1/models``, ``POST /v1/embeddings``, ``GET /healthz``, ``GET /metrics``, and the admin
endpoints ``GET/POST /admin/models``, ``DELETE /admin/models/{name}``, ``POST /admin/reload``.

Every error is an OpenAI error body; malformed input is a 400, never a 500. Every answer says
who answered and what it cost (headers ``x-zimo-model``, ``x-zimo-cost``, ``x-zimo-escalated``
and a ``zimo`` field in the body; for streams, in the last chunk).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zimo.serve.backends.base import Backend
from zimo.serve.backends.factory import make_backend
from zimo.serve.config import ServeConfig, SubModel
from zimo.serve.errors import APIError, error_body
from zimo.serve.gateway import Upstream
from zimo.serve.keys import KeyStore
from zimo.serve.registry import ModelRegistry
from zimo.serve.routes import admin, chat, embeddings, feedback, models
from zimo.serve.routes.common import TooLarge, log_rejected, log_rejected_request
from zimo.serve.service import ServeState, make_redactor, open_request_log

log = logging.getLogger("zimo.serve")


# ---------------------------------------------------------------------------- body limit
class BodyLimit:
    """ASGI middleware: 413 for bodies over the limit, by header or by bytes actually sent."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await self._reject(send, scope)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except TooLarge:
            await self._reject(send, scope)

    async def _reject(self, send, scope=None):
        msg = f"Request body too large: the limit is {self.max_bytes} bytes."
        if scope is not None:
            app = scope.get("app")
            st = getattr(getattr(app, "state", None), "zimo", None)
            log_rejected(st, scope.get("path", ""), 413, msg)
        body = json.dumps(error_body(msg, code="request_too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------- the app
def create_app(
    settings: ServeConfig | None = None,
    *,
    projects: list[str | Path] = (),
    backend: Backend | None = None,
) -> FastAPI:
    """The FastAPI app of ``zimo serve``. Models load at startup (lifespan)."""
    settings = settings or ServeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = _build_state(settings, projects, backend)
        app.state.zimo = st
        if st.backend is not None:
            await asyncio.to_thread(st.backend.start)
            for name in st.local_names():
                log.info("model %s ready", name)
        if st.registry is not None:
            st.registry.start_watching()
        if projects:
            from zimo.route.live import install_cascades
            from zimo.serve.analytic import install_analytic
            from zimo.serve.auto import install_auto

            await asyncio.to_thread(install_analytic, st, list(projects))
            await asyncio.to_thread(install_auto, st, list(projects))
            # After the sub-models: a cascade's name (the project's) replaces its primary's.
            await asyncio.to_thread(install_cascades, st, list(projects))
        try:
            yield
        finally:
            await st.close()

    app = FastAPI(title="zimo serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )
    from zimo.serve.origin import LocalGuard

    app.add_middleware(
        LocalGuard,
        state_of=lambda scope: getattr(scope["app"].state, "zimo", None),
        bound=settings.host,
        allowed_origins=settings.cors_origins or [],
    )
    _errors(app)
    for r in (models.router, chat.router, embeddings.router, feedback.router, admin.router):
        app.include_router(r)
    from zimo.serve.analytic import router as analytic_router

    app.include_router(analytic_router)
    _document(app)
    return app


def _document(app: FastAPI) -> None:
    """/openapi.json with request bodies and error responses (handlers parse bodies by hand
    to answer OpenAI-shaped errors, so FastAPI alone would document neither)."""
    from fastapi.openapi.utils import get_openapi

    from zimo.serve.schemas import complete_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = complete_openapi(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _build_state(
    settings: ServeConfig, projects: list[str | Path], backend: Backend | None
) -> ServeState:
    be = backend if backend is not None else make_backend(settings.backend)
    registry = ModelRegistry(be, projects, watch_s=settings.watch_s)
    if settings.serve_base:
        base = settings.backend.base
        name = base if "/" not in base and not base.endswith(".gguf") else Path(base).stem
        registry.add(SubModel(name=name, adapter_dir=None, metadata={"task": "chat"}), "base")
    for sub in settings.models:
        registry.add(sub, "config")
    registry.refresh()
    keys = KeyStore(settings.keys_path())
    upstream = Upstream(settings.upstream) if settings.upstream else None
    rlog = open_request_log(settings.log_path()) if settings.log.enabled else None
    redactor = make_redactor() if settings.log.redact else None
    return ServeState(settings, be, registry, keys, upstream, request_log=rlog, redactor=redactor)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api(req: Request, exc: APIError):
        if not getattr(exc, "logged", False):
            log_rejected_request(req, exc.status, exc.message)
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(req: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        e = APIError(400, f"Invalid request: {loc} {err.get('msg')}".strip(), param=loc or None)
        log_rejected_request(req, e.status, e.message)
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        msg = {404: "Unknown path", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
        if exc.status_code in (404, 405):
            msg = f"{msg}: {_req.method} {_req.url.path}"
        return APIError(exc.status_code, msg, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _boom(_req: Request, exc: Exception):
        log.exception("unhandled error")
        return JSONResponse(
            error_body("The server had an error while processing your request.", "server_error"),
            status_code=500,
        )
