"""The teacher client: any OpenAI-compatible endpoint, used safely and cheaply.

- official ``openai`` package (``AsyncOpenAI``), bounded concurrency, requests-per-minute pacing;
- retries with exponential backoff + full jitter on 429 / 5xx / timeouts / connection errors /
  truncated bodies (``Retry-After`` honoured); no retry on 401 / 403 / 404 — those raise a
  one-line :class:`~zimo.errors.ZimoError` at once;
- a disk cache keyed by the exact request (:mod:`zimo.synth.cache`): reruns cost nothing and a
  killed run keeps its finished calls;
- token usage and cost per call; a budget cap (``max_cost``) that stops cleanly: no new call
  starts once the spend (plus what the calls in flight are expected to cost) would pass it;
- PII redaction of every message before it is hashed or sent, unless ``local: true``;
- a rich progress bar with calls, tokens, cost and ETA.

Library use::

    teacher = Teacher(TeacherConfig(...), cache_path="cache.sqlite")
    results = teacher.run([ChatRequest(messages=[...], template="answer.v1")])
    teacher.usage.cost
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from zimo.data.formatters.redact import Redactor
from zimo.errors import ConfigError, ZimoError
from zimo.prices import token_cost
from zimo.synth.cache import TeacherCache, request_key
from zimo.synth.config import TeacherConfig


class TeacherFatal(ZimoError):
    """The teacher cannot be used at all (bad key, unknown model, unreachable)."""


@dataclass
class ChatRequest:
    """One chat call. ``template`` is the prompt template id recorded with the answer."""

    messages: list[dict[str, Any]]
    template: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class TeacherResult:
    """The answer to one :class:`ChatRequest` (``error`` set when there is none)."""

    content: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False
    key: str = ""
    error: str | None = None
    sent_messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.content is not None


@dataclass
class Usage:
    """Running totals for a teacher."""

    calls: int = 0  # paid calls that returned an answer
    cached: int = 0  # answers served from the cache
    failed: int = 0  # calls that ended without an answer (after retries)
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # spent by this run
    cached_cost: float = 0.0  # what the cached answers cost when they were first bought

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cached": self.cached,
            "failed": self.failed,
            "retries": self.retries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": round(self.cost, 6),
            "cached_cost": round(self.cached_cost, 6),
        }


def _rough_tokens(text: str) -> int:
    # Only used when a server omits `usage`: ~4 chars per token for Latin text, 1 per CJK char.
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return cjk + max(0, (len(text) - cjk) // 4)


def _retry_after(err: Exception) -> float | None:
    resp = getattr(err, "response", None)
    if resp is None:
        return None
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _Progress:
    """A rich progress bar with calls, tokens and cost (a no-op when disabled)."""

    def __init__(self, teacher: Teacher, total: int | None, desc: str, enabled: bool):
        self.teacher = teacher
        self.enabled = enabled
        self.progress = None
        self.task = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.task = self.progress.add_task(desc, total=total, stats="")

    def __enter__(self) -> _Progress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.refresh()
            self.progress.stop()

    def refresh(self, advance: int = 0, **kw: Any) -> None:
        if self.progress is None:
            return
        u = self.teacher.usage
        stats = (
            f"calls {u.calls}+{u.cached} cached"
            + (f" {u.failed} failed" if u.failed else "")
            + f" · {u.prompt_tokens + u.completion_tokens:,} tok · cost {u.cost:.4f}"
        )
        self.progress.update(self.task, advance=advance, stats=stats, **kw)


class Teacher:
    """An OpenAI-compatible teacher with cache, retries, pacing, budget and redaction."""

    def __init__(
        self,
        config: TeacherConfig,
        cache_path: str | Path | None = None,
        *,
        progress: bool = True,
        api_key: str | None = None,
        cost: Callable[[int, int], float] | None = None,
    ):
        self.config = config
        self.cache = TeacherCache(cache_path) if cache_path else None
        self.redactor: Redactor | None = None if config.local else Redactor()
        self.usage = Usage()
        self.stopped: str | None = None  # "budget" once the cap is reached
        self.show_progress = progress
        self._api_key = api_key if api_key is not None else self._key_from_env()
        # (prompt tokens, completion tokens) -> USD; callers priced otherwise than the config's
        # per-token prices (a cascade's big tier may charge per request) pass their own.
        self._price = cost
        self._next_start = 0.0
        self._in_flight = 0
        self._bar: _Progress | None = None
        self._bar_counts_calls = True

    # -- setup -------------------------------------------------------------------------------
    def _key_from_env(self) -> str:
        env = self.config.api_key_env
        if not env:
            return "none"  # servers without auth still need a non-empty header value
        value = os.environ.get(env)
        if not value:
            raise ConfigError(
                f"teacher API key env var {env} is not set",
                f"export {env}=<key>, or set teacher.api_key_env: null for a server without keys",
            )
        return value

    def _client(self) -> openai.AsyncOpenAI:
        # Our own retry loop (backoff, Retry-After, budget) replaces the SDK's.
        return openai.AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self._api_key,
            timeout=self.config.timeout,
            max_retries=0,
        )

    # -- public API --------------------------------------------------------------------------
    @contextmanager
    def progress(
        self, total: int | None, desc: str = "teacher", count_calls: bool = True
    ) -> Iterator[_Progress]:
        """Show one bar for a whole run. With ``count_calls=False`` the caller advances it."""
        bar = _Progress(self, total, desc, self.show_progress)
        self._bar, self._bar_counts_calls = bar, count_calls
        try:
            with bar:
                yield bar
        finally:
            self._bar, self._bar_counts_calls = None, True

    def prepare(self, req: ChatRequest) -> tuple[str, dict[str, Any]]:
        """The request body actually sent (redacted) and its cache key."""
        messages = self.redactor.messages(req.messages) if self.redactor else req.messages
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature if req.temperature is None else req.temperature,
            "max_tokens": req.max_tokens or self.config.max_tokens,
        }
        if req.response_format is not None:
            body["response_format"] = req.response_format
        if req.stop:
            body["stop"] = req.stop
        if req.seed is not None:
            body["seed"] = req.seed
        return request_key(body), body

    def run(self, requests: list[ChatRequest]) -> list[TeacherResult]:
        """Answer ``requests`` (in order). Fatal teacher errors raise :class:`TeacherFatal`."""
        if not requests:
            return []
        if self._bar is not None:
            return _run_sync(self.arun(requests))
        with self.progress(len(requests), "teacher", count_calls=True):
            return _run_sync(self.arun(requests))

    async def arun(self, requests: list[ChatRequest]) -> list[TeacherResult]:
        """Async :meth:`run`; identical requests in one batch are sent once."""
        prepared = [self.prepare(r) for r in requests]
        unique: dict[str, tuple[ChatRequest, dict[str, Any]]] = {}
        for req, (key, body) in zip(requests, prepared, strict=True):
            unique.setdefault(key, (req, body))
        if len(unique) < len(prepared):
            self._tick(len(prepared) - len(unique))  # duplicates are answered with their twin
        sem = asyncio.Semaphore(self.config.max_concurrency)
        pace = asyncio.Lock()
        client = self._client()
        try:
            tasks = {
                key: asyncio.create_task(self._one(client, sem, pace, key, body, req.template))
                for key, (req, body) in unique.items()
            }
            try:
                await asyncio.gather(*tasks.values())
            except BaseException:
                for t in tasks.values():
                    t.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
                raise
            done = {k: t.result() for k, t in tasks.items()}
        finally:
            await client.close()
        out = []
        for key, body in prepared:
            r = done[key]
            out.append(
                TeacherResult(**{**r.__dict__, "key": key, "sent_messages": body["messages"]})
            )
        return out

    # -- one call ----------------------------------------------------------------------------
    def _cost(self, pt: int, ct: int) -> float:
        if self._price is not None:
            return self._price(pt, ct)
        c = self.config
        return token_cost(pt, c.price_in_per_1m) + token_cost(ct, c.price_out_per_1m)

    def _over_budget(self) -> bool:
        """``max_cost`` caps the whole job, cached answers included at what they cost when
        bought: a rerun after a budget stop stops at the same point (raise the cap to go on),
        and a run resumed after a crash does not get a fresh budget."""
        cap = self.config.max_cost
        if cap is None:
            return False
        spent = self.usage.cost + self.usage.cached_cost
        if spent >= cap:
            return True
        answered = self.usage.calls + self.usage.cached
        if answered == 0:
            return False
        # Expected cost of this call and of those in flight, from the average so far.
        avg = spent / answered
        return spent + (self._in_flight + 1) * avg > cap

    async def _pace(self, pace: asyncio.Lock) -> None:
        rpm = self.config.requests_per_minute
        if not rpm:
            return
        async with pace:
            now = time.monotonic()
            wait = self._next_start - now
            self._next_start = max(now, self._next_start) + 60.0 / rpm
        if wait > 0:
            await asyncio.sleep(wait)

    def _tick(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.refresh(advance=n if self._bar_counts_calls else 0)

    async def _one(
        self,
        client: openai.AsyncOpenAI,
        sem: asyncio.Semaphore,
        pace: asyncio.Lock,
        key: str,
        body: dict[str, Any],
        template: str | None,
    ) -> TeacherResult:
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.cached += 1
                self.usage.cached_cost += float(hit.get("cost") or 0.0)
                self._tick()
                return TeacherResult(
                    content=hit["content"],
                    finish_reason=hit.get("finish_reason"),
                    prompt_tokens=hit.get("prompt_tokens", 0),
                    completion_tokens=hit.get("completion_tokens", 0),
                    cost=0.0,  # already paid in an earlier run
                    cached=True,
                )
        async with sem:
            if self.stopped or self._over_budget():
                self.stopped = "budget"
                self._tick()
                return TeacherResult(content=None, error="budget")
            self._in_flight += 1
            try:
                result = await self._call_with_retries(client, pace, body)
            finally:
                self._in_flight -= 1
        if result.ok:
            self.usage.calls += 1
            self.usage.prompt_tokens += result.prompt_tokens
            self.usage.completion_tokens += result.completion_tokens
            self.usage.cost += result.cost
            if self.cache is not None:
                self.cache.put(
                    key,
                    model=self.config.model,
                    template=template,
                    request=body,
                    response={
                        "content": result.content,
                        "finish_reason": result.finish_reason,
                        "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens,
                        "cost": result.cost,
                    },
                )
        else:
            self.usage.failed += 1
        self._tick()
        return result

    async def _call_with_retries(
        self, client: openai.AsyncOpenAI, pace: asyncio.Lock, body: dict[str, Any]
    ) -> TeacherResult:
        cfg = self.config
        last_err = ""
        connection_only = True
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self.usage.retries += 1
            await self._pace(pace)
            delay_hint = None
            try:
                resp = await client.chat.completions.create(**body)
            except openai.AuthenticationError as e:
                raise TeacherFatal(
                    f"teacher at {cfg.base_url} rejected the API key (401: {_msg(e)})",
                    f"set {cfg.api_key_env or 'teacher.api_key_env'} to a valid key",
                ) from None
            except openai.PermissionDeniedError as e:
                raise TeacherFatal(
                    f"teacher at {cfg.base_url} denied access (403: {_msg(e)})",
                    f"check that the key may use model {cfg.model!r}",
                ) from None
            except openai.NotFoundError as e:
                raise TeacherFatal(
                    f"teacher model {cfg.model!r} not found at {cfg.base_url} (404: {_msg(e)})",
                    "check teacher.model and teacher.base_url (it usually ends in /v1)",
                ) from None
            except openai.BadRequestError as e:
                # The request itself is wrong for this server (too long, unsupported option):
                # retrying cannot help, the caller decides (e.g. drop response_format).
                return TeacherResult(content=None, error=f"bad_request: {_msg(e)}")
            except openai.APIStatusError as e:
                status = e.status_code
                if status not in (408, 409, 429) and status < 500:
                    return TeacherResult(content=None, error=f"http_{status}: {_msg(e)}")
                connection_only = False
                last_err = f"http_{status}: {_msg(e)}"
                delay_hint = _retry_after(e)
            except openai.APITimeoutError:
                connection_only = False
                last_err = f"timeout after {cfg.timeout:g}s"
            except openai.APIConnectionError as e:
                last_err = f"connection error: {e.__cause__ or e}"
            except (json.JSONDecodeError, openai.APIResponseValidationError, ValueError) as e:
                # A truncated or malformed body: a transient proxy/server fault, worth a retry.
                connection_only = False
                last_err = f"malformed response: {str(e)[:120]}"
            else:
                return self._result(resp, body)
            if attempt < cfg.max_retries:
                backoff = min(cfg.backoff_max, cfg.backoff_base * (2**attempt))
                # Full jitter spreads retries of many workers; the server's Retry-After is a
                # floor (up to 10 minutes), even above backoff_max: it knows its own limits.
                delay = random.uniform(0, backoff)
                if delay_hint is not None:
                    delay = max(delay, min(delay_hint, 600.0))
                await asyncio.sleep(delay)
        if connection_only:
            raise TeacherFatal(
                f"teacher unreachable at {cfg.base_url} after {cfg.max_retries + 1} tries "
                f"({last_err})",
                "check teacher.base_url and that the server is up; finished calls are cached, "
                "so a rerun continues where this one stopped",
            )
        return TeacherResult(content=None, error=f"retries exhausted: {last_err}")

    def _result(self, resp: Any, body: dict[str, Any]) -> TeacherResult:
        choices = getattr(resp, "choices", None) or []
        if not choices:
            return TeacherResult(content=None, error="empty response (no choices)")
        msg = choices[0].message
        content = msg.content if msg is not None else None
        if content is None:
            return TeacherResult(content=None, error="empty response (no content)")
        usage = getattr(resp, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            pt, ct = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        else:
            pt = _rough_tokens(json.dumps(body["messages"], ensure_ascii=False))
            ct = _rough_tokens(content)
        return TeacherResult(
            content=content,
            finish_reason=choices[0].finish_reason,
            prompt_tokens=pt,
            completion_tokens=ct,
            cost=self._cost(pt, ct),
        )

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def _run_sync(coro: Any) -> Any:
    """``asyncio.run``, also from code that already runs an event loop (Jupyter, servers):
    there the coroutine gets its own loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _msg(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
        if isinstance(body.get("message"), str):
            return body["message"][:200]
    return str(err)[:200]
