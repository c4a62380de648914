"""What every endpoint shares: the gateway state, the caller's key, the body (size-limited,
parsed to an OpenAI error when malformed), the request log entry of this call."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar

from fastapi import Request

from zimo.serve.backends.base import Result
from zimo.serve.errors import APIError
from zimo.serve.keys import ApiKey, request_key
from zimo.serve.schemas import parse_json, validate
from zimo.serve.service import EMBEDDING_MODELS, Answer, ServeState

log = logging.getLogger("zimo.serve")
T = TypeVar("T")

_LOGGED_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


class TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------- helpers
def state_of(request: Request) -> ServeState:
    return request.app.state.zimo


def authenticate(request: Request) -> ApiKey | None:
    """Authenticate, remembering the key so a later rejection is logged under it."""
    key = state_of(request).authenticate(request.headers.get("authorization"))
    request.state.zimo_key = key
    request_key.set(key)
    return key


async def read_body(request: Request) -> Any:
    value = parse_json(await request.body())
    if isinstance(value, dict) and isinstance(value.get("model"), str):
        request.state.zimo_model = value["model"][:256]
    return value


def log_rejected(st: ServeState | None, path: str, status: int, message: str, *,
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
    from zimo.logs.requests import new_id

    st.log_request(id=new_id(), key_id=key.id if key else None, endpoint=endpoint, model=model,
                   answered_by=None, escalated=False, route_score=None, messages=None,
                   prompt=None, params=None, response=None, prompt_tokens=None,
                   completion_tokens=None, latency_ms=latency * 1000, cost=None,
                   status=status, error=message[:500], stream=False)  # fmt: skip


def log_rejected_request(request: Request, status: int, message: str) -> None:
    rs = request.state
    log_rejected(getattr(request.app.state, "zimo", None), request.url.path, status, message,
                  key=getattr(rs, "zimo_key", None), model=getattr(rs, "zimo_model", None),
                  t0=getattr(rs, "zimo_t0", None))  # fmt: skip


def owner_of_model(st: ServeState, name: str) -> str:
    if st.analytic is not None and st.analytic.get(name) is not None:
        return "zimo"
    if name in st.virtual:
        return "zimo-router"
    if st.is_local(name):
        return "zimo"
    if name == EMBEDDING_MODELS[0]:
        return "zimo-embedded"
    return "upstream"


def sampling_params(raw: dict[str, Any]) -> dict[str, Any]:
    keep = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
            "response_format", "logprobs", "top_logprobs", "repetition_penalty",
            "frequency_penalty", "presence_penalty")  # fmt: skip
    return {k: raw[k] for k in keep if k in raw}


def merge_results(st: ServeState, model: str, results: list[Result]) -> Answer:
    """One :class:`Answer` (tokens, cost) for a multi-prompt completion request."""
    answers = [st.answer_from(model, r) for r in results]
    first = answers[0]
    first.prompt_tokens = sum(a.prompt_tokens for a in answers)
    first.completion_tokens = sum(a.completion_tokens for a in answers)
    first.cost = sum(a.cost for a in answers)
    first.compute_s = sum(a.compute_s or 0 for a in answers)
    return first


class LogCtx:
    """Everything the request log and metrics need about one request."""

    def __init__(self, st: ServeState, endpoint: str, model: str, key: ApiKey | None, t0: float,
                 *, messages=None, prompt=None, params=None, stream=False):  # fmt: skip
        self.st, self.endpoint, self.model, self.key, self.t0 = st, endpoint, model, key, t0
        self.messages, self.prompt, self.params, self.stream = messages, prompt, params, stream
        self.logged = False
        from zimo.logs.requests import new_id

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


async def guarded(ctx: LogCtx, awaitable):
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


async def begin(
    request: Request, model: type[T]
) -> tuple[ServeState, float, ApiKey | None, Any, T]:
    """The start of every API call: the state, the clock, the caller's key, the raw body and
    the body validated as ``model`` (each step answers its own OpenAI-shaped error)."""
    st = state_of(request)
    t0 = request.state.zimo_t0 = time.perf_counter()
    key = authenticate(request)
    raw = await read_body(request)
    return st, t0, key, raw, validate(model, raw)
