"""Fetch an ``http(s)://`` image URL for an image sub-model, when ``images.remote_urls`` allows.

Off by default: a server that fetches what a caller names can be made to reach into its own
network. Only hosts on ``allowed_hosts`` are fetched; redirects are followed by hand, one hop
at a time, and each hop's host must be on the list too (httpx's automatic redirects would
follow them anywhere). The body is streamed and the fetch stops at the size cap (413 naming
the limit) rather than reading whatever the remote sends; the whole fetch has one timeout.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urljoin, urlsplit

from zimo.serve.errors import APIError

SETTING = "images.remote_urls"


def _allowed(url: str, hosts: list[str]) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    return host in hosts or (parts.port is not None and f"{host}:{parts.port}" in hosts)


def check_remote(url: str, cfg, param: str) -> None:
    """400 naming the setting when remote fetching is off or the host is not allowed."""
    if not cfg.enabled:
        raise APIError(400, "only data URLs are accepted (data:image/jpeg;base64,...): this "
                       f"server does not fetch remote images ({SETTING}.enabled is false)",
                       param=param, code="remote_image_not_allowed")  # fmt: skip
    if not _allowed(url, cfg.allowed_hosts):
        host = urlsplit(url).hostname or url[:60]
        raise APIError(400, f"image host {host!r} is not in {SETTING}.allowed_hosts",
                       param=param, code="remote_image_not_allowed")  # fmt: skip


async def fetch_image(url: str, cfg, default_limit: int, param: str) -> bytes:
    """The bytes at ``url`` (checked with ``check_remote`` first), at most the size cap."""
    limit = cfg.max_bytes or default_limit
    try:
        return await asyncio.wait_for(_fetch(url, cfg, limit, param), timeout=cfg.timeout_s)
    except TimeoutError:
        raise APIError(400, f"fetching the image took over {SETTING}.timeout_s "
                       f"({cfg.timeout_s:g} s)", param=param, code="image_fetch_failed") from None  # fmt: skip


async def _fetch(url: str, cfg, limit: int, param: str) -> bytes:
    import httpx

    name = f"{SETTING}.max_bytes" if cfg.max_bytes else "limits.max_image_bytes"
    async with httpx.AsyncClient(follow_redirects=False, timeout=cfg.timeout_s) as client:
        for _hop in range(cfg.max_redirects + 1):
            check_remote(url, cfg, param)
            try:
                async with client.stream("GET", url) as r:
                    if r.is_redirect:
                        url = urljoin(url, r.headers.get("location", ""))
                        continue
                    if r.status_code != 200:
                        raise APIError(400, f"fetching the image failed: HTTP {r.status_code}",
                                       param=param, code="image_fetch_failed")  # fmt: skip
                    if int(r.headers.get("content-length") or 0) > limit:
                        raise _too_large(name, limit, param)
                    buf = bytearray()
                    async for chunk in r.aiter_bytes():
                        buf += chunk
                        if len(buf) > limit:
                            raise _too_large(name, limit, param)
                    return bytes(buf)
            except httpx.HTTPError as e:
                raise APIError(400, f"fetching the image failed: {type(e).__name__}",
                               param=param, code="image_fetch_failed") from None  # fmt: skip
    raise APIError(400, f"more than {SETTING}.max_redirects ({cfg.max_redirects}) redirects",
                   param=param, code="image_fetch_failed")  # fmt: skip


def _too_large(name: str, limit: int, param: str) -> APIError:
    return APIError(413, f"image over {name} ({limit} bytes)", param=param, code="image_too_large")
