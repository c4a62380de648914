"""``POST /v1/feedback``: a user's verdict on a logged answer, from the key that asked."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request

from zimo.serve.errors import APIError
from zimo.serve.routes.common import read_body, state_of

log = logging.getLogger("zimo.serve")


router = APIRouter()


# ------------------------------------------------------------------ feedback
@router.post("/v1/feedback")
async def feedback(request: Request):
    """``{"request_id": "...", "feedback": -1|0|1}``: rate an answer (feeds distillation and
    router refits). Only the key that made a request may rate it."""
    st = state_of(request)
    key = st.authenticate(request.headers.get("authorization"))
    raw = await read_body(request)
    if not isinstance(raw, dict) or not isinstance(raw.get("request_id"), str):
        raise APIError(
            400, 'body must be {"request_id": str, "feedback": -1|0|1}', param="request_id"
        )
    fb = raw.get("feedback")
    if fb not in (-1, 0, 1) or isinstance(fb, bool):
        raise APIError(400, "feedback must be -1, 0 or 1", param="feedback")
    if st.request_log is None:
        raise APIError(404, "the request log is off on this server", code="log_disabled")
    found, owner = await asyncio.to_thread(st.request_log.owner_of, raw["request_id"])
    if not found or (key is not None and owner != key.id):
        raise APIError(404, f"no request {raw['request_id']!r} from this key", param="request_id")
    await asyncio.to_thread(st.request_log.set_feedback, raw["request_id"], fb)
    return {"request_id": raw["request_id"], "feedback": fb}
