"""A small, real OpenAI-compatible HTTP server for tests (no client is ever mocked).

It speaks real HTTP on ``127.0.0.1`` (a free port, stdlib ``ThreadingHTTPServer`` in a daemon
thread, so it starts in milliseconds) and the real API schema: ``POST /v1/chat/completions``
(also ``stream: true`` as server-sent events), ``POST /v1/completions``, ``GET /v1/models``,
with ``usage`` fields and OpenAI-format error bodies.

Usage::

    from fake_openai import FakeOpenAI, Fault

    with FakeOpenAI(responder=lambda body: "hello") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key)
        client.chat.completions.create(model=srv.model, messages=[...])
        assert srv.count("/v1/chat/completions") == 1
        srv.requests[-1]["body"]            # the JSON body exactly as received

Answers
    ``responder`` is a callable ``(body: dict) -> str | Reply`` or a dict mapping a substring of
    the last user message (or of the prompt) to an answer; the default echoes the last user
    message as ``"echo: <text>"``. A :class:`Reply` can also set ``finish_reason`` and token
    counts. Without explicit counts, tokens are counted as whitespace words + CJK characters.

Faults on demand
    ``srv.fail(Fault.status(429, retry_after=0.1), times=2)`` makes the next two requests fail
    (then normal answers resume). Available: ``Fault.status(code, retry_after=None)`` (any code:
    429, 500, 503, …), ``Fault.truncated()`` (a cut-off JSON body), ``Fault.slow(seconds)``
    (sleep, then answer normally), ``Fault.drop()`` (close the connection without answering).
    ``srv.fault_when(pred, fault)`` fails every request whose body satisfies ``pred``.
    Built in: a wrong ``Authorization`` key gives 401; a model not in ``models`` gives 404 with
    ``code: model_not_found``; with ``json_schema=False`` a request that asks for
    ``response_format: {"type": "json_schema"}`` gets 400 (as servers that lack it do);
    ``latency`` delays every answer; a responder that raises gives a 500.

Inspection
    ``requests`` (list of ``{"path", "method", "body", "status", "time"}``), ``count(path)``,
    ``prompt_counts()`` (a Counter of last user messages over answered chat requests),
    ``max_in_flight`` (the most requests handled at once), ``reset_counts()``.
    Every received body is recorded *before* any fault is applied, so a test can prove what
    left the client (e.g. that a canary phone number never reached the server).

As a pytest fixture, write in your test module::

    @pytest.fixture
    def fake_openai():
        with FakeOpenAI() as srv:
            yield srv
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace words plus CJK characters."""
    cjk = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    return cjk + words


@dataclass
class Reply:
    """A scripted answer; ``None`` counts are computed with :func:`count_tokens`."""

    content: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Fault:
    """A scripted failure for one request (see the module docstring)."""

    kind: str  # status | truncated | slow | drop
    code: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = "scripted fault"

    @classmethod
    def status(cls, code: int, retry_after: float | None = None, message: str = "") -> Fault:
        return cls("status", code=code, retry_after=retry_after, message=message or f"HTTP {code}")

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")


Responder = Callable[[dict], "str | Reply"] | dict[str, str]


def last_user_text(body: dict) -> str:
    """The last user message of a chat body (text parts joined), or the completion prompt."""
    if "messages" in body:
        for msg in reversed(body.get("messages") or []):
            if msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content or "")
        return ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else "".join(map(str, prompt))


def all_text(body: dict) -> str:
    """Every piece of text in a request body (for canary checks)."""
    return json.dumps(body, ensure_ascii=False)


class FakeOpenAI:
    """The test server; see the module docstring."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        api_key: str = "sk-fake-test-key",
        models: tuple[str, ...] = ("fake-teacher",),
        json_schema: bool = True,
        latency: float = 0.0,
    ):
        self.responder = responder
        self.api_key = api_key
        self.models = tuple(models)
        self.json_schema = json_schema
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self._faults: list[list[Any]] = []  # [fault, remaining]
        self._conditional: list[tuple[Callable[[dict], bool], Fault]] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.models[0]

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        handler = type("_Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------
    def fail(self, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` requests fail with ``fault`` (queued after earlier ones)."""
        with self._lock:
            self._faults.append([fault, times])

    def fault_when(self, predicate: Callable[[dict], bool], fault: Fault) -> None:
        """Fail every request whose JSON body satisfies ``predicate``."""
        with self._lock:
            self._conditional.append((predicate, fault))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._conditional.clear()

    # -- inspection --------------------------------------------------------------------------
    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r["path"] == path)

    def prompt_counts(self) -> Counter:
        """How often each last-user-message was answered (status 200) on chat completions."""
        with self._lock:
            return Counter(
                last_user_text(r["body"])
                for r in self.requests
                if r["path"] == "/v1/chat/completions" and r["status"] == 200
            )

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    # -- internals ---------------------------------------------------------------------------
    def _next_fault(self, body: dict) -> Fault | None:
        with self._lock:
            for pred, fault in self._conditional:
                try:
                    if pred(body):
                        return fault
                except Exception:  # a predicate that chokes on odd bodies does not fault
                    pass
            if self._faults:
                entry = self._faults[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    self._faults.pop(0)
                return entry[0]
        return None

    def _answer(self, body: dict) -> Reply:
        responder = self.responder
        text = last_user_text(body)
        if responder is None:
            out: str | Reply = f"echo: {text}"
        elif isinstance(responder, dict):
            out = next((v for k, v in responder.items() if k in text), f"echo: {text}")
        else:
            out = responder(body)
        return out if isinstance(out, Reply) else Reply(str(out))


def _error_body(message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- helpers -----------------------------------------------------------------------------
    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: Any) -> dict:
        entry = {
            "path": self.path.split("?")[0],
            "method": self.command,
            "body": body,
            "status": None,
            "time": time.time(),
        }
        with self.fake._lock:
            self.fake.requests.append(entry)
        return entry

    # -- routes ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        entry = self._record(None)
        if entry["path"] == "/v1/models":
            if not self._authorised(entry):
                return
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in self.fake.models
            ]
            entry["status"] = 200
            self._send_json(200, {"object": "list", "data": data})
        else:
            entry["status"] = 404
            self._send_json(404, _error_body("not found", "invalid_request_error"))

    def _authorised(self, entry: dict) -> bool:
        if self.fake.api_key and self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            entry["status"] = 401
            self._send_json(
                401,
                _error_body(
                    "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                ),
            )
            return False
        return True

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            entry = self._record(raw.decode("utf-8", "replace"))
            entry["status"] = 400
            self._send_json(400, _error_body("invalid JSON body", "invalid_request_error"))
            return
        entry = self._record(body)
        fake = self.fake
        with fake._lock:
            fake._in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
        try:
            self._handle_post(entry, body)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _handle_post(self, entry: dict, body: dict) -> None:
        fake = self.fake
        path = entry["path"]
        if path not in ("/v1/chat/completions", "/v1/completions"):
            entry["status"] = 404
            self._send_json(404, _error_body(f"unknown path {path}", "invalid_request_error"))
            return
        if not self._authorised(entry):
            return
        model = body.get("model")
        if model not in fake.models:
            entry["status"] = 404
            self._send_json(
                404,
                _error_body(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
            return
        rf = body.get("response_format") or {}
        if not fake.json_schema and rf.get("type") == "json_schema":
            entry["status"] = 400
            self._send_json(
                400,
                _error_body(
                    "response_format json_schema is not supported", "invalid_request_error"
                ),
            )
            return
        fault = fake._next_fault(body)
        if fault is not None and fault.kind != "slow":
            self._apply_fault(entry, fault)
            return
        delay = fake.latency + (fault.seconds if fault is not None else 0.0)
        if delay:
            time.sleep(delay)
        try:
            reply = fake._answer(body)
        except Exception as e:  # a responder that raises gives a 500, as a crashing server would
            entry["status"] = 500
            self._send_json(500, _error_body(f"responder failed: {e}", "server_error"))
            return
        entry["status"] = 200
        chat = path == "/v1/chat/completions"
        prompt_text = (
            " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
            if chat
            else last_user_text(body)
        )
        usage = {
            "prompt_tokens": reply.prompt_tokens
            if reply.prompt_tokens is not None
            else count_tokens(prompt_text),
            "completion_tokens": reply.completion_tokens
            if reply.completion_tokens is not None
            else count_tokens(reply.content),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:16]}"
        if body.get("stream"):
            self._stream(rid, model, reply, usage, chat, body)
            return
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": reply.content,
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
            obj = "text_completion"
        self._send_json(
            200,
            {
                "id": rid,
                "object": obj,
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )

    def _apply_fault(self, entry: dict, fault: Fault) -> None:
        if fault.kind == "status":
            entry["status"] = fault.code
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            etype = "rate_limit_error" if fault.code == 429 else "server_error"
            self._send_json(fault.code, _error_body(fault.message, etype), headers)
        elif fault.kind == "truncated":
            entry["status"] = 200
            data = b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif fault.kind == "drop":
            entry["status"] = 0
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass

    def _stream(
        self, rid: str, model: str, reply: Reply, usage: dict, chat: bool, body: dict
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        created = int(time.time())
        # Split into a few deltas (by words / CJK chars) so clients really reassemble a stream.
        pieces = re.findall(r"\s*\S+", reply.content) or [""]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def send(obj: dict) -> None:
            self.wfile.write(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()

        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if chat:
                delta = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": piece, "finish_reason": None}
                obj = "text_completion"
            if last:
                choice["finish_reason"] = reply.finish_reason
            send(
                {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}
            )
        if include_usage:
            send(
                {
                    "id": rid,
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


if __name__ == "__main__":  # handy for manual runs and for subprocess-based tests
    import argparse

    ap = argparse.ArgumentParser(description="Run the fake OpenAI server")
    ap.add_argument("--port-file", help="write the chosen port here")
    args = ap.parse_args()
    srv = FakeOpenAI().start()
    print(srv.base_url, flush=True)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(srv.port))
    threading.Event().wait()
