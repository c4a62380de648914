"""The OpenAI response shapes: headers saying who answered and what it cost, usage,
logprobs, chat completions (JSON and SSE chunks)."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from zimo.serve.backends.base import TokenLogprob
from zimo.serve.routes.common import LogCtx
from zimo.serve.schemas import ChatRequest
from zimo.serve.service import Answer

log = logging.getLogger("zimo.serve")


def answer_headers(ans: Answer | None, model: str, escalated: bool = False) -> dict[str, str]:
    h = {"x-zimo-model": ans.answered_by if ans else model,
         "x-zimo-escalated": "true" if (ans.escalated if ans else escalated) else "false"}  # fmt: skip
    if ans is not None:
        h["x-zimo-cost"] = f"{ans.cost:.10f}"
        if ans.route and ans.route.get("tier"):
            h["x-zimo-tier"] = str(ans.route["tier"])
    return h


def logprob_entry(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode("utf-8")),
        "top_logprobs": [
            {"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))} for t, v in lp.top
        ],
    }


def chat_logprobs(lps: list[TokenLogprob] | None) -> dict[str, Any] | None:
    return None if lps is None else {"content": [logprob_entry(x) for x in lps], "refusal": None}


def completion_logprobs(lps: list[TokenLogprob] | None, offset0: int = 0):
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


def usage(pt: int, ct: int) -> dict[str, int]:
    return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}


def sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def chunk(cid: str, created: int, model: str, delta: dict, finish=None, logprobs=None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "zimo",
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }


def stream_headers(model: str) -> dict[str, str]:
    return {"x-zimo-model": model, "x-zimo-escalated": "false", "cache-control": "no-cache",
            "x-accel-buffering": "no"}  # fmt: skip


def chat_json(req: ChatRequest, ans: Answer, ctx: LogCtx) -> JSONResponse:
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
                    "logprobs": chat_logprobs(ans.logprobs) if req.logprobs else None,
                    "finish_reason": ans.finish_reason,
                }
            ],
            "usage": usage(ans.prompt_tokens, ans.completion_tokens),
            "system_fingerprint": "zimo",
        }
    body["zimo"] = ctx.zimo(ans)
    ctx.done(ans, 200, ans.text)
    return JSONResponse(body, headers=answer_headers(ans, req.model))


def chat_tail(cid: str, created: int, req: ChatRequest, ans: Answer, ctx: LogCtx) -> list[dict]:
    """The closing chunks of a chat stream: finish reason + Zimo's routing info, then usage."""
    last = chunk(cid, created, req.model, {}, finish=ans.finish_reason)
    last["zimo"] = ctx.zimo(ans)
    out = [last]
    if req.stream_options and req.stream_options.include_usage:
        u = chunk(cid, created, req.model, {})
        u["choices"], u["usage"] = [], usage(ans.prompt_tokens, ans.completion_tokens)
        out.append(u)
    return out


def embedding_data(vecs: Any, encoding_format: str | None) -> list[dict[str, Any]]:
    """The ``data`` of an embeddings response: floats, or little-endian float32 in base64."""
    data = []
    for i, v in enumerate(vecs):
        if encoding_format == "base64":
            val: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
        else:
            val = [float(x) for x in v]
        data.append({"object": "embedding", "index": i, "embedding": val})
    return data
