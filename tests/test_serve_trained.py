"""A sub-model trained by `zimo build` (tiny SMS project), served from its project folder and
asked through the OpenAI SDK, answers exactly what the eval stage's scorer computes."""

from __future__ import annotations

import openai
import pytest

from project_fixtures import make_tiny_project
from serve_fixtures import LiveServer

pytestmark = pytest.mark.slow

SMS = [
    "Free entry in 2 a wkly comp to win FA Cup final tkts, text FA to 87121",
    "Ok lar... Joking wif u oni...",
    "WINNER!! You have been selected to receive a £900 prize reward! Call now",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight",
]


def test_served_trained_submodel_matches_eval_scorer(tmp_path, monkeypatch):
    from zimo.build import build
    from zimo.infer.label import LabelScorer
    from zimo.models import load_causal_lm
    from zimo.serve.app import create_app
    from zimo.serve.cli import settings_from_projects
    from zimo.serve.registry import discover_project

    monkeypatch.setenv("ZIMO_HOME", str(tmp_path / "home"))
    proj = make_tiny_project(tmp_path / "sms")
    build(proj, target="train")
    [sub] = discover_project(proj)
    assert sub.name == "tiny-sms" and sub.task == "label"

    model, tok = load_causal_lm("gecko", adapter=sub.adapter_dir)
    kw = {"system": sub.metadata["system"]} if "system" in sub.metadata else {}
    # fp32 like the server on CPU (the scorer may pick bf16 autocast on bf16 CPUs).
    scorer = LabelScorer(
        model, tok, sub.labels, sub.metadata.get("instruction"), autocast=False, **kw
    )
    if sub.metadata.get("max_text_tokens"):
        scorer.prompt.max_text_tokens = int(sub.metadata["max_text_tokens"])
    want = scorer.predict_proba(SMS)

    settings, roots = settings_from_projects([proj], {"backend": {"threads": 1}, "watch_s": None})
    with LiveServer(create_app(settings, projects=roots)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        for text, probs in zip(SMS, want, strict=True):
            r = client.chat.completions.create(
                model="tiny-sms", messages=[{"role": "user", "content": text}]
            )
            got = r.model_extra["zimo"]["label_probs"]
            assert r.choices[0].message.content == sub.labels[int(probs.argmax())]
            assert [got[lab] for lab in sub.labels] == pytest.approx(list(probs), abs=2e-3)
    assert settings.log_path().is_file()  # the project's own request log, for distillation
