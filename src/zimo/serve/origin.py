"""Browser protection of a key-less server on localhost: Host, Origin and content-type checks.

Without API keys the server trusts every caller that can reach it, and a loopback bind makes
that "every program on this machine". A web browser on this machine is such a program, and a
page from any site can make it send requests: a cross-site POST (a form or a ``text/plain``
fetch needs no CORS preflight) would be answered and its prompt logged, and a DNS-rebinding page
(its own name resolved to 127.0.0.1) can even read the answers. Local development servers (Vite,
webpack-dev-server, Jupyter) defend the same way as here:

- ``Host`` must name this machine (localhost, a loopback address or the bound name), which a
  rebinding page cannot forge;
- a request whose ``Origin`` is another site, or that the browser marks ``Sec-Fetch-Site:
  cross-site``, is refused (except plain navigation to a page, which reads nothing back);
- state-changing requests must not carry the content types an HTML form or a simple fetch can
  send (``text/plain``, urlencoded, multipart): the API takes JSON, and a cross-site page cannot
  send ``application/json`` without a CORS preflight that this server does not grant. This is
  also the dashboard's CSRF protection: its forms are submitted by its script as JSON.

With API keys the checks are off: the key is what protects the server, and any host name may
then be legitimate (a server behind a proxy or reached by IP).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from zimo.serve.errors import APIError
from zimo.serve.service import is_loopback

_FORM_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def _host_name(netloc: str) -> str:
    """``host`` of ``host[:port]`` or ``[v6][:port]``, lower case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _local_name(name: str, bound: str) -> bool:
    return (
        name == "localhost"
        or name.endswith(".localhost")  # RFC 6761: always loopback
        or is_loopback(name)
        or (bool(bound) and name == bound.lower())
    )


def refusal(headers: dict[str, str], method: str, bound: str, allowed_origins: list[str]):
    """``(status, message)`` when a browser could have sent this request for another site,
    else None. ``headers`` are lower-cased names."""
    host = headers.get("host")
    if host is not None and not _local_name(_host_name(host), bound):
        return (
            400,
            f"Invalid Host header {host[:100]!r}: this server has no API keys, so it answers "
            "only requests addressed to localhost (DNS rebinding protection). Use "
            "http://127.0.0.1, or create a key (`zimo keys create`) to serve other names.",
        )
    origin = headers.get("origin")
    allowed = origin is not None and origin in allowed_origins
    if origin is not None and not allowed:
        parts = urlsplit(origin)
        if origin == "null" or not parts.hostname or not _local_name(parts.hostname, bound):
            return (
                403,
                f"Cross-origin request from {origin[:100]!r} refused: this server has no API "
                "keys, so it answers pages of localhost only. Add the origin to "
                "serve.cors_origins, or create a key (`zimo keys create`).",
            )
    site = headers.get("sec-fetch-site")
    navigate = method == "GET" and headers.get("sec-fetch-mode") == "navigate"
    if site == "cross-site" and not allowed and not navigate:
        return (
            403,
            "Cross-site request refused: this server has no API keys, so it answers pages of "
            "localhost only. Add the origin to serve.cors_origins, or create a key.",
        )
    if method in _UNSAFE:
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype in _FORM_TYPES:
            return (
                415,
                f"Content-Type {ctype!r} is not accepted: send the body as JSON with "
                "'Content-Type: application/json'.",
            )
    return None


class LocalGuard:
    """ASGI middleware applying :func:`refusal` while the server runs without keys."""

    def __init__(self, app, state_of, bound: str, allowed_origins: list[str]):
        self.app = app
        self.state_of = state_of  # () -> ServeState | None (None before startup)
        self.bound = bound
        self.allowed_origins = list(allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        st = self.state_of(scope)
        if st is None or st.auth_required():
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = refusal(headers, scope["method"], self.bound, self.allowed_origins)
        if why is None:
            return await self.app(scope, receive, send)
        status, message = why
        body = json.dumps(APIError(status, message, code="cross_origin_refused").body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
