"""LabelScorer: label log-prob scoring, batching/padding invariance, prefix reuse, adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models_fixtures import SMS, gecko
from zimo.infer.label import LabelScorer, common_prefix, left_pad
from zimo.prompts import LabelPrompt

TEXTS = [t for _, t in SMS]


@pytest.fixture(scope="module")
def scorer():
    model, tok = gecko()
    return LabelScorer(model, tok, ["ham", "spam"], autocast=False)


def test_left_pad_positions():
    ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2


def test_prompt_answer_tokens_follow_the_template(scorer):
    tok = scorer.tokenizer
    p = scorer.prompt
    rendered = tok.decode(p.prompt_ids("hello"))
    assert rendered.endswith("<|im_start|>assistant\n")
    assert "You are a helpful AI assistant named SmolLM" not in rendered  # short system prompt
    assert [tok.decode(a) for a in p.label_ids] == ["ham<|im_end|>", "spam<|im_end|>"]
    ids, targets = p.example("hello", "spam")
    assert ids[-len(targets) + 1 :] == targets[:-1] and targets == p.label_ids[1]


def test_proba_rows_sum_to_one_and_order_is_kept(scorer):
    p = scorer.predict_proba(TEXTS, batch_size=3)
    assert p.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    # length-sorted batching must put results back in input order
    rev = scorer.predict_proba(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(rev[::-1], p, atol=1e-4)


def test_batch_padding_and_prefix_cache_do_not_change_scores(scorer):
    batched = scorer.log_scores(TEXTS, batch_size=8)
    single = np.stack([scorer.log_scores([t], batch_size=1)[0] for t in TEXTS[:3]])
    np.testing.assert_allclose(single, batched[:3], atol=1e-3)
    saved = scorer.prefix
    try:
        scorer.prefix = []  # plain full forward, no shared-prefix KV cache
        plain = scorer.log_scores(TEXTS, batch_size=8)
    finally:
        scorer.prefix = saved
    np.testing.assert_allclose(plain, batched, atol=1e-3)
    assert len(saved) > 20


def test_multi_token_path_matches_full_sequence_logprob(scorer):
    """General path: sum of answer-token log-probs, checked against a plain forward."""
    model, tok = scorer.model, scorer.tokenizer
    general = LabelScorer(model, tok, ["ham", "spam"], autocast=False)

    class AllTokens(LabelPrompt):
        first_tokens_distinct = False

    general.prompt.__class__ = AllTokens
    got = general.log_scores(TEXTS[:2], batch_size=2)
    for i, text in enumerate(TEXTS[:2]):
        for j, ans in enumerate(general.prompt.label_ids):
            seq = general.prompt.prompt_ids(text) + ans
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), -1)
            n = len(seq) - len(ans)
            want = sum(lp[n - 1 + k, t].item() for k, t in enumerate(ans))
            assert abs(got[i, j] - want) < 1e-3


def test_labels_sharing_first_token_use_full_answers(scorer):
    model, tok = scorer.model, scorer.tokenizer
    s = LabelScorer(model, tok, ["spam", "spammy"], autocast=False)
    assert not s.prompt.first_tokens_distinct
    p = s.predict_proba(TEXTS[:2])
    assert p.shape == (2, 2) and np.all(np.isfinite(p))


def test_scores_change_with_a_peft_adapter(scorer):
    from peft import LoraConfig, get_peft_model

    model, tok = scorer.model, scorer.tokenizer
    base_scores = scorer.log_scores(TEXTS[:2])
    torch.manual_seed(0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    try:
        s = LabelScorer(peft_model, tok, ["ham", "spam"], autocast=False)
        tuned = s.log_scores(TEXTS[:2])
        assert np.abs(tuned - base_scores).max() > 1e-3
    finally:
        peft_model.unload()  # restore the shared base model for other tests
    np.testing.assert_allclose(scorer.log_scores(TEXTS[:2]), base_scores, atol=1e-4)


def test_latency_measure(scorer):
    lat = scorer.measure_latency(TEXTS, n=3, warmup=1)
    assert lat["n"] == 3 and 0 < lat["p50_ms"] <= lat["p95_ms"] * 1.0001


def test_long_text_is_truncated(scorer):
    ids = scorer.prompt.prompt_ids("word " * 2000)
    assert len(ids) < scorer.prompt.max_text_tokens + 80
