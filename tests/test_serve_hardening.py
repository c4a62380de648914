"""`zimo serve` against a hostile but fair client: poisoned requests beside innocent ones, fuzzed
bodies, cross-site browsers and DNS rebinding, auth that must not open by itself.

Real uvicorn servers on 127.0.0.1 with the embedded gecko base (no adapters, so start-up is
short), a real SQLite request log and key store, and a fake OpenAI upstream over real HTTP.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time

import httpx
import pytest

from fake_openai import FakeOpenAI
from serve_fixtures import LiveServer
from zimo.hw import cores
from zimo.serve.backends.base import Backend, BackendError, Job, Result, SamplingParams
from zimo.serve.cli import gateway_app
from zimo.serve.config import BackendConfig, ServeConfig
from zimo.serve.keys import KeyStore

UPSTREAM_ENV = "ZIMO_TEST_HARDEN_UPSTREAM_KEY"
MSG = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A key-less server on loopback: gecko as `gecko`, `big-model` upstream."""
    root = tmp_path_factory.mktemp("harden")
    upstream = FakeOpenAI(responder=lambda body: "big answer", models=("big-model",)).start()
    os.environ[UPSTREAM_ENV] = upstream.api_key
    label = {"task": "label", "labels": ["legitimate", "fraudulent"]}
    cfg = ServeConfig(
        models=[{"name": "lab", "adapter_dir": None, "metadata": label}],  # base as classifier
        backend={"threads": 1, "batching": {"max_wait_ms": 50}},
        upstream={
            "base_url": upstream.base_url,
            "api_key_env": UPSTREAM_ENV,
            "models": ["big-model"],
        },  # fmt: skip
        limits={
            "max_body_bytes": 64_000,
            "max_prompt_tokens": 256,
            "max_new_tokens": 3,
            "default_max_tokens": 2,
        },  # fmt: skip
        keys_db=str(root / "keys.sqlite"),
        log={"path": str(root / "requests.sqlite")},
        watch_s=None,
        embeddings=False,
    )
    with LiveServer(gateway_app(cfg)) as srv:
        yield {"srv": srv, "url": srv.url, "log": root / "requests.sqlite", "upstream": upstream}
    upstream.stop()
    os.environ.pop(UPSTREAM_ENV, None)


def _chat_body(**kw):
    return {"model": "gecko", "messages": MSG, "max_tokens": 2, "temperature": 0, **kw}


def _post(url, path, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"content-type": "application/json", **(headers or {})}
    return httpx.post(url + path, content=data, headers=h, timeout=120)


def _is_openai_error(r: httpx.Response) -> bool:
    try:
        err = r.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)


# ----------------------------------------------------------------------------- item 1
def test_poisoned_requests_never_fail_innocent_ones(local):
    """Beside a seed past 64 bits, a seed below -2^63 and a top_p of 1e-46, every normal request
    in the same batch gets its answer; the poisoned ones are 400s (or, for the tiny top_p,
    answered), never 500s."""
    poison = [
        _chat_body(seed=2**64, temperature=1),
        _chat_body(seed=-(2**63) - 1, temperature=1),
        _chat_body(top_p=1e-46, temperature=1, seed=3),
    ]
    bodies = [_chat_body(seed=i, temperature=0.7) for i in range(8)] + poison
    results: list[httpx.Response | None] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def go(i):
        start.wait()
        results[i] = _post(local["url"], "/v1/chat/completions", bodies[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    innocent = results[:8]
    assert [r.status_code for r in innocent] == [200] * 8, [r.text for r in innocent]
    assert results[8].status_code == 400 and results[8].json()["error"]["param"] == "seed"
    assert results[9].status_code == 400 and results[9].json()["error"]["param"] == "seed"
    assert results[10].status_code == 200, results[10].text


class _PoisonBackend(Backend):
    """An engine whose batches fail when they hold a job for the model `poison` — a stand-in
    for any error the request checks did not foresee (the isolation is the base class's)."""

    kind = "poison-test"

    def load(self):
        self.runs: list[list[str]] = []

    def count_tokens(self, text):
        return len(text)

    def encode_chat(self, model, messages):
        return [1]

    def encode_text(self, model, text):
        return [1]

    def run_batch(self, jobs):
        self.runs.append([j.model for j in jobs])
        if any(j.model == "poison" for j in jobs):
            raise RuntimeError("cannot take this job")
        for j in jobs:
            j.finish(Result(text=f"ok {j.model}", batch_size=len(jobs)))


def test_one_failing_job_fails_only_itself():
    import asyncio

    be = _PoisonBackend(BackendConfig(batching={"max_wait_ms": 200, "max_batch_size": 8}))
    be.start()

    async def go():
        jobs = [Job(m, [1], SamplingParams()) for m in ("a", "b", "poison", "c")]
        for j in jobs:
            be.submit(j)
        return await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)

    try:
        out = asyncio.run(go())
    finally:
        be.close()
    assert [o.text for o in out if isinstance(o, Result)] == ["ok a", "ok b", "ok c"]
    assert isinstance(out[2], BackendError) and out[2].status == 500
    assert be.runs[0] == ["a", "b", "poison", "c"]  # one batch first, then one by one


# ----------------------------------------------------------------------------- item 5 + fuzz
@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "gecko", "messages": [{"role": "user", "content": "x"}], "max_tokens": '
        + b"9" * 5000
        + b"}",
        json.dumps(_chat_body(seed=2**64)).encode(),
    ],
)
def test_out_of_range_values_are_400(local, body):
    r = _post(local["url"], "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert _is_openai_error(r)


@pytest.mark.parametrize("hours", ["inf", "nan", "1e308", "-1", "0"])
def test_gateway_hours_must_be_a_sane_number(local, hours):
    r = httpx.get(local["url"] + "/ui/api/gateway", params={"hours": hours})
    assert r.status_code == 400, r.text
    assert _is_openai_error(r)


_BAD_VALUES = [
    None, True, -1, 0, 2**64, -(2**63) - 1, 10**300, 1e308, -1e308, 1e-320, 3.5, "", "x" * 300,
    "\u0000", [], [None], [[[]]], {}, {"a": {"b": []}}, ["x"] * 50, 1.0000001, -0.0,
]  # fmt: skip
_FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
    "stop", "stream", "stream_options", "seed", "logprobs", "top_logprobs", "response_format",
    "repetition_penalty", "frequency_penalty", "presence_penalty", "ignore_eos", "tools",
    "tool_choice", "functions",
]  # fmt: skip
_MSG_BAD = [
    [{"role": "user"}], [{"content": "x"}], [{"role": "user", "content": 5}],
    [{"role": "user", "content": [{"type": "text", "text": 5}]}], [{"role": None}], ["x"],
    [{"role": "user", "content": [{"type": "image_url"}]}], [{"role": "tool", "content": None}],
]  # fmt: skip


def _fuzz_bodies(n: int, seed: int = 29) -> list[bytes]:
    rnd = random.Random(seed)
    out: list[bytes] = []
    while len(out) < n:
        body: dict = _chat_body()
        for _ in range(rnd.randint(1, 3)):
            f = rnd.choice(_FIELDS)
            if f == "messages" and rnd.random() < 0.5:
                body[f] = rnd.choice(_MSG_BAD)
            else:
                body[f] = rnd.choice(_BAD_VALUES)
        raw = json.dumps(body).encode()
        if rnd.random() < 0.1:  # broken bytes too
            cut = rnd.randint(0, len(raw))
            raw = raw[:cut] + bytes([rnd.randint(0, 255)]) + raw[cut + 1 :]
        out.append(raw)
    return out


def test_fuzzed_bodies_never_get_a_server_error(local):
    bodies = _fuzz_bodies(600)
    statuses = []
    with httpx.Client(timeout=120) as c:
        for i, raw in enumerate(bodies):
            path = "/v1/chat/completions" if i % 3 else "/v1/completions"
            if path == "/v1/completions":
                raw = raw.replace(b'"messages"', b'"prompt"', 1)
            r = c.post(local["url"] + path, content=raw,
                       headers={"content-type": "application/json"})  # fmt: skip
            statuses.append(r.status_code)
            assert r.status_code < 500, (raw[:300], r.text)
            if r.status_code >= 400:
                assert _is_openai_error(r), r.text
    assert statuses.count(400) > 400  # the fuzz mostly sends invalid bodies


# ----------------------------------------------------------------------------- tools
def test_tools_refused_by_local_models_and_passed_upstream_unchanged(local):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    for extra in ({"tools": tools}, {"tools": "x"}, {"tool_choice": "auto"},
                  {"functions": [{"name": "f"}]}):  # fmt: skip
        r = _post(local["url"], "/v1/chat/completions", _chat_body(**extra))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "tools_not_supported"
    up = local["upstream"]
    r = _post(local["url"], "/v1/chat/completions",
              {"model": "big-model", "messages": MSG, "tools": tools, "tool_choice": "auto"})  # fmt: skip
    assert r.status_code == 200, r.text
    sent = up.requests[-1]["body"]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"


# ----------------------------------------------------------------------------- item 3
def test_cross_site_and_rebinding_requests_are_refused(local):
    url = local["url"]
    before = _count_rows(local["log"], "SELECT COUNT(*) FROM requests")
    evil = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    body = json.dumps(_chat_body(messages=[{"role": "user", "content": "SECRET-PROMPT"}]))
    r = httpx.post(url + "/v1/chat/completions", content=body,
                   headers={**evil, "content-type": "text/plain"})  # fmt: skip
    assert r.status_code == 403 and _is_openai_error(r)
    # No Origin, but a form content type: refused too (a form can send it without preflight).
    r = httpx.post(url + "/v1/chat/completions", content=body,
                   headers={"content-type": "text/plain"})  # fmt: skip
    assert r.status_code == 415
    r = httpx.post(url + "/ui/api/keys", json={"name": "evil", "admin": True},
                   headers={"origin": "http://evil.example"})  # fmt: skip
    assert r.status_code == 403
    r = httpx.get(url + "/ui/api/gateway", headers={"host": "evil.example:8000"})
    assert r.status_code == 400 and "Host" in r.json()["error"]["message"]
    r = httpx.get(url + "/ui/api/keys", headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    time.sleep(0.2)
    assert _count_rows(local["log"], "SELECT COUNT(*) FROM requests") == before
    assert _count_rows(local["log"], "SELECT COUNT(*) FROM requests WHERE messages LIKE "
                       "'%SECRET-PROMPT%'") == 0  # fmt: skip
    # The same requests from the server's own pages (and plain clients) are answered.
    own = {"origin": url, "sec-fetch-site": "same-origin"}
    r = httpx.post(url + "/v1/chat/completions", content=body,
                   headers={**own, "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    r = httpx.get(url + "/ui/api/gateway", headers={"host": f"localhost:{local['srv'].port}"})
    assert r.status_code == 200
    nav = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert httpx.get(url + "/ui/keys", headers=nav).status_code == 200


def _count_rows(path, sql) -> int:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchone()[0]


# ----------------------------------------------------------------------------- item 7
def test_rejected_requests_are_logged_and_counted(local):
    url = local["url"]
    marks = []
    r = _post(url, "/v1/chat/completions", b"{not json")
    assert r.status_code == 400
    r = _post(url, "/v1/chat/completions", {"model": "no-such-model-7", "messages": MSG})
    assert r.status_code == 404
    r = _post(url, "/v1/completions", b"{" + b" " * 70_000 + b"}")
    assert r.status_code == 413
    marks = _count_rows(local["log"], "SELECT COUNT(*) FROM requests WHERE "
                        "(status = 404 AND model = 'no-such-model-7') OR status IN (400, 413)")  # fmt: skip
    assert marks >= 3
    with sqlite3.connect(local["log"]) as db:
        eps = {r[0] for r in db.execute("SELECT endpoint FROM requests WHERE status = 413")}
    assert eps == {"completions"}
    metrics = httpx.get(url + "/metrics").text
    for status in ("400", "404", "413"):
        assert f'status="{status}"' in metrics, status
    assert "no-such-model-7" not in metrics  # made-up names do not become series


def test_dashboard_shows_prompts_of_chat_requests(local):
    marker = "purple-elephant-prompt"
    r = _post(local["url"], "/v1/chat/completions",
              _chat_body(messages=[{"role": "user", "content": marker}]))  # fmt: skip
    assert r.status_code == 200
    recent = httpx.get(local["url"] + "/ui/api/gateway").json()["recent"]
    assert any(marker in (row.get("prompt") or "") for row in recent)


# ----------------------------------------------------------------------------- item 2
@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """A server configured for 0.0.0.0 with one key (it listens on 127.0.0.1 for the test)."""
    root = tmp_path_factory.mktemp("exposed")
    keys = KeyStore(root / "keys.sqlite")
    admin, rec = keys.create("only", admin=True)
    limited, lim = keys.create("a1-only", models=["a1"])
    cfg = ServeConfig(
        host="0.0.0.0",
        keys_db=str(root / "keys.sqlite"),
        log={"enabled": False},
        watch_s=None,
        embeddings=False,
    )
    with LiveServer(gateway_app(cfg)) as srv:
        yield {"url": srv.url, "keys": keys, "admin": admin, "rec": rec,
               "limited": limited, "lim": lim}  # fmt: skip
    keys.close()


def test_key_limited_to_one_model_cannot_read_another(exposed):
    h = {"authorization": f"Bearer {exposed['limited']}"}
    r = httpx.get(exposed["url"] + "/v1/models/gecko", headers=h)
    assert r.status_code == 404 and _is_openai_error(r)


def test_engine_leaves_a_core_for_the_http_side(exposed):
    """With a torch thread per core, the engine's threads spin-wait on each other whenever
    the event loop preempts one: 4 concurrent clients got less than 1 (benchmarks/serve_load
    measures it). By default the engine now uses every core but one."""
    h = {"authorization": f"Bearer {exposed['admin']}"}
    stats = httpx.get(exposed["url"] + "/admin/models", headers=h).json()["backend"]
    assert stats["threads"] == max(1, cores() - 1)


def test_revoking_the_last_key_leaves_an_exposed_server_closed(exposed):
    url, keys = exposed["url"], exposed["keys"]
    h = {"authorization": f"Bearer {exposed['admin']}"}
    assert httpx.get(url + "/v1/models", headers=h).status_code == 200
    assert keys.revoke(exposed["lim"].id) and keys.revoke(exposed["rec"].id)
    assert keys.count_active() == 0
    assert httpx.get(url + "/v1/models").status_code == 401
    r = _post(url, "/v1/chat/completions", _chat_body())
    assert r.status_code == 401 and _is_openai_error(r)
    r = httpx.post(url + "/ui/api/keys", json={"name": "intruder", "admin": True})
    assert r.status_code == 401
    assert httpx.get(url + "/ui/api/keys").status_code == 401
    assert httpx.get(url + "/v1/models", headers=h).status_code == 401  # revoked
    assert keys.count_active() == 0


def test_label_usage_counts_the_tokens_its_logprobs_list(local):
    msgs = [{"role": "user", "content": "You won a prize, send your bank details."}]
    r = _post(local["url"], "/v1/chat/completions",
              {"model": "lab", "messages": msgs, "logprobs": True, "top_logprobs": 2})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    content = body["choices"][0]["logprobs"]["content"]
    label = body["choices"][0]["message"]["content"]
    assert label in ("legitimate", "fraudulent")
    assert body["usage"]["completion_tokens"] == len(content) > 1
    assert "".join(e["token"] for e in content).strip() == label


def test_openapi_documents_request_bodies_and_errors(local):
    doc = httpx.get(local["url"] + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, model in (("/v1/chat/completions", "ChatRequest"),
                        ("/v1/completions", "CompletionRequest"), ("/ui/api/keys", "KeyCreateRequest")):  # fmt: skip
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
    chat = schemas["ChatRequest"]
    assert chat["properties"]["seed"]["anyOf"][0]["maximum"] == 2**64 - 1
    assert {"model", "messages"} <= set(chat["required"])
    for path, ops in doc["paths"].items():
        for op in ops.values():
            err = op["responses"]["400"]["content"]["application/json"]["schema"]
            assert err == {"$ref": "#/components/schemas/ErrorResponse"}, path
    assert set(schemas["ErrorDetail"]["properties"]) == {"message", "type", "param", "code"}


def test_key_creation_rate_past_64_bits_is_400(local):
    r = _post(local["url"], "/ui/api/keys", {"name": "x", "rate_per_minute": 10**30})
    assert r.status_code == 400, r.text
    assert _is_openai_error(r)
    assert httpx.get(local["url"] + "/ui/api/keys").json()["keys"] == []  # nothing created
