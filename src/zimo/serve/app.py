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
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zimo.serve.backends.base import Backend, Result, TokenLogprob, make_backend
from zimo.serve.config import ServeConfig, SubModel
from zimo.serve.errors import APIError, error_body, model_not_found
from zimo.serve.gateway import StreamTally, Upstream
from zimo.serve.keys import ApiKey, KeyStore
from zimo.serve.registry import ModelRegistry, load_submodel
from zimo.serve.schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_json,
    refuse_tools,
    validate,
)
from zimo.serve.service import (
    EMBEDDING_MODELS,
    Answer,
    ServeState,
    is_loopback,
    make_redactor,
    open_request_log,
)

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
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(send, scope)

    async def _reject(self, send, scope=None):
        msg = f"Request body too large: the limit is {self.max_bytes} bytes."
        if scope is not None:
            app = scope.get("app")
            st = getattr(getattr(app, "state", None), "zimo", None)
            _log_rejected(st, scope.get("path", ""), 413, msg)
        body = json.dumps(error_body(msg, code="request_too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------- helpers
def _state(request: Request) -> ServeState:
    return request.app.state.zimo


_LOGGED_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


def _auth(request: Request) -> ApiKey | None:
    """Authenticate, remembering the key so a later rejection is logged under it."""
    key = _state(request).authenticate(request.headers.get("authorization"))
    request.state.zimo_key = key
    return key


async def _body(request: Request) -> Any:
    value = parse_json(await request.body())
    if isinstance(value, dict) and isinstance(value.get("model"), str):
        request.state.zimo_model = value["model"][:256]
    return value


def _log_rejected(st: ServeState | None, path: str, status: int, message: str, *,
                  key: ApiKey | None = None, model: str | None = None,
                  t0: float | None = None) -> None:  # fmt: skip
    """Log and count a request refused before it reached a model (400/401/404/413…), so the
    request log and /metrics show every request, not only the ones that got an answer."""
    endpoint = _LOGGED_ENDPOINTS.get(path)
    if st is None or endpoint is None:
        return
    latency = time.perf_counter() - t0 if t0 is not None else 0.0
    # A metrics label only for names this server serves: names from refused requests are
    # the client's choice, and one series per made-up name would grow without bound.
    served = model is not None and (
        model in st.virtual
        or st.is_local(model)
        or bool(st.upstream and st.upstream.cfg.models and model in st.upstream.cfg.models)
    )
    st.metrics.observe(endpoint, model if served else "-", status, latency)
    from zimo.serve.logdb import new_id

    st.log_request(id=new_id(), key_id=key.id if key else None, endpoint=endpoint, model=model,
                   answered_by=None, escalated=False, route_score=None, messages=None,
                   prompt=None, params=None, response=None, prompt_tokens=None,
                   completion_tokens=None, latency_ms=latency * 1000, cost=None,
                   status=status, error=message[:500], stream=False)  # fmt: skip


def _log_rejected_request(request: Request, status: int, message: str) -> None:
    rs = request.state
    _log_rejected(getattr(request.app.state, "zimo", None), request.url.path, status, message,
                  key=getattr(rs, "zimo_key", None), model=getattr(rs, "zimo_model", None),
                  t0=getattr(rs, "zimo_t0", None))  # fmt: skip


def _headers(ans: Answer | None, model: str, escalated: bool = False) -> dict[str, str]:
    h = {"x-zimo-model": ans.answered_by if ans else model,
         "x-zimo-escalated": "true" if (ans.escalated if ans else escalated) else "false"}  # fmt: skip
    if ans is not None:
        h["x-zimo-cost"] = f"{ans.cost:.10f}"
        if ans.route and ans.route.get("tier"):
            h["x-zimo-tier"] = str(ans.route["tier"])
    return h


def _lp_entry(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode("utf-8")),
        "top_logprobs": [
            {"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))} for t, v in lp.top
        ],
    }


def _chat_logprobs(lps: list[TokenLogprob] | None) -> dict[str, Any] | None:
    return None if lps is None else {"content": [_lp_entry(x) for x in lps], "refusal": None}


def _completion_logprobs(lps: list[TokenLogprob] | None, offset0: int = 0):
    if lps is None:
        return None
    offsets, pos = [], offset0
    for x in lps:
        offsets.append(pos)
        pos += len(x.token)
    return {
        "tokens": [x.token for x in lps],
        "token_logprobs": [x.logprob for x in lps],
        "top_logprobs": [dict(x.top) for x in lps],
        "text_offset": offsets,
    }


def _usage(pt: int, ct: int) -> dict[str, int]:
    return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


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
    _routes(app)
    from zimo.serve.analytic import router as analytic_router

    app.include_router(analytic_router)
    from zimo.web import mount_ui  # the dashboard at /ui, on the same app and state

    mount_ui(app)
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
            _log_rejected_request(req, exc.status, exc.message)
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(req: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        e = APIError(400, f"Invalid request: {loc} {err.get('msg')}".strip(), param=loc or None)
        _log_rejected_request(req, e.status, e.message)
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


def _routes(app: FastAPI) -> None:  # noqa: C901 - one closure per endpoint
    @app.get("/healthz")
    async def healthz(request: Request):
        st = _state(request)
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

    @app.get("/metrics")
    async def metrics(request: Request):
        st = _state(request)
        if st.backend is not None:
            st.metrics.queue.set(st.backend.queue_depth())
            st.metrics.adapters.set(len(getattr(st.backend, "_loaded", {})))
        return Response(st.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request):
        st = _state(request)
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
                {"id": n, "object": "model", "created": created, "owned_by": _owner(st, n)}
                for n in names
            ],
        }

    @app.get("/v1/models/{model:path}")
    async def model_info(model: str, request: Request):
        st = _state(request)
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
            "owned_by": _owner(st, model),
        }

    # ------------------------------------------------------------------ chat
    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        st = _state(request)
        t0 = request.state.zimo_t0 = time.perf_counter()
        key = _auth(request)
        raw = await _body(request)
        req: ChatRequest = validate(ChatRequest, raw)
        if (req.n or 1) != 1:
            raise APIError(400, "Only n=1 is supported by this server.", param="n")
        if req.response_format and req.response_format.type == "json_schema":
            raise APIError(
                400,
                'response_format json_schema is not supported here; use {"type": "json_object"}',
                param="response_format",
            )
        where = st.check_model(req.model, key)
        if where != "upstream":
            refuse_tools(raw, req.model)
        ctx = _LogCtx(st, "chat", req.model, key, t0, messages=raw.get("messages"),
                      params=_params(raw), stream=req.stream)  # fmt: skip
        if where == "upstream":
            return await _forward(st, "/chat/completions", raw, ctx)
        if where == "virtual":
            ans = await _guard(ctx, st.virtual[req.model](req, st))
            return _chat_json(req, ans, ctx) if not req.stream else _stream_answer(req, ans, ctx)
        if req.stream:
            return await _chat_stream_local(st, req, ctx)
        ans = await _guard(ctx, st.chat_local(req.model, req))
        return _chat_json(req, ans, ctx)

    # ------------------------------------------------------------------ completions
    @app.post("/v1/completions")
    async def completions(request: Request):
        st = _state(request)
        t0 = request.state.zimo_t0 = time.perf_counter()
        key = _auth(request)
        raw = await _body(request)
        req: CompletionRequest = validate(CompletionRequest, raw)
        if (req.n or 1) != 1:
            raise APIError(400, "Only n=1 is supported by this server.", param="n")
        where = st.check_model(req.model, key)
        if where != "upstream":
            refuse_tools(raw, req.model)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        ctx = _LogCtx(st, "completions", req.model, key, t0, prompt="\n".join(prompts),
                      params=_params(raw), stream=req.stream)  # fmt: skip
        if where == "upstream":
            return await _forward(st, "/completions", raw, ctx)
        if where == "virtual":
            raise APIError(
                400, f"`{req.model}` answers chat requests only; use /v1/chat/completions"
            )
        if not prompts:
            raise APIError(400, "prompt must not be empty", param="prompt")
        if req.stream and len(prompts) != 1:
            raise APIError(400, "streaming takes one prompt", param="prompt")
        params = st.sampling(req, req.wanted_max_tokens())
        params.logprobs = req.logprobs is not None
        params.top_logprobs = int(req.logprobs or 0)
        assert st.backend is not None
        ids_list = [await st.encode_text(req.model, p) for p in prompts]
        for ids in ids_list:
            st.check_prompt(ids, params)
        if req.stream:
            job = st.submit(req.model, ids_list[0], params, stream=True)
            return _completion_stream(st, req, job, ctx)
        jobs = [st.submit(req.model, ids, params, stream=False) for ids in ids_list]
        results = await _guard(ctx, asyncio.gather(*(st.wait(j) for j in jobs)))
        ans = _merge(st, req.model, results)
        choices = []
        for i, (p, r) in enumerate(zip(prompts, results, strict=True)):
            text = (p + r.text) if req.echo else r.text
            choices.append(
                {
                    "index": i,
                    "text": text,
                    "logprobs": _completion_logprobs(r.logprobs, len(p) if req.echo else 0),
                    "finish_reason": r.finish_reason,
                }
            )
        body = {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": choices,
            "usage": _usage(ans.prompt_tokens, ans.completion_tokens),
            "zimo": ctx.zimo(ans),
        }
        ctx.done(ans, 200, "\n".join(r.text for r in results))
        return JSONResponse(body, headers=_headers(ans, req.model))

    # ------------------------------------------------------------------ embeddings
    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        st = _state(request)
        t0 = request.state.zimo_t0 = time.perf_counter()
        key = _auth(request)
        raw = await _body(request)
        req: EmbeddingRequest = validate(EmbeddingRequest, raw)
        from zimo.serve.image import image_embeddings

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
        data = []
        for i, v in enumerate(vecs):
            if req.encoding_format == "base64":
                val: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
            else:
                val = [float(x) for x in v]
            data.append({"object": "embedding", "index": i, "embedding": val})
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

    # ------------------------------------------------------------------ feedback
    @app.post("/v1/feedback")
    async def feedback(request: Request):
        """``{"request_id": "...", "feedback": -1|0|1}``: rate an answer (feeds distillation and
        router refits). Only the key that made a request may rate it."""
        st = _state(request)
        key = st.authenticate(request.headers.get("authorization"))
        raw = await _body(request)
        if not isinstance(raw, dict) or not isinstance(raw.get("request_id"), str):
            raise APIError(
                400, 'body must be {"request_id": str, "feedback": -1|0|1}', param="request_id"
            )
        fb = raw.get("feedback")
        if fb not in (-1, 0, 1) or isinstance(fb, bool):
            raise APIError(400, "feedback must be -1, 0 or 1", param="feedback")
        if st.request_log is None:
            raise APIError(404, "the request log is off on this server", code="log_disabled")
        owner = await asyncio.to_thread(_owner_of, st, raw["request_id"])
        if owner is _MISSING or (key is not None and owner != key.id):
            raise APIError(
                404, f"no request {raw['request_id']!r} from this key", param="request_id"
            )
        await asyncio.to_thread(st.request_log.set_feedback, raw["request_id"], fb)
        return {"request_id": raw["request_id"], "feedback": fb}

    # ------------------------------------------------------------------ admin
    def _admin(request: Request) -> None:
        st = _state(request)
        if st.auth_required():
            key = st.authenticate(request.headers.get("authorization"))
            if key is None or not key.admin:
                raise APIError(403, "admin endpoints need an admin key (zimo keys create --admin)")
        elif not is_loopback(request.client.host if request.client else None):
            raise APIError(403, "without API keys the admin endpoints answer localhost only")

    @app.get("/admin/models")
    async def admin_list(request: Request):
        _admin(request)
        st = _state(request)
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

    @app.post("/admin/models")
    async def admin_add(request: Request):
        """Body: ``{"path": "<trained folder>", "name": optional}`` or a SubModel entry."""
        _admin(request)
        st = _state(request)
        raw = await _body(request)
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

    @app.delete("/admin/models/{name:path}")
    async def admin_remove(name: str, request: Request):
        _admin(request)
        st = _state(request)
        assert st.registry is not None
        if not st.registry.remove(name):
            raise model_not_found(name)
        return {"name": name, "removed": True}

    @app.post("/admin/reload")
    async def admin_reload(request: Request):
        _admin(request)
        st = _state(request)
        assert st.registry is not None
        changed = await asyncio.to_thread(st.registry.refresh)
        if st.analytic is not None:
            changed += await asyncio.to_thread(st.analytic.refresh)
        return {"changed": changed, "models": st.registry.names()}


_MISSING = object()


def _owner_of(st: ServeState, request_id: str):
    """The key id that made a logged request (None without keys), or ``_MISSING``."""
    import sqlite3

    # A read-only connection of our own (RequestLog has no lookup by id yet; asked for).
    db = sqlite3.connect(f"file:{st.request_log.path}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT key_id FROM requests WHERE id = ?", (request_id,)).fetchone()
    finally:
        db.close()
    return _MISSING if row is None else row[0]


def _owner(st: ServeState, name: str) -> str:
    if st.analytic is not None and st.analytic.get(name) is not None:
        return "zimo"
    if name in st.virtual:
        return "zimo-router"
    if st.is_local(name):
        return "zimo"
    if name == EMBEDDING_MODELS[0]:
        return "zimo-embedded"
    return "upstream"


def _params(raw: dict[str, Any]) -> dict[str, Any]:
    keep = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
            "response_format", "logprobs", "top_logprobs", "repetition_penalty",
            "frequency_penalty", "presence_penalty")  # fmt: skip
    return {k: raw[k] for k in keep if k in raw}


def _merge(st: ServeState, model: str, results: list[Result]) -> Answer:
    """One :class:`Answer` (tokens, cost) for a multi-prompt completion request."""
    answers = [st.answer_from(model, r) for r in results]
    first = answers[0]
    first.prompt_tokens = sum(a.prompt_tokens for a in answers)
    first.completion_tokens = sum(a.completion_tokens for a in answers)
    first.cost = sum(a.cost for a in answers)
    first.compute_s = sum(a.compute_s or 0 for a in answers)
    return first


class _LogCtx:
    """Everything the request log and metrics need about one request."""

    def __init__(self, st: ServeState, endpoint: str, model: str, key: ApiKey | None, t0: float,
                 *, messages=None, prompt=None, params=None, stream=False):  # fmt: skip
        self.st, self.endpoint, self.model, self.key, self.t0 = st, endpoint, model, key, t0
        self.messages, self.prompt, self.params, self.stream = messages, prompt, params, stream
        self.logged = False
        from zimo.serve.logdb import new_id

        # Known before the answer, so the client can send feedback on it (POST /v1/feedback).
        self.request_id = new_id()

    def zimo(self, ans: Answer) -> dict[str, Any]:
        """The ``zimo`` field of a response: who answered, cost, timing, request id."""
        z = ans.zimo_field(time.perf_counter() - self.t0)
        z["request_id"] = self.request_id
        return z

    def done(self, ans: Answer | None, status: int, response: str | None, error: str | None = None):
        if self.logged:
            return
        self.logged = True
        latency = time.perf_counter() - self.t0
        answered = ans.answered_by if ans else None
        self.st.metrics.observe(
            self.endpoint, answered or self.model, status, latency,
            prompt_tokens=ans.prompt_tokens if ans else 0,
            completion_tokens=ans.completion_tokens if ans else 0,
            cost=ans.cost if ans else 0.0,
            compute_s=ans.compute_s if ans else None,
        )  # fmt: skip
        if ans is not None and ans.batch_size:
            self.st.metrics.batch.observe(ans.batch_size)
        route = (ans.route or {}) if ans else {}
        self.st.log_request(
            id=self.request_id,
            key_id=self.key.id if self.key else None,
            endpoint=self.endpoint,
            model=self.model,
            answered_by=answered,
            escalated=bool(ans and ans.escalated),
            route_score=route.get("score"),
            messages=self.messages if isinstance(self.messages, list) else None,
            prompt=self.prompt,
            params=self.params,
            response=response,
            prompt_tokens=ans.prompt_tokens if ans else None,
            completion_tokens=ans.completion_tokens if ans else None,
            latency_ms=latency * 1000,
            cost=ans.cost if ans else None,
            status=status,
            error=error,
            stream=self.stream,
            route=ans.route if ans else None,
        )


async def _guard(ctx: _LogCtx, awaitable):
    """Await an answer; errors are logged with their status before they reach the client."""
    try:
        return await awaitable
    except APIError as e:
        ctx.done(None, e.status, None, e.message)
        e.logged = True
        raise
    except asyncio.CancelledError:
        ctx.done(None, 499, None, "client closed the connection")
        raise


def _chat_json(req: ChatRequest, ans: Answer, ctx: _LogCtx) -> JSONResponse:
    if ans.raw is not None:  # an upstream body (via a virtual model): keep it, add ours
        body = dict(ans.raw)
    else:
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ans.text, "refusal": None},
                    "logprobs": _chat_logprobs(ans.logprobs) if req.logprobs else None,
                    "finish_reason": ans.finish_reason,
                }
            ],
            "usage": _usage(ans.prompt_tokens, ans.completion_tokens),
            "system_fingerprint": "zimo",
        }
    body["zimo"] = ctx.zimo(ans)
    ctx.done(ans, 200, ans.text)
    return JSONResponse(body, headers=_headers(ans, req.model))


def _chunk(cid: str, created: int, model: str, delta: dict, finish=None, logprobs=None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "zimo",
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }


def _stream_headers(model: str) -> dict[str, str]:
    return {"x-zimo-model": model, "x-zimo-escalated": "false", "cache-control": "no-cache",
            "x-accel-buffering": "no"}  # fmt: skip


async def _chat_stream_local(st: ServeState, req: ChatRequest, ctx: _LogCtx) -> StreamingResponse:
    assert st.backend is not None
    params = st.sampling(req, req.wanted_max_tokens())
    params.logprobs = bool(req.logprobs)
    params.top_logprobs = int(req.top_logprobs or 0)
    params.json_mode = bool(req.response_format and req.response_format.type == "json_object")
    msgs = [{"role": m.role, "content": m.text()} for m in req.messages]
    try:
        ids = await st.encode_chat(req.model, msgs)
        st.check_prompt(ids, params)
        job = st.submit(req.model, ids, params, stream=True)
    except APIError as e:
        ctx.done(None, e.status, None, e.message)
        e.logged = True
        raise
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def delta(d) -> dict:
        lps = _chat_logprobs(d.logprobs) if req.logprobs and d.logprobs else None
        return _chunk(cid, created, req.model, {"content": d.text}, logprobs=lps)

    head = _chunk(cid, created, req.model, {"role": "assistant", "content": ""})
    events = _relay(
        st, req.model, job, ctx, head=[head], delta=delta,
        tail=lambda ans: _chat_tail(cid, created, req, ans, ctx),
    )  # fmt: skip
    return StreamingResponse(
        events, media_type="text/event-stream", headers=_stream_headers(req.model)
    )


def _chat_tail(cid: str, created: int, req: ChatRequest, ans: Answer, ctx: _LogCtx) -> list[dict]:
    """The closing chunks of a chat stream: finish reason + Zimo's routing info, then usage."""
    last = _chunk(cid, created, req.model, {}, finish=ans.finish_reason)
    last["zimo"] = ctx.zimo(ans)
    out = [last]
    if req.stream_options and req.stream_options.include_usage:
        u = _chunk(cid, created, req.model, {})
        u["choices"], u["usage"] = [], _usage(ans.prompt_tokens, ans.completion_tokens)
        out.append(u)
    return out


async def _relay(
    st: ServeState,
    model: str,
    job,
    ctx: _LogCtx,
    *,
    head: list[dict],
    delta: Callable[[Any], dict],
    tail: Callable[[Answer], list[dict]],
) -> AsyncIterator[bytes]:
    """A backend job as server-sent events: ``head``, one chunk per delta, ``tail`` and
    ``[DONE]``; a failure becomes an error event; a client that goes away cancels the job.
    Every outcome is logged once."""
    parts: list[str] = []
    finished = False
    try:
        for h in head:
            yield _sse(h)
        async for d in job.iter_deltas():
            parts.append(d.text)
            yield _sse(delta(d))
        try:
            res = job.future.result()
        except Exception as e:
            status = getattr(e, "status", 500)
            msg = getattr(e, "message", "the model failed")
            ctx.done(None, status, "".join(parts), msg)
            yield _sse(
                error_body(msg, "server_error" if status >= 500 else "invalid_request_error")
            )
            finished = True
            return
        ans = st.answer_from(model, res)
        for t in tail(ans):
            yield _sse(t)
        yield b"data: [DONE]\n\n"
        finished = True
        ctx.done(ans, 200, "".join(parts))
    finally:
        if not finished:
            job.cancel()
            ctx.done(None, 499, "".join(parts), "client closed the stream")


def _stream_answer(req: ChatRequest, ans: Answer, ctx: _LogCtx) -> StreamingResponse:
    """A finished answer (e.g. from a virtual model) sent as a one-chunk stream."""

    async def events() -> AsyncIterator[bytes]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        yield _sse(_chunk(cid, created, req.model, {"role": "assistant", "content": ans.text}))
        for t in _chat_tail(cid, created, req, ans, ctx):
            yield _sse(t)
        yield b"data: [DONE]\n\n"
        ctx.done(ans, 200, ans.text)

    h = _stream_headers(ans.answered_by)
    h["x-zimo-escalated"] = "true" if ans.escalated else "false"
    h["x-zimo-cost"] = f"{ans.cost:.10f}"
    return StreamingResponse(events(), media_type="text/event-stream", headers=h)


def _completion_stream(st: ServeState, req: CompletionRequest, job, ctx: _LogCtx):
    cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(text: str, finish=None, lps=None) -> dict:
        return {"id": cid, "object": "text_completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "text": text, "logprobs": lps, "finish_reason": finish}]}  # fmt: skip

    def tail(ans: Answer) -> list[dict]:
        last = chunk("", finish=ans.finish_reason)
        last["zimo"] = ctx.zimo(ans)
        return [last]

    events = _relay(
        st, req.model, job, ctx, head=[],
        delta=lambda d: chunk(d.text, lps=_completion_logprobs(d.logprobs)), tail=tail,
    )  # fmt: skip
    return StreamingResponse(
        events, media_type="text/event-stream", headers=_stream_headers(req.model)
    )


async def _forward(st: ServeState, path: str, raw: dict[str, Any], ctx: _LogCtx):
    """Gateway mode: pass the request to the upstream model (JSON or stream)."""
    from zimo.serve.cost import upstream_cost

    assert st.upstream is not None
    model = str(raw.get("model"))
    price = st.upstream.cfg.default_price
    if not raw.get("stream"):
        data = await _guard(ctx, st.upstream.post(path, raw))
        usage = data.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        choice = (data.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        ans = Answer(text, choice.get("finish_reason") or "stop", pt, ct, model,
                     cost=upstream_cost(st.settings.cost, price, model, pt, ct))  # fmt: skip
        data["zimo"] = ctx.zimo(ans)
        ctx.done(ans, 200, text)
        return JSONResponse(data, headers=_headers(ans, model))
    resp, wants_usage = await _guard(ctx, st.upstream.open_stream(path, raw))
    tally = StreamTally()

    async def events() -> AsyncIterator[bytes]:
        ok = False
        try:
            async for b in st.upstream.relay(resp, wants_usage, tally):
                yield b
            ok = True
        finally:
            ans = Answer("".join(tally.text), tally.finish_reason or "stop", tally.prompt_tokens,
                         tally.completion_tokens, model,
                         cost=upstream_cost(st.settings.cost, price, model, tally.prompt_tokens,
                                            tally.completion_tokens))  # fmt: skip
            if ok:
                ctx.done(ans, 200, ans.text)
            else:
                ctx.done(ans, 499, ans.text, "stream interrupted")

    return StreamingResponse(
        events(), media_type="text/event-stream", headers=_stream_headers(model)
    )
