"""``POST /v1/chat/completions`` (JSON or SSE stream) and ``POST /v1/completions``: local
sub-models, handlers (router, cascade, analytic), or the upstream gateway."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from zimo.serve.errors import APIError, error_body
from zimo.serve.gateway import StreamTally
from zimo.serve.responses import (
    answer_headers,
    chat_json,
    chat_logprobs,
    chat_tail,
    chunk,
    completion_logprobs,
    sse,
    stream_headers,
    usage,
)
from zimo.serve.routes.common import (
    LogCtx,
    begin,
    guarded,
    merge_results,
    sampling_params,
)
from zimo.serve.schemas import ChatRequest, CompletionRequest, refuse_tools
from zimo.serve.service import Answer, ServeState

log = logging.getLogger("zimo.serve")


router = APIRouter()


# ------------------------------------------------------------------ chat
@router.post("/v1/chat/completions")
async def chat(request: Request):
    st, t0, key, raw, req = await begin(request, ChatRequest)
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
    ctx = LogCtx(st, "chat", req.model, key, t0, messages=raw.get("messages"),
                  params=sampling_params(raw), stream=req.stream)  # fmt: skip
    if where == "upstream":
        return await _forward(st, "/chat/completions", raw, ctx)
    if where == "virtual":
        ans = await guarded(ctx, st.virtual[req.model](req, st))
        return chat_json(req, ans, ctx) if not req.stream else _stream_answer(req, ans, ctx)
    if req.stream:
        return await _chat_stream_local(st, req, ctx)
    ans = await guarded(ctx, st.chat_local(req.model, req))
    return chat_json(req, ans, ctx)


# ------------------------------------------------------------------ completions
@router.post("/v1/completions")
async def completions(request: Request):
    st, t0, key, raw, req = await begin(request, CompletionRequest)
    if (req.n or 1) != 1:
        raise APIError(400, "Only n=1 is supported by this server.", param="n")
    where = st.check_model(req.model, key)
    if where != "upstream":
        refuse_tools(raw, req.model)
    prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
    ctx = LogCtx(st, "completions", req.model, key, t0, prompt="\n".join(prompts),
                  params=sampling_params(raw), stream=req.stream)  # fmt: skip
    if where == "upstream":
        return await _forward(st, "/completions", raw, ctx)
    if where == "virtual":
        raise APIError(400, f"`{req.model}` answers chat requests only; use /v1/chat/completions")
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
    results = await guarded(ctx, asyncio.gather(*(st.wait(j) for j in jobs)))
    ans = merge_results(st, req.model, results)
    choices = []
    for i, (p, r) in enumerate(zip(prompts, results, strict=True)):
        text = (p + r.text) if req.echo else r.text
        choices.append(
            {
                "index": i,
                "text": text,
                "logprobs": completion_logprobs(r.logprobs, len(p) if req.echo else 0),
                "finish_reason": r.finish_reason,
            }
        )
    body = {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": choices,
        "usage": usage(ans.prompt_tokens, ans.completion_tokens),
        "zimo": ctx.zimo(ans),
    }
    ctx.done(ans, 200, "\n".join(r.text for r in results))
    return JSONResponse(body, headers=answer_headers(ans, req.model))


async def _chat_stream_local(st: ServeState, req: ChatRequest, ctx: LogCtx) -> StreamingResponse:
    try:
        job = await st.chat_job(req.model, req, stream=True)
    except APIError as e:
        ctx.done(None, e.status, None, e.message)
        e.logged = True
        raise
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def delta(d) -> dict:
        lps = chat_logprobs(d.logprobs) if req.logprobs and d.logprobs else None
        return chunk(cid, created, req.model, {"content": d.text}, logprobs=lps)

    head = chunk(cid, created, req.model, {"role": "assistant", "content": ""})
    events = _relay(
        st, req.model, job, ctx, head=[head], delta=delta,
        tail=lambda ans: chat_tail(cid, created, req, ans, ctx),
    )  # fmt: skip
    return StreamingResponse(
        events, media_type="text/event-stream", headers=stream_headers(req.model)
    )


async def _relay(
    st: ServeState,
    model: str,
    job,
    ctx: LogCtx,
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
            yield sse(h)
        async for d in job.iter_deltas():
            parts.append(d.text)
            yield sse(delta(d))
        try:
            res = job.future.result()
        except Exception as e:
            status = getattr(e, "status", 500)
            msg = getattr(e, "message", "the model failed")
            ctx.done(None, status, "".join(parts), msg)
            yield sse(error_body(msg, "server_error" if status >= 500 else "invalid_request_error"))
            finished = True
            return
        ans = st.answer_from(model, res)
        for t in tail(ans):
            yield sse(t)
        yield b"data: [DONE]\n\n"
        finished = True
        ctx.done(ans, 200, "".join(parts))
    finally:
        if not finished:
            job.cancel()
            ctx.done(None, 499, "".join(parts), "client closed the stream")


def _stream_answer(req: ChatRequest, ans: Answer, ctx: LogCtx) -> StreamingResponse:
    """A finished answer (e.g. from a virtual model) sent as a one-chunk stream."""

    async def events() -> AsyncIterator[bytes]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        yield sse(chunk(cid, created, req.model, {"role": "assistant", "content": ans.text}))
        for t in chat_tail(cid, created, req, ans, ctx):
            yield sse(t)
        yield b"data: [DONE]\n\n"
        ctx.done(ans, 200, ans.text)

    h = stream_headers(ans.answered_by)
    h["x-zimo-escalated"] = "true" if ans.escalated else "false"
    h["x-zimo-cost"] = f"{ans.cost:.10f}"
    return StreamingResponse(events(), media_type="text/event-stream", headers=h)


def _completion_stream(st: ServeState, req: CompletionRequest, job, ctx: LogCtx):
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
        delta=lambda d: chunk(d.text, lps=completion_logprobs(d.logprobs)), tail=tail,
    )  # fmt: skip
    return StreamingResponse(
        events, media_type="text/event-stream", headers=stream_headers(req.model)
    )


async def _forward(st: ServeState, path: str, raw: dict[str, Any], ctx: LogCtx):
    """Gateway mode: pass the request to the upstream model (JSON or stream)."""
    import zimo.serve.budget as budget
    from zimo.serve.cost import upstream_cost

    assert st.upstream is not None
    model = str(raw.get("model"))
    price = st.upstream.cfg.default_price
    try:
        # Its size is known only at its end: a forwarded call starts while the budgets are not
        # passed, and is counted when it ends.
        spend = budget.reserve(st, 0.0)
    except budget.BudgetSpent as e:
        raise budget.quota_error(e) from None
    if not raw.get("stream"):
        try:
            data = await guarded(ctx, st.upstream.post(path, raw))
        except BaseException:
            spend.settle(st, None)
            raise
        usage = data.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        choice = (data.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        ans = Answer(text, choice.get("finish_reason") or "stop", pt, ct, model,
                     cost=upstream_cost(st.settings.cost, price, model, pt, ct))  # fmt: skip
        spend.settle(st, ans.cost)
        data["zimo"] = ctx.zimo(ans)
        ctx.done(ans, 200, text)
        return JSONResponse(data, headers=answer_headers(ans, model))
    try:
        resp, wants_usage = await guarded(ctx, st.upstream.open_stream(path, raw))
    except BaseException:
        spend.settle(st, None)
        raise
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
            spend.settle(st, ans.cost)  # an interrupted stream still cost what it streamed
            if ok:
                ctx.done(ans, 200, ans.text)
            else:
                ctx.done(ans, 499, ans.text, "stream interrupted")

    return StreamingResponse(
        events(), media_type="text/event-stream", headers=stream_headers(model)
    )
