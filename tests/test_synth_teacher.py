"""The teacher client against a real local OpenAI-compatible server (no client mocks)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import openai
import pytest

from fake_openai import FakeOpenAI, Fault, Reply
from zimo.errors import ConfigError
from zimo.synth.answer import answer
from zimo.synth.config import TeacherConfig
from zimo.synth.teacher import ChatRequest, Teacher, TeacherFatal

CANARY_PHONE = "13812345678"
CANARY_ID = "110101199003071234"  # wrong check digit: still an ID to us
VALID_ID = "11010519491231002X"  # a valid check digit


@pytest.fixture
def srv():
    with FakeOpenAI() as s:
        yield s


def make_teacher(srv: FakeOpenAI, tmp_path: Path, cache: bool = True, **kw) -> Teacher:
    opts = dict(
        base_url=srv.base_url,
        model=srv.model,
        api_key_env=None,
        max_retries=3,
        backoff_base=0.01,
        backoff_max=0.05,
        timeout=5,
    )
    api_key = kw.pop("api_key", None) or srv.api_key
    opts.update(kw)
    return Teacher(
        TeacherConfig(**opts),
        cache_path=tmp_path / "cache.sqlite" if cache else None,
        progress=False,
        api_key=api_key,
    )


def req(text: str, **kw) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], template="test.v1", **kw)


def test_fake_server_speaks_the_api_including_streaming(srv):
    client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
    stream = client.chat.completions.create(
        model=srv.model,
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[-1].usage.completion_tokens == 4
    assert client.completions.create(model=srv.model, prompt="hi").choices[0].text == "echo: hi"
    assert [m.id for m in client.models.list()] == [srv.model]
    assert srv.count("/v1/chat/completions") == 1


def test_retries_on_429_and_500_then_success(srv, tmp_path):
    srv.fail(Fault.status(429, retry_after=0.05), times=2)
    srv.fail(Fault.status(500))
    srv.fail(Fault.status(503))
    t = make_teacher(srv, tmp_path, max_retries=5)
    [res] = t.run([req("hello")])
    assert res.ok and res.content == "echo: hello"
    assert srv.count("/v1/chat/completions") == 5
    assert t.usage.retries == 4 and t.usage.calls == 1


def test_retry_after_is_honoured(srv, tmp_path):
    srv.fail(Fault.status(429, retry_after=0.4))
    t = make_teacher(srv, tmp_path)
    start = time.monotonic()
    [res] = t.run([req("x")])
    assert res.ok
    assert time.monotonic() - start >= 0.4


def test_truncated_body_and_dropped_connection_are_retried(srv, tmp_path):
    srv.fail(Fault.truncated())
    srv.fail(Fault.drop())
    t = make_teacher(srv, tmp_path)
    [res] = t.run([req("x")])
    assert res.ok
    assert srv.count("/v1/chat/completions") == 3


def test_timeout_is_retried(srv, tmp_path):
    srv.fail(Fault.slow(1.5))
    t = make_teacher(srv, tmp_path, timeout=0.3)
    [res] = t.run([req("x")])
    assert res.ok and t.usage.retries == 1


def test_retries_exhausted_is_a_per_call_failure_not_cached(srv, tmp_path):
    srv.fault_when(lambda body: "bad" in json.dumps(body), Fault.status(500))
    t = make_teacher(srv, tmp_path, max_retries=2)
    good, bad = t.run([req("good"), req("bad")])
    assert good.ok and not bad.ok and "http_500" in bad.error
    assert srv.prompt_counts() == {"good": 1}
    assert srv.count() == 1 + 3
    srv.clear_faults()
    t2 = make_teacher(srv, tmp_path)
    good2, bad2 = t2.run([req("good"), req("bad")])
    assert good2.cached and bad2.ok and not bad2.cached  # the failure was not cached


def test_wrong_key_is_a_clear_error_without_retries(srv, tmp_path):
    t = make_teacher(srv, tmp_path, api_key="sk-wrong")
    with pytest.raises(TeacherFatal) as e:
        t.run([req("x"), req("y")])
    assert "API key" in e.value.one_line() and "401" in e.value.one_line()
    assert srv.count() <= 2  # one per concurrent request at most, never retried


def test_unknown_model_is_a_clear_error(srv, tmp_path):
    t = make_teacher(srv, tmp_path, model="no-such-model")
    with pytest.raises(TeacherFatal) as e:
        t.run([req("x")])
    assert "no-such-model" in e.value.one_line() and "not found" in e.value.one_line()
    assert srv.count() == 1


def test_unreachable_teacher(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = TeacherConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        api_key_env=None,
        max_retries=1,
        backoff_base=0.01,
    )
    with pytest.raises(TeacherFatal, match="unreachable"):
        Teacher(cfg, progress=False).run([req("x")])


def test_missing_key_env_is_a_config_error(monkeypatch):
    monkeypatch.delenv("ZIMO_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="ZIMO_TEST_NO_SUCH_KEY"):
        Teacher(TeacherConfig(api_key_env="ZIMO_TEST_NO_SUCH_KEY"), progress=False)


def test_cache_makes_a_rerun_free(srv, tmp_path):
    reqs = [req(f"prompt {i}") for i in range(6)]
    first = make_teacher(srv, tmp_path).run(reqs)
    assert srv.count() == 6
    t2 = make_teacher(srv, tmp_path)
    second = t2.run(reqs)
    assert srv.count() == 6  # zero new calls
    assert [r.content for r in first] == [r.content for r in second]
    assert t2.usage.cached == 6 and t2.usage.calls == 0 and t2.usage.cost == 0
    # A different parameter is a different request.
    make_teacher(srv, tmp_path).run([req("prompt 0", temperature=0.0)])
    assert srv.count() == 7


def test_identical_requests_in_a_batch_are_sent_once(srv, tmp_path):
    res = make_teacher(srv, tmp_path, cache=False).run([req("same")] * 4)
    assert srv.count() == 1 and all(r.content == "echo: same" for r in res)


def test_usage_and_cost_per_call(tmp_path):
    with FakeOpenAI(lambda body: Reply("ok", prompt_tokens=1000, completion_tokens=500)) as s:
        t = make_teacher(s, tmp_path, price_in_per_1k=0.01, price_out_per_1k=0.03)
        [res] = t.run([req("x")])
    assert (res.prompt_tokens, res.completion_tokens) == (1000, 500)
    assert res.cost == pytest.approx(0.01 + 0.015)
    assert t.usage.cost == pytest.approx(0.025)


def test_bounded_concurrency_and_rpm(tmp_path):
    with FakeOpenAI(latency=0.15) as s:
        make_teacher(s, tmp_path, cache=False, max_concurrency=3).run(
            [req(f"c{i}") for i in range(9)]
        )
        assert 2 <= s.max_in_flight <= 3
    with FakeOpenAI() as s:
        start = time.monotonic()
        make_teacher(s, tmp_path, cache=False, requests_per_minute=600).run(
            [req(f"r{i}") for i in range(5)]
        )
        assert time.monotonic() - start >= 0.4  # 5 starts, 0.1 s apart


def test_budget_cap_stops_cleanly(tmp_path):
    with FakeOpenAI(lambda body: Reply("ok", prompt_tokens=100, completion_tokens=100)) as s:
        # 0.002 per call; the cap allows 3.
        t = make_teacher(
            s, tmp_path, price_in_per_1k=0.01, price_out_per_1k=0.01, max_cost=0.0065,
            max_concurrency=1,
        )  # fmt: skip
        res = t.run([req(f"b{i}") for i in range(10)])
        assert s.count() == 3
    assert sum(r.ok for r in res) == 3 and t.stopped == "budget"
    assert [r.error for r in res if not r.ok] == ["budget"] * 7
    assert t.usage.cost <= 0.0065
    # The cap is for the job: a rerun with the same cap buys nothing more; a higher cap goes on.
    with FakeOpenAI(lambda body: Reply("ok", prompt_tokens=100, completion_tokens=100)) as s:
        prices = dict(price_in_per_1k=0.01, price_out_per_1k=0.01, max_concurrency=1)
        again = make_teacher(s, tmp_path, max_cost=0.0065, **prices)
        assert sum(r.ok for r in again.run([req(f"b{i}") for i in range(10)])) == 3
        assert s.count() == 0 and again.usage.cached_cost == pytest.approx(0.006)
        more = make_teacher(s, tmp_path, max_cost=0.0105, **prices)
        assert sum(r.ok for r in more.run([req(f"b{i}") for i in range(10)])) == 5
        assert s.count() == 2


def test_canary_pii_never_reaches_a_remote_teacher(srv, tmp_path):
    records = [
        {
            "id": "a",
            "text": f"我的手机号是{CANARY_PHONE}，身份证号{CANARY_ID}，请帮我写一封投诉信。",
        },
        {
            "id": "b",
            "text": f"Email me at jane.doe@example.com or call +86 138-1234-5678. {CANARY_ID}",
        },
        {"id": "c", "text": f"no personal data here, except {VALID_ID}"},
    ]
    out = tmp_path / "out"
    summary = answer(records, out, make_teacher(srv, tmp_path))
    sent = json.dumps([r["body"] for r in srv.requests], ensure_ascii=False)
    assert srv.count() == 3
    for canary in (CANARY_PHONE, CANARY_ID, VALID_ID, "jane.doe@example.com", "138-1234-5678"):
        assert canary not in sent
    assert summary["produced"] == 3 and summary["redaction"]["texts_changed"] == 3
    data = (out / "data.parquet").read_bytes()
    assert CANARY_PHONE.encode() not in data and CANARY_ID.encode() not in data
    # Control: a teacher declared local does receive the text unchanged (the test can fail).
    srv.reset_counts()
    answer(records[:1], tmp_path / "out2", make_teacher(srv, tmp_path / "local", local=True))
    assert CANARY_PHONE in json.dumps(srv.requests[0]["body"], ensure_ascii=False)


def test_sync_run_works_inside_a_running_event_loop(srv, tmp_path):
    import asyncio

    async def inside() -> list:
        return make_teacher(srv, tmp_path).run([req("from a loop")])

    [res] = asyncio.run(inside())
    assert res.ok and res.content == "echo: from a loop"
