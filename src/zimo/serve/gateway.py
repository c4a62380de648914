"""Pass-through to the upstream (big) model: any OpenAI-compatible endpoint, streaming too.

The client's body goes upstream unchanged except for the key (ours, from an env var, never
logged). For streams we ask upstream for a usage chunk (``stream_options.include_usage``) so
cost is known; when the client did not ask for it, that chunk is dropped on the way back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from zimo.serve.config import UpstreamConfig
from zimo.serve.errors import APIError


@dataclass
class StreamTally:
    """What a forwarded stream carried, for the log and cost."""

    text: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    model: str | None = None


class Upstream:
    def __init__(self, cfg: UpstreamConfig):
        self.cfg = cfg
        self.client = httpx.AsyncClient(
            base_url=cfg.base_url,
            timeout=httpx.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def handles(self, model: str) -> bool:
        return self.cfg.models is None or model in self.cfg.models

    def _headers(self) -> dict[str, str]:
        key = self.cfg.api_key()
        h = {"content-type": "application/json"}
        if key:
            h["authorization"] = f"Bearer {key}"
        return h

    async def close(self) -> None:
        await self.client.aclose()

    def _error(self, status: int, raw: bytes) -> APIError:
        if status in (401, 403):
            # The client's key was fine (we checked it); upstream refused *ours*. Saying 401
            # would send the client hunting for a problem it does not have.
            return APIError(
                502,
                f"the upstream model refused the gateway's key (HTTP {status}); the operator "
                f"must set ${self.cfg.api_key_env} to a valid key",
                code="upstream_auth_failed",
            )
        try:
            err = json.loads(raw).get("error") or {}
            msg = err.get("message") or raw.decode(errors="replace")[:300]
            return APIError(status, msg, code=err.get("code"), param=err.get("param"),
                            type=err.get("type"))  # fmt: skip
        except (ValueError, AttributeError):
            return APIError(status, f"upstream answered HTTP {status}: {raw[:300]!r}")

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Non-streaming request; upstream errors come back as :class:`APIError`."""
        try:
            r = await self.client.post(path, json=body, headers=self._headers())
        except httpx.HTTPError as e:
            raise _transport_error(e) from None
        if r.status_code >= 400:
            raise self._error(r.status_code, r.content)
        try:
            return r.json()
        except ValueError:
            raise APIError(
                502, "the upstream model sent a body that is not JSON", code="upstream_bad_body"
            ) from None

    async def open_stream(self, path: str, body: dict[str, Any]) -> tuple[httpx.Response, bool]:
        """Start a streaming request; returns (response, client_wants_usage)."""
        body = dict(body)
        opts = dict(body.get("stream_options") or {})
        wants_usage = bool(opts.get("include_usage"))
        if path.endswith("chat/completions"):
            opts["include_usage"] = True
            body["stream_options"] = opts
        req = self.client.build_request("POST", path, json=body, headers=self._headers())
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.HTTPError as e:
            raise _transport_error(e) from None
        if resp.status_code >= 400:
            raw = await resp.aread()
            await resp.aclose()
            raise self._error(resp.status_code, raw)
        return resp, wants_usage

    @staticmethod
    async def relay(
        resp: httpx.Response, wants_usage: bool, tally: StreamTally
    ) -> AsyncIterator[bytes]:
        """Yield the upstream SSE events to the client, counting text and usage on the way."""
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    yield b"data: [DONE]\n\n"
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue  # a broken event from upstream: skip it, keep the stream alive
                usage = chunk.get("usage")
                if usage:
                    tally.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    tally.completion_tokens = int(usage.get("completion_tokens") or 0)
                tally.model = chunk.get("model") or tally.model
                for ch in chunk.get("choices") or []:
                    delta = ch.get("delta") or {}
                    if delta.get("content"):
                        tally.text.append(delta["content"])
                    elif ch.get("text"):
                        tally.text.append(ch["text"])
                    if ch.get("finish_reason"):
                        tally.finish_reason = ch["finish_reason"]
                if usage and not chunk.get("choices") and not wants_usage:
                    continue
                yield f"data: {data}\n\n".encode()
        finally:
            await resp.aclose()


def _transport_error(e: Exception) -> APIError:
    """The client-facing error for an upstream that timed out or could not be reached."""
    if isinstance(e, httpx.TimeoutException):
        return APIError(504, "the upstream model did not answer in time", code="upstream_timeout")
    return APIError(
        502, f"cannot reach the upstream model: {type(e).__name__}", code="upstream_unreachable"
    )
