"""Schemathesis against a live `zimo serve`: every operation of /openapi.json, valid and invalid
inputs generated from the document, must never get a server error, and every error must be
OpenAI-shaped. Slow (a few minutes on 2 cores): CI's slow suite runs it."""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from serve_fixtures import LiveServer  # noqa: E402
from zimo.serve.app import create_app  # noqa: E402
from zimo.serve.config import ServeConfig  # noqa: E402
from zimo.serve.keys import KeyStore  # noqa: E402

EXAMPLES = 100  # per operation and mode


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(tmp_path):
    keys = KeyStore(tmp_path / "keys.sqlite")
    admin, _ = keys.create("fuzzer", admin=True)
    cfg = ServeConfig(
        backend={"threads": 1},
        limits={"max_new_tokens": 2, "default_max_tokens": 1, "max_prompt_tokens": 128},
        keys_db=str(tmp_path / "keys.sqlite"),
        log={"path": str(tmp_path / "requests.sqlite")},
        watch_s=None,
        embeddings=False,
    )
    headers = {"authorization": f"Bearer {admin}"}
    seen: dict[str, int] = {}
    failures: list[str] = []
    with LiveServer(create_app(cfg)) as srv:
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        ops = [r.ok() for r in schema.get_all_operations()]
        assert len(ops) >= 20
        for op in ops:
            if op.path.endswith("/train/stream"):
                continue  # an endless event stream (it 404s without projects anyway)
            for mode in schemathesis.GenerationMode:
                _fuzz(op, mode, srv.url, headers, seen, failures)
    keys.close()
    assert not failures, "\n".join(failures[:20])
    assert sum(seen.values()) >= 500, seen
    assert statuses.get(200, 0) >= 50, statuses  # valid requests were answered too
    print(f"schemathesis: {sum(seen.values())} cases, statuses {sorted(statuses.items())}")


statuses: dict[int, int] = {}


def _fuzz(op, mode, url: str, headers: dict, seen: dict, failures: list) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case):
        r = case.call(base_url=url, headers=headers, timeout=120)
        seen[op.label] = seen.get(op.label, 0) + 1
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if r.status_code >= 500:
            failures.append(f"{op.label} {r.status_code} {r.text[:300]}")
        elif r.status_code >= 400:
            err = r.json().get("error") or {}
            if set(err) != {"message", "type", "param", "code"}:
                failures.append(f"{op.label} {r.status_code} not OpenAI-shaped: {r.text[:200]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
        assert mode is schemathesis.GenerationMode.NEGATIVE
