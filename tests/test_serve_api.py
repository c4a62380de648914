"""`zimo serve` end to end: a real uvicorn server on 127.0.0.1, gecko + LoRA adapters, driven by
the official `openai` client (and raw httpx for malformed requests). One module-scoped server
keeps the run short; keys exist, so every request authenticates like in production.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time

import httpx
import openai
import pytest

from fake_openai import FakeOpenAI
from serve_fixtures import AdapterSpec, LiveServer, make_adapters, submodel_entry
from zimo.serve.app import create_app
from zimo.serve.config import ServeConfig
from zimo.serve.json_mode import JsonPrefix
from zimo.serve.keys import KeyStore

MSG = [{"role": "user", "content": "Name a colour."}]
UPSTREAM_ENV = "ZIMO_TEST_UPSTREAM_KEY"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    ads = make_adapters(
        root / "adapters",
        [
            AdapterSpec("a1", seed=1),
            AdapterSpec("a2", seed=2),
            AdapterSpec("sms", seed=3, task="label", labels=["ham", "spam"]),
            AdapterSpec("a3", seed=4),  # served only later, through the admin endpoint
        ],
    )
    keys = KeyStore(root / "keys.sqlite")
    user, _ = keys.create("tests")
    limited, _ = keys.create("limited", rate_per_minute=2)
    only_a1, _ = keys.create("only-a1", models=["a1"])
    admin, _ = keys.create("admin", admin=True)
    upstream = FakeOpenAI(responder=lambda body: "big answer", models=("big-model",)).start()
    os.environ[UPSTREAM_ENV] = upstream.api_key
    cfg = ServeConfig(
        models=[submodel_entry(ads[n]) for n in ("a1", "a2", "sms")],
        backend={"threads": 1, "batching": {"max_wait_ms": 30}},
        upstream={
            "base_url": upstream.base_url,
            "api_key_env": UPSTREAM_ENV,
            "models": ["big-model"],
        },  # fmt: skip
        limits={"max_body_bytes": 64_000, "max_prompt_tokens": 256, "max_new_tokens": 64},
        keys_db=str(root / "keys.sqlite"),
        log={"path": str(root / "requests.sqlite")},
        watch_s=None,
    )
    app = create_app(cfg)
    with LiveServer(app) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=user, max_retries=0, timeout=120)
        yield {
            "srv": srv, "client": client, "keys": keys, "root": root, "adapters": ads,
            "user": user, "limited": limited, "only_a1": only_a1, "admin": admin,
            "upstream": upstream, "log": root / "requests.sqlite", "app": app,
        }  # fmt: skip
    upstream.stop()
    keys.close()
    os.environ.pop(UPSTREAM_ENV, None)


def _chat(env, model, **kw):
    kw.setdefault("max_tokens", 4)
    kw.setdefault("temperature", 0)
    return env["client"].chat.completions.create(
        model=model, messages=kw.pop("messages", MSG), **kw
    )


def _post(env, path, key=None, **kw):
    headers = {"authorization": f"Bearer {key or env['user']}", **kw.pop("headers", {})}
    return httpx.post(env["srv"].url + path, headers=headers, timeout=120, **kw)


# ----------------------------------------------------------------------------- basics
def test_models_and_health(env):
    ids = [m.id for m in env["client"].models.list().data]
    assert {"a1", "a2", "sms", "gecko", "all-MiniLM-L6-v2", "big-model"} <= set(ids)
    assert "a3" not in ids
    h = httpx.get(env["srv"].url + "/healthz").json()
    assert h["status"] == "ok" and h["auth"] is True and "a1" in h["models"]


def test_chat_answer_headers_and_log(env):
    raw = env["client"].chat.completions.with_raw_response.create(
        model="a1", messages=MSG, max_tokens=4, temperature=0
    )
    r = raw.parse()
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 4 and r.usage.prompt_tokens > 5
    assert raw.headers["x-zimo-model"] == "a1"
    assert raw.headers["x-zimo-escalated"] == "false"
    assert float(raw.headers["x-zimo-cost"]) > 0
    extra = r.model_extra["zimo"]
    assert extra["model"] == "a1" and extra["compute_s"] > 0
    with sqlite3.connect(env["log"]) as db:
        rows = db.execute(
            "SELECT model, answered_by, status, completion_tokens, cost, key_id, messages "
            "FROM requests WHERE model='a1' AND status=200"
        ).fetchall()
    assert rows, "the request was not logged"
    model, answered, status, ct, cost, key_id, messages = rows[-1]
    assert (answered, ct) == ("a1", r.usage.completion_tokens) and cost > 0
    assert key_id == env["user"].split("-")[1]
    assert json.loads(messages)[0]["content"] == MSG[0]["content"]
    rid = extra["request_id"]
    assert _post(env, "/v1/feedback", json={"request_id": rid, "feedback": 1}).status_code == 200
    other = _post(env, "/v1/feedback", key=env["only_a1"], json={"request_id": rid, "feedback": -1})
    assert other.status_code == 404  # only the key that asked may rate the answer
    assert _post(env, "/v1/feedback", json={"request_id": rid, "feedback": 5}).status_code == 400
    with sqlite3.connect(env["log"]) as db:
        assert db.execute("SELECT feedback FROM requests WHERE id=?", (rid,)).fetchone()[0] == 1
    with open(env["log"], "rb") as f:  # the key's secret never reaches the log
        assert env["user"].split("-", 2)[2].encode() not in f.read()


def test_adapters_change_outputs(env):
    lps = {}
    for m in ("gecko", "a1", "a2"):
        r = _chat(env, m, max_tokens=1, logprobs=True, top_logprobs=3)
        lps[m] = r.choices[0].logprobs.content[0].top_logprobs
    as_tuple = {m: tuple((t.token, round(t.logprob, 3)) for t in v) for m, v in lps.items()}
    assert len(set(as_tuple.values())) == 3, as_tuple


def test_two_adapters_one_batch_match_solo(env):
    """Concurrent a1 + a2 requests share one forward pass and give the solo answers."""
    solo = {m: _chat(env, m, max_tokens=3, logprobs=True) for m in ("a1", "a2")}
    results: dict[str, object] = {}
    barrier = threading.Barrier(4)

    def call(tag, model):
        barrier.wait()
        results[tag] = _chat(env, model, max_tokens=3, logprobs=True)

    threads = [
        threading.Thread(target=call, args=(f"{m}{i}", m)) for m in ("a1", "a2") for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(r.model_extra["zimo"]["batch_size"] for r in results.values()) >= 2
    for tag, r in results.items():
        ref = solo[tag[:2]]
        assert r.choices[0].message.content == ref.choices[0].message.content, tag
        got = [x.logprob for x in r.choices[0].logprobs.content]
        want = [x.logprob for x in ref.choices[0].logprobs.content]
        assert got == pytest.approx(want, abs=2e-3), tag
    stats = httpx.get(env["srv"].url + "/admin/models",
                      headers={"authorization": f"Bearer {env['admin']}"}).json()  # fmt: skip
    assert stats["backend"]["mixed_batches"] >= 1


def test_streaming_matches_non_streaming(env):
    ref = _chat(env, "a2", max_tokens=5)
    chunks = list(
        _chat(env, "a2", max_tokens=5, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ref.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["zimo"]["model"] == "a2"
    assert chunks[-1].usage.completion_tokens == ref.usage.completion_tokens


def test_stop_and_completions(env):
    full = _chat(env, "gecko", max_tokens=6).choices[0].message.content
    words = full.split()
    if len(words) >= 2:
        cut = _chat(env, "gecko", max_tokens=6, stop=[" " + words[1]]).choices[0].message.content
        assert cut == full[: full.index(" " + words[1])]
    c = env["client"].completions.create(model="a1", prompt="The sky is", max_tokens=3,
                                         temperature=0, logprobs=2)  # fmt: skip
    lp = c.choices[0].logprobs
    assert c.choices[0].text == "".join(lp.tokens) and len(lp.top_logprobs[0]) == 2


def test_repetition_penalty_extension(env):
    """OpenAI's frequency penalty and vLLM's repetition penalty: fewer repeats; bad values 400."""
    count = [{"role": "user", "content": "Count from one to ten in words."}]
    tok = env["app"].state.zimo.backend.tok

    def repeated_share(text: str) -> float:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return 1 - len(set(ids)) / len(ids)

    plain = _chat(env, "gecko", messages=count, max_tokens=30).choices[0].message.content
    curbed = _chat(env, "gecko", messages=count, max_tokens=30,
                   extra_body={"repetition_penalty": 1.5}).choices[0].message.content  # fmt: skip
    assert curbed != plain and repeated_share(curbed) < repeated_share(plain)
    freq = _chat(env, "gecko", messages=count, max_tokens=30, frequency_penalty=1.0)
    assert repeated_share(freq.choices[0].message.content) < repeated_share(plain)
    with pytest.raises(openai.BadRequestError):
        _chat(env, "gecko", messages=count, extra_body={"repetition_penalty": 2.5})


def test_label_submodel(env):
    r = _chat(env, "sms", messages=[{"role": "user", "content": "WIN a FREE prize, call now"}],
              logprobs=True, top_logprobs=2)  # fmt: skip
    assert r.choices[0].message.content in ("ham", "spam")
    probs = r.model_extra["zimo"]["label_probs"]
    assert set(probs) == {"ham", "spam"} and sum(probs.values()) == pytest.approx(1.0)
    assert max(probs, key=probs.get) == r.choices[0].message.content


def test_json_mode(env):
    r = _chat(env, "gecko", max_tokens=16, response_format={"type": "json_object"},
              messages=[{"role": "user", "content": "Describe a cat as JSON."}])  # fmt: skip
    text = r.choices[0].message.content
    assert JsonPrefix().feed(text), text  # always a valid prefix of one JSON object
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_embeddings(env):
    e = env["client"].embeddings.create(
        model="all-MiniLM-L6-v2", input=["a cat", "a cat", "tax law"]
    )
    v = [d.embedding for d in e.data]
    assert len(v) == 3 and len(v[0]) == 384
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(v[0], v[1]) == pytest.approx(1.0, abs=1e-4) and dot(v[0], v[2]) < 0.9


# ----------------------------------------------------------------------------- bad input
def test_unknown_model_404(env):
    with pytest.raises(openai.NotFoundError) as e:
        _chat(env, "no-such-model")
    assert e.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        json.dumps({"model": "a1", "messages": "hi"}).encode(),
        json.dumps(
            {"model": "a1", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}
        ).encode(),
        json.dumps({"model": "a1", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
        json.dumps(
            {"model": "a1", "messages": [{"role": "user", "content": "x"}], "temperature": 9}
        ).encode(),
        json.dumps(
            {"model": "a1", "messages": [{"role": "user", "content": "x"}], "n": 2}
        ).encode(),
        json.dumps({"model": 5, "messages": []}).encode(),
        '{"model": "a1", "messages": [{"role": "user", "content": "\udc80"}]}'.encode(
            "utf-8", "surrogatepass"
        ),
        b'{"model": "a1", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "a1", "messages": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    ],
)
def test_malformed_requests_are_400(env, body):
    r = _post(
        env, "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_limits(env):
    big = _post(env, "/v1/chat/completions", content=b"x" * 100_000)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    chunked = _post(env, "/v1/chat/completions", content=iter([b"x" * 40_000] * 3))  # no length
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    long_msg = [{"role": "user", "content": "word " * 400}]
    with pytest.raises(openai.BadRequestError) as e:
        _chat(env, "a1", messages=long_msg)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        _chat(env, "a1", max_tokens=10_000)
    with pytest.raises(openai.BadRequestError) as e:  # nothing to continue from: 400, not 500
        env["client"].completions.create(model="a1", prompt="", max_tokens=2)
    assert e.value.body["code"] == "empty_prompt"


# ----------------------------------------------------------------------------- keys
def _rows_when_logged(env, sql: str, timeout: float = 10.0) -> list[tuple]:
    """The rows ``sql`` selects from the request log, polled until there is at least one."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(env["log"]) as db:
            rows = db.execute(sql).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def _client(env, key):
    return openai.OpenAI(base_url=env["srv"].url + "/v1", api_key=key, max_retries=0)


def test_auth_rate_limit_allow_list_revocation(env):
    with pytest.raises(openai.AuthenticationError):
        _client(env, "zk-00000000-wrong").models.list()
    r = httpx.get(env["srv"].url + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"

    limited = _client(env, env["limited"])
    limited.models.list()
    limited.models.list()
    with pytest.raises(openai.RateLimitError) as e:
        limited.models.list()
    assert int(e.value.response.headers["retry-after"]) >= 1

    only = _client(env, env["only_a1"])
    with pytest.raises(openai.PermissionDeniedError):
        only.chat.completions.create(model="a2", messages=MSG, max_tokens=1)

    key, rec = env["keys"].create("short-lived")
    _client(env, key).models.list()
    assert env["keys"].revoke(rec.id)
    with pytest.raises(openai.AuthenticationError) as e:
        _client(env, key).models.list()
    assert e.value.body["code"] == "revoked_api_key"


# ----------------------------------------------------------------------------- gateway
def test_gateway_pass_through(env):
    up = env["upstream"]
    raw = env["client"].chat.completions.with_raw_response.create(model="big-model", messages=MSG)
    r = raw.parse()
    assert r.choices[0].message.content == "big answer"
    assert raw.headers["x-zimo-model"] == "big-model" and float(raw.headers["x-zimo-cost"]) > 0
    # The fake answers 401 to a wrong key, so this answer also proves our upstream key went out.
    assert up.requests[-1]["body"]["messages"] == MSG
    chunks = list(
        env["client"].chat.completions.create(model="big-model", messages=MSG, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "big answer"
    assert all(c.choices for c in chunks), "the usage chunk we asked for must not leak"
    # A stream is logged when its generator closes, which may be just after the client has read
    # the last byte: wait for the row rather than race it.
    rows = _rows_when_logged(
        env, "SELECT answered_by, response, cost FROM requests WHERE model='big-model' AND stream=1"
    )
    assert ("big-model", "big answer") == rows[-1][:2] and rows[-1][2] > 0
    os.environ[UPSTREAM_ENV] = "wrong-key"  # upstream refuses the gateway's key: a 502, not 401
    try:
        with pytest.raises(openai.APIStatusError) as e:
            env["client"].chat.completions.create(model="big-model", messages=MSG)
        assert e.value.status_code == 502 and e.value.body["code"] == "upstream_auth_failed"
    finally:
        os.environ[UPSTREAM_ENV] = up.api_key


# ----------------------------------------------------------------------------- admin / reload
def test_new_submodel_without_restart(env):
    admin = {"authorization": f"Bearer {env['admin']}"}
    url = env["srv"].url
    r = httpx.post(url + "/admin/models", headers={"authorization": f"Bearer {env['user']}"},
                   json={"path": str(env["adapters"]["a3"])})  # fmt: skip
    assert r.status_code == 403
    r = httpx.post(url + "/admin/models", headers=admin, json={"path": str(env["adapters"]["a3"])})
    assert r.status_code == 200, r.text
    assert _chat(env, "a3", max_tokens=2).model_extra["zimo"]["model"] == "a3"
    # A project folder with a finished train artifact, picked up by a reload.
    project = env["root"] / "proj"
    art = project / ".zimo" / "artifacts" / "train" / "abc123"
    shutil.copytree(env["adapters"]["a2"], art)
    meta = json.loads((art / "zimo_model.json").read_text())
    meta["name"] = "proj-model"
    (art / "zimo_model.json").write_text(json.dumps(meta))
    (art / "manifest.json").write_text("{}")
    r = httpx.post(url + "/admin/models", headers=admin, json={"path": str(art)})
    assert r.status_code == 200 and r.json()["name"] == "proj-model"
    assert "proj-model" in [m.id for m in env["client"].models.list().data]
    bad = httpx.post(url + "/admin/models", headers=admin, json={"path": str(env["root"])})
    assert bad.status_code == 400
    assert httpx.delete(url + "/admin/models/proj-model", headers=admin).status_code == 200
    with pytest.raises(openai.NotFoundError):
        _chat(env, "proj-model")


def test_metrics(env):
    text = httpx.get(env["srv"].url + "/metrics").text
    assert 'zimo_requests_total{endpoint="chat",model="a1",status="200"}' in text
    assert (
        "zimo_request_latency_seconds_bucket" in text and 'zimo_cost_usd_total{model="a1"}' in text
    )
    assert env["user"].split("-", 2)[2] not in text


# ----------------------------------------------------------------------------- routing hook
def test_virtual_model_cascade_hook(env):
    """The hook `auto` routing plugs into: answer with a sub-model, escalate when unsure."""
    from zimo.serve.service import Answer, ServeState

    async def cascade(req, st: ServeState) -> Answer:
        cheap = await st.chat_local("sms", req)
        if max(cheap.label_probs.values()) >= 0.999:  # random adapter: never this sure
            return cheap
        big = await st.chat_upstream(req.model_copy(update={"model": "big-model"}))
        big.escalated, big.cost = True, big.cost + cheap.cost
        big.route = {"tier": "upstream", "score": max(cheap.label_probs.values())}
        return big

    env["app"].state.zimo.add_virtual_model("auto", cascade)
    raw = env["client"].chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-zimo-escalated"] == "true" and raw.headers["x-zimo-model"] == "big-model"
    assert raw.parse().choices[0].message.content == "big answer"
    assert "auto" in [m.id for m in env["client"].models.list().data]
    with sqlite3.connect(env["log"]) as db:
        row = db.execute(
            "SELECT answered_by, escalated, route_score FROM requests WHERE model='auto'"
        ).fetchone()
    assert row[0] == "big-model" and row[1] == 1 and 0 < row[2] < 1


def test_adapters_evicted_lru_under_memory_budget(env):
    be = env["app"].state.zimo.backend
    before = _chat(env, "a1", max_tokens=2, logprobs=True).choices[0].logprobs.content[0].logprob
    old = be.config.adapter_memory_mb
    one = max(be._loaded.values()) / 2**20
    be.config.adapter_memory_mb = one * 1.5  # room for one adapter only
    try:
        _chat(env, "a2", max_tokens=1)
        assert be.loaded_adapters() == ["a2"]
        evictions = be.evictions
        again = _chat(env, "a1", max_tokens=2, logprobs=True).choices[0].logprobs.content[0].logprob
        assert be.loaded_adapters() == ["a1"] and be.evictions == evictions + 1
        assert again == pytest.approx(before, abs=1e-4)  # reloaded weights, same answer
    finally:
        be.config.adapter_memory_mb = old
