"""The flywheel: traffic through `zimo serve` (gateway mode) → request log → `distill` records.

Slow (the server loads the embedded base model at start, ~20 s on 2 busy cores).
"""

from __future__ import annotations

import os

import openai
import pytest

from fake_openai import FakeOpenAI
from zimo.dataset_io import read_records
from zimo.logs.requests import RequestLog
from zimo.synth.config import DistillOptions
from zimo.synth.distill import distill


@pytest.mark.slow
def test_gateway_traffic_becomes_training_data(tmp_path):
    from serve_fixtures import LiveServer
    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    def big(body: dict) -> str:
        return "big answer to: " + body["messages"][-1]["content"]

    log_path = tmp_path / "requests.sqlite"
    with FakeOpenAI(big, models=("big-model",)) as upstream:
        os.environ["ZIMO_TEST_FLYWHEEL_KEY"] = upstream.api_key
        cfg = ServeConfig(
            models=[],
            serve_base=False,
            embeddings=False,
            upstream={
                "base_url": upstream.base_url,
                "api_key_env": "ZIMO_TEST_FLYWHEEL_KEY",
                "models": ["big-model"],
            },
            keys_db=str(tmp_path / "keys.sqlite"),
            log={"path": str(log_path)},
            watch_s=None,
        )
        with LiveServer(create_app(cfg)) as srv:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="local", max_retries=0)
            for q in ["What is VAT?", "What is VAT?", "Call me on 13812345678", "Bad one"]:
                client.chat.completions.create(
                    model="big-model", messages=[{"role": "user", "content": q}]
                )
    with RequestLog(log_path) as log:
        rows = log.query()
        assert len(rows) == 4
        bad = next(r for r in rows if r["messages"][0]["content"] == "Bad one")
        assert log.set_feedback(bad["id"], -1)
    summary = distill(log_path, tmp_path / "out", DistillOptions(models=["big-model"]))
    assert summary["filtered_by_reason"] == {"duplicate_prompt": 1, "feedback": 1}
    records = read_records(tmp_path / "out" / "data.parquet")
    assert [r["messages"][0]["content"] for r in records] == ["What is VAT?", "Call me on <PHONE>"]
    assert records[1]["messages"][1]["content"] == "big answer to: Call me on <PHONE>"
    assert all(
        r["meta"]["origin"] == "log" and r["meta"]["generator"] == "big-model" for r in records
    )
