"""The server's state and its non-HTTP operations: answer locally, forward, log, price.

``ServeState`` is what the routing layer (``model: "auto"``, issue 9) builds on: a virtual model
is an async handler ``(ChatRequest, ServeState) -> Answer`` registered with
:meth:`ServeState.add_virtual_model`; it may call :meth:`chat_local` and :meth:`chat_upstream`
(for cascades: answer cheaply, check ``answer.label_probs`` / ``answer.logprobs``, escalate)
and returns an :class:`Answer` with ``escalated`` and ``route`` set. The HTTP layer logs,
prices, meters and formats it like any other answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zimo.serve.budget as budget
from zimo.serve.backends.base import Backend, BackendError, Job, Result, SamplingParams
from zimo.serve.config import ServeConfig
from zimo.serve.cost import local_cost, upstream_cost
from zimo.serve.errors import APIError, model_not_found
from zimo.serve.gateway import Upstream
from zimo.serve.keys import ApiKey, KeyStore
from zimo.serve.metrics import Metrics
from zimo.serve.ratelimit import RateLimiter
from zimo.serve.registry import ModelRegistry
from zimo.serve.schemas import ChatRequest

log = logging.getLogger("zimo.serve")

EMBEDDING_MODELS = ("all-MiniLM-L6-v2", "all-minilm-l6-v2", "minilm")


def is_loopback(host: str | None) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class Answer:
    """One answered request, whoever answered it."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    answered_by: str
    cost: float = 0.0
    escalated: bool = False
    route: dict[str, Any] | None = None  # router/cascade details (tier, score…)
    logprobs: list | None = None  # list[TokenLogprob] for local answers
    label_probs: dict[str, float] | None = None
    compute_s: float | None = None
    queue_s: float | None = None
    batch_size: int | None = None
    raw: dict[str, Any] | None = None  # an upstream body, passed through as is

    def zimo_field(self, latency_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.answered_by,
            "cost_usd": round(self.cost, 10),
            "escalated": self.escalated,
            "latency_s": round(latency_s, 4),
        }
        if self.compute_s is not None:
            out["compute_s"] = round(self.compute_s, 4)
            out["queue_s"] = round(self.queue_s or 0.0, 4)
            out["batch_size"] = self.batch_size
        if self.label_probs is not None:
            out["label_probs"] = self.label_probs
        if self.route is not None:
            out["route"] = {k: v for k, v in self.route.items() if k != "cascade"}
            if "cascade" in self.route:  # which tiers were tried, and why each answered or not
                out["cascade"] = self.route["cascade"]
        return out


VirtualHandler = Callable[[ChatRequest, "ServeState"], Awaitable[Answer]]


@dataclass
class ServeState:
    settings: ServeConfig
    backend: Backend | None
    registry: ModelRegistry | None
    keys: KeyStore | None
    upstream: Upstream | None
    metrics: Metrics = field(default_factory=Metrics)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    request_log: Any = None  # zimo.logs.requests.RequestLog
    redactor: Callable[[str], str] | None = None
    virtual: dict[str, VirtualHandler] = field(default_factory=dict)
    analytic: Any = None  # zimo.serve.analytic.AnalyticModels: classical and table sub-models
    started: float = field(default_factory=time.time)
    _touched: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ models
    def add_virtual_model(self, name: str, handler: VirtualHandler) -> None:
        """Serve ``name`` (e.g. ``auto``) through ``handler`` (routing, cascades)."""
        self.virtual[name] = handler

    def is_local(self, model: str) -> bool:
        return self.backend is not None and self.backend.has_model(model)

    def local_names(self) -> list[str]:
        return self.registry.names() if self.registry else []

    def check_model(self, model: str, key: ApiKey | None) -> str:
        """Where ``model`` is answered: virtual | local | upstream (404 / 403 otherwise)."""
        if model in self.virtual:
            where = "virtual"
        elif self.is_local(model):
            where = "local"
        elif self.upstream is not None and self.upstream.handles(model):
            where = "upstream"
        else:
            raise model_not_found(model)
        if key is not None and not key.allows(model):
            raise APIError(
                403,
                f"API key {key.id} is not allowed to use model `{model}`",
                code="model_not_allowed",
                param="model",
            )
        return where

    _keys_on: bool = False

    def __post_init__(self) -> None:
        # Decided at start: a server reachable from other machines always requires keys
        # (with none active it refuses every request), so revoking the last key can never
        # open it.
        if self.settings.require_keys is None and not is_loopback(self.settings.host):
            self._keys_on = True

    # ------------------------------------------------------------------ auth
    def auth_required(self) -> bool:
        """Whether requests need a key. Once on, it stays on for the life of the server: a
        key revoked (even the last one) closes access, it never opens it."""
        if self.settings.require_keys is not None:
            return self.settings.require_keys
        if not self._keys_on and self.keys is not None and self.keys.count_active() > 0:
            self._keys_on = True
        return self._keys_on

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        if not self.auth_required():
            return None
        if self.keys is None:
            raise APIError(401, "this server requires API keys but has no key store")
        token = ""
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        if not token:
            raise APIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer zk-...' "
                "(create one with `zimo keys create`).",
                code="missing_api_key",
            )
        key, why = self.keys.verify(token)
        if key is None:
            if why == "revoked":
                raise APIError(401, "This API key has been revoked.", code="revoked_api_key")
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
        now = time.monotonic()
        if now - self._touched.get(key.id, -1e9) > 60:  # last-use bookkeeping, once a minute
            self._touched[key.id] = now
            self.keys.touch(key.id)
        wait = self.limiter.check(
            key.id, key.rate_per_minute or self.settings.limits.default_rate_per_minute
        )
        if wait > 0:
            raise APIError(
                429,
                f"Rate limit reached for key {key.id}; retry in {wait:.1f}s.",
                code="rate_limit_exceeded",
                headers={"Retry-After": RateLimiter.retry_after(wait)},
            )
        return key

    # ------------------------------------------------------------------ local answers
    def sampling(self, req: Any, max_tokens: int | None) -> SamplingParams:
        lim = self.settings.limits
        if max_tokens is not None and max_tokens > lim.max_new_tokens:
            raise APIError(
                400,
                f"max_tokens is too large: {max_tokens}. This server allows at most "
                f"{lim.max_new_tokens} new tokens per request.",
                param="max_tokens",
                code="invalid_value",
            )
        return SamplingParams(
            max_tokens=max_tokens or lim.default_max_tokens,
            temperature=1.0 if req.temperature is None else float(req.temperature),
            top_p=1.0 if req.top_p is None else float(req.top_p),
            stop=req.stop_list(),
            seed=req.seed,
            ignore_eos=bool(req.ignore_eos),
            repetition_penalty=float(req.repetition_penalty or 1.0),
            frequency_penalty=float(req.frequency_penalty or 0.0),
            presence_penalty=float(req.presence_penalty or 0.0),
        )

    async def encode_chat(self, model: str, messages: list[dict[str, str]]) -> list[int]:
        """Prompt token ids; a chat template that rejects the messages is a 400, not a 500."""
        assert self.backend is not None
        try:
            return await asyncio.to_thread(self.backend.encode_chat, model, messages)
        except Exception as e:  # jinja TemplateError (e.g. roles must alternate), bad text
            raise APIError(
                400,
                f"these messages cannot be formatted for model `{model}`: "
                f"{type(e).__name__}: {str(e)[:200]}",
                param="messages",
            ) from None

    async def encode_text(self, model: str, text: str) -> list[int]:
        assert self.backend is not None
        try:
            return await asyncio.to_thread(self.backend.encode_text, model, text)
        except Exception as e:
            raise APIError(
                400, f"cannot tokenize the prompt: {type(e).__name__}", param="prompt"
            ) from None

    def check_prompt(self, ids: list[int], params: SamplingParams) -> None:
        lim = self.settings.limits
        if not ids:
            raise APIError(400, "The prompt is empty.", param="prompt", code="empty_prompt")
        if len(ids) > lim.max_prompt_tokens:
            raise APIError(
                400,
                f"This model's maximum context length is {lim.max_prompt_tokens} tokens. "
                f"However, your messages resulted in {len(ids)} tokens. "
                "Please reduce the length of the messages.",
                param="messages",
                code="context_length_exceeded",
            )

    def submit(self, model: str, ids: list[int], params: SamplingParams, *, stream: bool) -> Job:
        assert self.backend is not None
        sub = self.backend.models[model]
        kind = "label" if sub.task == "label" else "generate"
        job = Job(model, ids, params, kind=kind, labels=sub.labels, stream=stream)
        try:
            self.backend.submit(job, max_queue=self.settings.limits.max_queue)
        except BackendError as e:
            raise APIError(e.status, e.message, code=e.code, headers={"Retry-After": "1"}) from None
        self.metrics.queue.set(self.backend.queue_depth())
        return job

    async def wait(self, job: Job) -> Result:
        try:
            return await asyncio.wait_for(
                asyncio.shield(job.future), self.settings.limits.request_timeout_s
            )
        except asyncio.TimeoutError:
            job.cancel()
            raise APIError(
                504,
                f"the model did not answer within {self.settings.limits.request_timeout_s:.0f}s",
                code="timeout",
            ) from None
        except BackendError as e:
            raise APIError(e.status, e.message, code=e.code) from None

    def answer_from(self, model: str, res: Result) -> Answer:
        cost = local_cost(
            self.settings.cost, model, res.compute_s, res.prompt_tokens, res.completion_tokens
        )
        return Answer(
            text=res.text,
            finish_reason=res.finish_reason,
            prompt_tokens=res.prompt_tokens,
            completion_tokens=res.completion_tokens,
            answered_by=model,
            cost=cost,
            logprobs=res.logprobs,
            label_probs=res.label_probs,
            compute_s=res.compute_s,
            queue_s=res.queue_s,
            batch_size=res.batch_size,
        )

    async def chat_job(self, model: str, req: ChatRequest, *, stream: bool) -> Job:
        """A chat request's generation job on a local sub-model: sampling parameters, the
        prompt through the chat template, its length checked, the job queued."""
        assert self.backend is not None
        params = self.sampling(req, req.wanted_max_tokens())
        params.logprobs = bool(req.logprobs)
        params.top_logprobs = int(req.top_logprobs or 0)
        params.json_mode = bool(req.response_format and req.response_format.type == "json_object")
        msgs = [{"role": m.role, "content": m.text()} for m in req.messages]
        ids = await self.encode_chat(model, msgs)
        self.check_prompt(ids, params)
        return self.submit(model, ids, params, stream=stream)

    async def chat_local(self, model: str, req: ChatRequest) -> Answer:
        """Answer a chat request with a local sub-model (non-streaming)."""
        job = await self.chat_job(model, req, stream=False)
        return self.answer_from(model, await self.wait(job))

    async def chat_upstream(self, req: ChatRequest | dict[str, Any]) -> Answer:
        """Forward a chat request upstream (non-streaming)."""
        if self.upstream is None:
            raise APIError(404, "no upstream model is configured", code="model_not_found")
        body = req if isinstance(req, dict) else req.model_dump(exclude_none=True)
        body = {**body, "stream": False}
        try:  # its size is known only at its end: it starts while the budgets are not passed
            spend = budget.reserve(self, 0.0)
        except budget.BudgetSpent as e:
            raise budget.quota_error(e) from None
        try:
            data = await self.upstream.post("/chat/completions", body)
        except BaseException:
            spend.settle(self, None)
            raise
        usage = data.get("usage") or {}
        choice = (data.get("choices") or [{}])[0]
        msg = choice.get("message") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        model = str(body.get("model"))
        cost = upstream_cost(self.settings.cost, self.upstream.cfg.default_price, model, pt, ct)
        spend.settle(self, cost)
        return Answer(
            text=msg.get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=pt,
            completion_tokens=ct,
            answered_by=model,
            cost=cost,
            raw=data,
        )

    # ------------------------------------------------------------------ request log
    def redact(self, text: str | None) -> str | None:
        if text is None or self.redactor is None:
            return text
        return self.redactor(text)

    def log_request(self, **fields: Any) -> None:
        """Write one row to the request log; a failing log never fails the request."""
        if self.request_log is None:
            return
        cfg = self.settings.log
        if not cfg.store_text:
            fields["messages"] = fields["prompt"] = fields["response"] = None
        elif cfg.redact:
            if fields.get("messages"):
                fields["messages"] = [
                    {**m, "content": self.redact(m.get("content"))} for m in fields["messages"]
                ]
            fields["prompt"] = self.redact(fields.get("prompt"))
            fields["response"] = self.redact(fields.get("response"))
            fields["redacted"] = True
        try:
            self.request_log.log(**fields)
        except Exception as e:  # keep serving; the operator sees the warning
            log.warning("request log write failed: %s", e)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        if self.registry is not None:
            self.registry.stop()
        if self.analytic is not None:
            self.analytic.stop()
        if self.backend is not None:
            await asyncio.to_thread(self.backend.close)
        if self.upstream is not None:
            await self.upstream.close()
        if self.request_log is not None:
            self.request_log.close()
        if self.keys is not None:
            self.keys.close()


def open_request_log(path: Path):
    from zimo.logs.requests import RequestLog

    return RequestLog(path)


def make_redactor() -> Callable[[str], str]:
    """The same PII redaction as synth and curate."""
    from zimo.data.formatters.redact import Redactor

    return Redactor()
