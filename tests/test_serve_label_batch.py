"""Label requests through the gateway over real HTTP: concurrent requests for two label
sub-models are micro-batched, scored after each sub-model's cached prompt prefix, and give the
same probabilities as a plain full-prompt forward of the same adapter."""

from __future__ import annotations

import threading

import openai
import pytest
import torch

from models_fixtures import SMS
from serve_fixtures import AdapterSpec, LiveServer, make_adapters, submodel_entry
from zimo.serve.app import create_app
from zimo.serve.config import ServeConfig

TEXTS = [t for _, t in SMS[:6]]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("label-batch")
    ads = make_adapters(
        root / "adapters",
        [
            AdapterSpec("sms1", seed=11, task="label", labels=["ham", "spam"]),
            AdapterSpec(
                "sms2",
                seed=12,
                task="label",
                labels=["ham", "spam"],
                instruction="Is this text spam? Answer ham or spam.",
            ),  # fmt: skip
        ],
    )
    cfg = ServeConfig(
        models=[submodel_entry(ads[n]) for n in ("sms1", "sms2")],
        backend={"threads": 1, "batching": {"max_wait_ms": 50}},
        log={"path": str(root / "requests.sqlite")},
        watch_s=None,
    )
    with LiveServer(create_app(cfg)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
        yield {"client": client, "adapters": ads}


def _label(env, model, text):
    r = env["client"].chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=4, temperature=0
    )
    z = r.model_extra["zimo"]
    return r.choices[0].message.content, z["label_probs"]["spam"], z["batch_size"]


def _plain_p_spam(adapter_dir, instruction, texts):
    """P(spam) from a plain full-prompt forward of gecko + the adapter (no prefix cache)."""
    from peft import PeftModel

    from zimo.infer.label import LabelScorer
    from zimo.models import load_causal_lm

    model, tok = load_causal_lm("gecko")
    model = PeftModel.from_pretrained(model, str(adapter_dir / "adapter")).eval()
    scorer = LabelScorer(model, tok, ["ham", "spam"], instruction, autocast=False)
    scorer.prefix = []  # whole prompts in one forward each
    with torch.inference_mode():
        return scorer.predict_proba(texts, batch_size=1)[:, 1]


@pytest.mark.slow
def test_concurrent_label_requests_are_batched_and_match_plain_forward(env):
    jobs = [(m, t) for t in TEXTS for m in ("sms1", "sms2")]
    results: dict[int, tuple] = {}
    barrier = threading.Barrier(len(jobs))

    def call(i, model, text):
        barrier.wait()
        results[i] = _label(env, model, text)

    threads = [threading.Thread(target=call, args=(i, *j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(jobs)
    assert max(r[2] for r in results.values()) >= 2  # the micro-batcher grouped them
    instr = {"sms1": None, "sms2": "Is this text spam? Answer ham or spam."}
    for model in ("sms1", "sms2"):
        want = _plain_p_spam(env["adapters"][model], instr[model], TEXTS)
        got = [results[i][1] for i, (m, _) in enumerate(jobs) if m == model]
        assert got == pytest.approx(list(want), abs=2e-3), model
    # One request alone (batch 1, the cached prefix reused) gives the batched answer.
    solo = _label(env, "sms2", TEXTS[0])
    assert solo[1] == pytest.approx(results[1][1], abs=2e-3)
