"""`model: "auto"` through the OpenAI SDK: a fitted router picks the tier per request, and the
response and the request log say which tier answered and whether it escalated."""

from __future__ import annotations

import json

import openai
import pytest

from fake_openai import FakeOpenAI
from project_fixtures import run_zimo
from route_fixtures import small_outcome_dir
from serve_fixtures import LiveServer

ROUTE_YAML = """\
name: routed
task: chat
data: {path: data/none.jsonl}
route:
  outcomes: outcomes
  tiers:
    - {name: weak, model: gecko, price_per_1k_tokens: 0.0001}
    - {name: strong, model: big-model, price_per_1k_tokens: 0.01}
  target: {quality: 0.9}
  router: ROUTER
"""


# The length router (no embedder), and the default ensemble on an LM cut (gecko@6 keeps the
# test quick; the default picks gecko@12 or MiniLM): loaded and warmed when the server starts.
@pytest.mark.parametrize(
    "router", ["{kind: length}", "{kind: ensemble, folds: 3, embedder: gecko@6}"]
)
def test_auto_routes_between_local_and_upstream(tmp_path, router):
    # The tiers' outcome columns must be named after the tiers.
    src = small_outcome_dir(tmp_path / "raw", per_subject=30)
    out = tmp_path / "outcomes"
    out.mkdir()
    for f in src.glob("*.csv"):
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
        (out / f.name).write_text("prompt,weak,strong\n" + "".join(lines[1:]), encoding="utf-8")
    (tmp_path / "zimo.yaml").write_text(ROUTE_YAML.replace("ROUTER", router), encoding="utf-8")
    r = run_zimo("route", "fit", tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / ".zimo" / "route" / "router.json").read_text())
    assert meta["embedder"] == (None if "length" in router else "gecko@6")

    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    with FakeOpenAI(lambda body: "upstream answer", models=["big-model"]) as up:
        cfg = ServeConfig.model_validate(
            {
                "keys_db": str(tmp_path / "keys.sqlite"),
                "log": {"path": str(tmp_path / "requests.sqlite")},
                "upstream": {"base_url": up.base_url, "api_key_env": "FAKE_UP_KEY"},
                "watch_s": None,
                "embeddings": False,
            }
        )
        import os

        os.environ["FAKE_UP_KEY"] = up.api_key
        with LiveServer(create_app(cfg, projects=[tmp_path])) as srv:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none")
            short = "What is 2+2?"
            long = "Consider the following argument in formal logic. " * 30 + "Is it valid?"
            tiers = {}
            for prompt in (short, long):
                raw = client.chat.completions.with_raw_response.create(
                    model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=4
                )
                resp = raw.parse()
                z = resp.model_extra["zimo"]
                tiers[prompt] = z["route"]["tier"]
                assert z["escalated"] == (z["route"]["tier"] == "strong")
                assert raw.headers["x-zimo-model"] in ("gecko", "big-model")
            if "length" in router:
                # The length router sends the long prompt to a tier at least as strong.
                order = ["weak", "strong"]
                assert order.index(tiers[long]) >= order.index(tiers[short])
    from zimo.logs.requests import query

    rows = query(tmp_path / "requests.sqlite", model="auto")
    assert len(rows) == 2 and all(r["answered_by"] in ("gecko", "big-model") for r in rows)
