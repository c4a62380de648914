"""Fast unit tests of the serving parts that need no model: keys, rate limits, stop strings,
the JSON automaton, config validation, project discovery."""

from __future__ import annotations

import json
import sqlite3

import pytest
from pydantic import ValidationError

from zimo.serve.config import ServeConfig
from zimo.serve.detok import TextStream
from zimo.serve.json_mode import JsonPrefix
from zimo.serve.keys import KeyStore
from zimo.serve.ratelimit import RateLimiter
from zimo.serve.registry import discover_project, load_submodel


def test_keys_hashed_verify_revoke(tmp_path):
    ks = KeyStore(tmp_path / "k.sqlite")
    key, rec = ks.create("svc", models=["a"], rate_per_minute=5)
    assert key.startswith(f"zk-{rec.id}-")
    got, why = ks.verify(key)
    assert got is not None and got.allows("a") and not got.allows("b") and why == ""
    assert ks.verify(key[:-1] + ("x" if key[-1] != "x" else "y"))[1] == "wrong"
    assert ks.verify("sk-nonsense")[1] == "malformed"
    secret = key.split("-", 2)[2]
    raw = (tmp_path / "k.sqlite").read_bytes()
    assert secret.encode() not in raw
    with sqlite3.connect(tmp_path / "k.sqlite") as db:
        assert db.execute("SELECT length(hash) FROM api_keys").fetchone()[0] == 32
    assert ks.revoke(rec.id) and not ks.revoke(rec.id)
    assert ks.verify(key) == (None, "revoked")
    assert ks.count_active() == 0 and len(ks.list()) == 1


def test_rate_limiter_bucket():
    rl = RateLimiter()
    assert [rl.check("k", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.check("k", 3)
    assert 0 < wait <= 20.0 and RateLimiter.retry_after(wait) == str(int(-(-wait // 1)))
    assert rl.check("other", 3) == 0.0 and rl.check("k", None) == 0.0


def _stream(text_pieces, stop):
    vocab = {i: p for i, p in enumerate(text_pieces)}
    ts = TextStream(lambda ids: "".join(vocab[i] for i in ids), stop)
    out = [ts.push(i) for i in range(len(text_pieces)) if not ts.stopped]
    return "".join(out) + ts.flush(), ts


def test_text_stream_stop_across_tokens():
    out, ts = _stream(["Hello", " wor", "ld", "END", "more"], ["ldEN"])
    assert out == "Hello wor" and ts.stopped
    out, ts = _stream(["a", "b", "c"], ["zz"])
    assert out == "abc" and not ts.stopped


def test_text_stream_holds_partial_characters():
    ts = TextStream(lambda ids: "你\ufffd" if len(ids) == 1 else "你好", [])
    assert ts.push(1) == "你" and ts.push(2) == "好"


@pytest.mark.parametrize(
    "text,ok,done",
    [
        ('{"a": 1, "b": [true, null, -2.5e3], "c": {"d": "x\\n"}}', True, True),
        ('{"a": "unterminated', True, False),
        ("[1, 2]", False, False),
        ('{"a" 1}', False, False),
        ('{"a": 01}', False, False),
        ('{"a": tru}', False, False),
        ('{"a": 1}}', False, True),
        ('{"a": 1,}', False, False),
        ("{" + " " * 20, False, False),
    ],
)
def test_json_prefix(text, ok, done):
    jp = JsonPrefix()
    assert jp.feed(text) is ok
    if ok:
        assert jp.done is done
        if done:
            json.loads(text)


def test_serve_config_forbids_typos():
    with pytest.raises(ValidationError):
        ServeConfig.model_validate({"limits": {"max_body_byte": 10}})
    with pytest.raises(ValidationError):
        ServeConfig.model_validate({"upstream": {"base_url": "ftp://x"}})
    cfg = ServeConfig.model_validate({"models": [{"name": "m", "adapter_dir": "/x"}]})
    assert cfg.models[0].task == "chat" and cfg.cors_origins == []


def test_discover_project_picks_newest_finished_artifact(tmp_path):
    train = tmp_path / ".zimo" / "artifacts" / "train"
    for i, name in enumerate(["old", "new", "unfinished"]):
        d = train / name
        (d / "adapter").mkdir(parents=True)
        (d / "adapter" / "adapter_config.json").write_text("{}")
        meta = {"name": "sms", "task": "label", "labels": ["ham", "spam"], "adapter": "adapter",
                "tag": name}  # fmt: skip
        (d / "zimo_model.json").write_text(json.dumps(meta))
        if name == "new":  # the label prompt training used, next to the adapter
            (d / "label_task.json").write_text(json.dumps({"system": None, "max_text_tokens": 99}))
        if name != "unfinished":
            (d / "manifest.json").write_text("{}")
            import os

            os.utime(d / "manifest.json", (1000 + i, 1000 + i))
    [sub] = discover_project(tmp_path)
    assert sub.name == "sms" and sub.metadata["tag"] == "new" and sub.labels == ["ham", "spam"]
    assert sub.metadata["system"] is None and sub.metadata["max_text_tokens"] == 99
    assert discover_project(tmp_path / "nowhere") == []
    with pytest.raises(ValueError):
        load_submodel(tmp_path)


def test_stacked_lora_matches_peft_mixed_batches():
    """Stacked LoRA (gather + bmm) gives PEFT's own mixed-adapter results, base rows included."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from zimo.serve.backends.stacked_lora import StackedLoRA

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False), adapter_name="x")  # fmt: skip
    peft.add_adapter("y", LoraConfig(r=4, lora_alpha=3, target_modules=["v_proj", "down_proj"], init_lora_weights=False))  # fmt: skip
    peft.eval()
    ids = torch.randint(0, 64, (4, 7))
    names = ["x", "__base__", "y", "x"]
    with torch.inference_mode():
        want = peft(input_ids=ids, adapter_names=names).logits
        assert StackedLoRA.supports(peft, "x") and StackedLoRA.supports(peft, "y")
        st = StackedLoRA(peft)
        st.rebuild(["x", "y"])
        st.set_rows(names, "cpu")
        got = peft(input_ids=ids).logits
        st.set_rows(["__base__"] * 4, "cpu")
        base = peft(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(base[1], want[1], atol=1e-5) and not torch.allclose(base[0], want[0])


def test_request_log_redacts_and_never_stores_text_when_told(tmp_path):
    from zimo.logs.requests import RequestLog, query
    from zimo.serve.service import ServeState, make_redactor

    cfg = ServeConfig.model_validate({"log": {"redact": True}})
    rlog = RequestLog(tmp_path / "r.sqlite")
    st = ServeState(cfg, None, None, None, None, request_log=rlog, redactor=make_redactor())
    secret = "mail me at jane.doe@example.com or 13812345678"
    st.log_request(model="m", status=200, messages=[{"role": "user", "content": secret}],
                   response=f"ok {secret}")  # fmt: skip
    st.settings = ServeConfig.model_validate({"log": {"store_text": False}})
    st.log_request(model="m", status=200, prompt=secret, response=secret)
    rows = query(tmp_path / "r.sqlite")
    stored = json.dumps(rows, ensure_ascii=False)
    assert "jane.doe@example.com" not in stored and "13812345678" not in stored
    # Both rows may carry the same timestamp, so find each by what it holds, not by order.
    assert len(rows) == 2
    with_text = [r for r in rows if r["response"] is not None]
    without = [r for r in rows if r["prompt"] is None and r["response"] is None]
    assert len(with_text) == 1 and with_text[0]["redacted"] and len(without) == 1
    rlog.close()


def test_request_timeout_is_504_and_cancels_the_job():
    import asyncio

    from zimo.serve.backends.base import Job, SamplingParams
    from zimo.serve.errors import APIError
    from zimo.serve.service import ServeState

    st = ServeState(ServeConfig.model_validate({"limits": {"request_timeout_s": 0.05}}),
                    None, None, None, None)  # fmt: skip

    async def go():
        job = Job("m", [1, 2], SamplingParams())  # nobody runs it: it must time out
        with pytest.raises(APIError) as e:
            await st.wait(job)
        return e.value, job

    err, job = asyncio.run(go())
    assert err.status == 504 and job.cancelled.is_set()
