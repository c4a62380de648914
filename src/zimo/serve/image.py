"""Image sub-models behind the gateway: chat with an image part answers the label, and
``/v1/embeddings`` takes images (data URLs) as well as texts, returning vectors of one space.

Images come as ``data:image/...;base64,`` URLs. Chat image parts may also be ``http(s)://``
URLs when ``images.remote_urls`` is enabled, fetched only from its ``allowed_hosts``
(``serve/image_fetch.py``); off by default, since fetching lets a caller make the server reach
into its own network. Embeddings inputs stay data URLs only: there an ``https://...`` string is
a text to embed, and guessing otherwise would change what existing callers get. Limits: the
body limit first (``limits.max_body_bytes``, 413 from the middleware), then per image
``limits.max_image_bytes`` and per request ``limits.max_images`` (413 naming the limit).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any

import numpy as np

from zimo.serve.errors import APIError, model_not_found
from zimo.serve.responses import embedding_data

DATA_PREFIX = "data:"


def decode_data_url(url: Any, limit: int, param: str) -> bytes:
    if not isinstance(url, str) or not url:
        raise APIError(400, "image_url.url must be a data URL string", param=param)
    if not url.startswith(DATA_PREFIX):
        raise APIError(400, "only data URLs are accepted (data:image/jpeg;base64,...), or "
                       "http(s) URLs where images.remote_urls allows", param=param,
                       code="remote_image_not_allowed")  # fmt: skip
    head, sep, payload = url.partition(",")
    if not sep or ";base64" not in head:
        raise APIError(400, "the data URL must be base64 (data:image/png;base64,...)", param=param)
    if len(payload) * 3 // 4 > limit + 3:
        raise APIError(413, f"image over limits.max_image_bytes ({limit} bytes)", param=param,
                       code="image_too_large")  # fmt: skip
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise APIError(400, "the data URL's base64 does not decode", param=param) from None
    if len(data) > limit:
        raise APIError(413, f"image over limits.max_image_bytes ({limit} bytes)", param=param,
                       code="image_too_large")  # fmt: skip
    return data


async def image_bytes(url: Any, limits, remote, param: str) -> bytes:
    """An image part's bytes: decoded from a data URL, or fetched where ``remote`` allows."""
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        from zimo.serve.image_fetch import check_remote, fetch_image

        check_remote(url, remote, param)
        return await fetch_image(url, remote, limits.max_image_bytes, param)
    return decode_data_url(url, limits.max_image_bytes, param)


async def images_in_messages(messages, limits, remote) -> list[tuple[bytes, str]]:
    """(bytes, param) of every image part of the last user message."""
    for mi in range(len(messages) - 1, -1, -1):
        m = messages[mi]
        if m.role != "user":
            continue
        if not isinstance(m.content, list):
            return []
        out = []
        for pi, part in enumerate(m.content):
            if part.type != "image_url":
                continue
            iu = (part.model_extra or {}).get("image_url")
            url = iu.get("url") if isinstance(iu, dict) else iu
            out.append((url, f"messages[{mi}].content[{pi}].image_url.url"))
        if len(out) > limits.max_images:
            raise APIError(413, f"{len(out)} images in one request; limits.max_images is "
                           f"{limits.max_images}", param=f"messages[{mi}].content",
                           code="too_many_images")  # fmt: skip
        return [(await image_bytes(u, limits, remote, p), p) for u, p in out]
    return []


def _pixels(pred, items: list[tuple[bytes, str]]) -> np.ndarray:
    px = []
    for data, param in items:
        try:
            px.append(pred.pixels_from_bytes(data))
        except ValueError as e:
            raise APIError(400, f"the image cannot be used: {e}", param=param,
                           code="invalid_image") from None  # fmt: skip
    return np.stack(px)


def image_chat_handler(store, name: str):
    async def handler(req, st):
        from zimo.serve.cost import local_cost
        from zimo.serve.service import Answer

        entry = store.get(name)
        if entry is None:
            raise model_not_found(name)
        items = await images_in_messages(req.messages, st.settings.limits,
                                         st.settings.images.remote_urls)  # fmt: skip
        if not items:
            raise APIError(400, f"`{name}` labels images: send one as an image_url content part "
                           "of the user message (a data: URL)", param="messages")  # fmt: skip
        t0 = time.perf_counter()
        pred = entry.predictor

        def run():
            labels, probs = pred.label_pixels(_pixels(pred, items))
            return labels, probs

        labels, probs = await asyncio.to_thread(run)
        compute = time.perf_counter() - t0
        per = [{lab: round(float(p), 6) for lab, p in zip(pred.labels, row, strict=True)}
               for row in probs]  # fmt: skip
        return Answer(
            text="\n".join(labels), finish_reason="stop", prompt_tokens=0, completion_tokens=0,
            answered_by=name, cost=local_cost(st.settings.cost, name, compute, 0, 0),
            label_probs=per[0], compute_s=compute, queue_s=0.0, batch_size=len(items),
        )  # fmt: skip

    return handler


async def image_embeddings(st, key, req, t0: float) -> dict[str, Any] | None:
    """The embeddings body when ``req.model`` is an image sub-model, else None."""
    store = getattr(st, "analytic", None)
    entry = store.get(req.model) if store is not None else None
    if entry is None or entry.kind != "image":
        return None
    if key is not None and not key.allows(req.model):
        st.check_model(req.model, key)
    inputs = [req.input] if isinstance(req.input, str) else list(req.input)
    if not inputs or len(inputs) > 2048:
        raise APIError(400, "input must hold 1 to 2048 texts or image data URLs", param="input")
    limits = st.settings.limits
    images = [(i, x) for i, x in enumerate(inputs) if x.startswith(DATA_PREFIX)]
    if len(images) > limits.max_images:
        raise APIError(413, f"{len(images)} images in one request; limits.max_images is "
                       f"{limits.max_images}", param="input", code="too_many_images")  # fmt: skip
    decoded = [(decode_data_url(x, limits.max_image_bytes, f"input[{i}]"), f"input[{i}]")
               for i, x in images]  # fmt: skip
    texts = [(i, x) for i, x in enumerate(inputs) if not x.startswith(DATA_PREFIX)]
    pred = entry.predictor

    def run() -> np.ndarray:
        out = np.zeros((len(inputs), pred.label_vecs.shape[1]), np.float32)
        if decoded:
            out[[i for i, _ in images]] = pred.embed_pixels(_pixels(pred, decoded))
        if texts:
            out[[i for i, _ in texts]] = pred.embed_texts([t for _, t in texts])
        return out

    vecs = await asyncio.to_thread(run)
    if req.dimensions is not None and req.dimensions != vecs.shape[1]:
        raise APIError(400, f"`{req.model}` has {vecs.shape[1]} dimensions", param="dimensions")
    data = embedding_data(vecs, req.encoding_format)
    st.metrics.observe("embeddings", req.model, 200, time.perf_counter() - t0)
    return {"object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0}}  # fmt: skip
