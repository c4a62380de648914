"""The detector on the real embedded gecko-zh model: one-pass stats equal the plain reference,
scores point the right way, short texts are never flagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zimo.guard import GuardConfig
from zimo.guard.detect import Detector, load_scorer, pick_model, pick_threads, torch_threads
from zimo.guard.lm_stats import (
    compute_token_stats,
    merge_windows,
    reference_token_stats,
    tokenize,
    tokenize_windows,
)
from zimo.guard.scores import FEATURES, SIMPLE_SCORES, feature_matrix, needs_for, simple_score
from zimo.hw import cores as usable_cores

TEXTS = [
    "脂肪肝患者和正常人一样每天都要吃水果，只是量和品种稍微要调整，一般选含糖量比较低的水果。",
    "如果您的宝宝反复感冒咳嗽，我建议您尽快带宝宝去看医生。",
    "好的",
    "扁桃体变红可能是感染的症状，可能需要抗生素治疗。在看医生之前，您可以让宝宝多喝水，保持环境"
    "清新，并给宝宝适当的药物来缓解咳嗽和感冒症状。",
]


@pytest.fixture(scope="module")
def gecko_zh():
    # The detector picks its thread count (see pick_threads); direct calls here do the same, so
    # a busy shared machine does not make OpenMP threads spin-wait for each other.
    with torch_threads(pick_threads()):
        yield load_scorer("gecko-zh")


def test_pick_model_by_script():
    assert pick_model("这是一段中文文本") == "gecko-zh"
    assert pick_model("This is English text.") == "gecko"
    assert pick_model("") == "gecko"
    assert (
        pick_model("中央研究院天文及天文物理研究所 (Institute of Astronomy and Astrophysics)")
        == "gecko-zh"
    )


def test_batched_one_pass_equals_reference(gecko_zh):
    model, tok = gecko_zh
    ids = tokenize([TEXTS[0], TEXTS[2]], tok, token_budget=12)
    assert all(len(x) <= 13 for x in ids) and ids[0][0] == tok.bos_token_id
    assert len(ids[0]) > len(ids[1])
    fast = compute_token_stats(model, ids, batch_size=2)  # padding inside a batch
    for x, f in zip(ids, fast, strict=True):
        ref = reference_token_stats(model, x)
        assert f.n_tokens == ref.n_tokens == len(x) - 1
        np.testing.assert_allclose(f.logp, ref.logp, atol=2e-3)
        np.testing.assert_allclose(f.mu, ref.mu, atol=2e-3)
        np.testing.assert_allclose(f.var, ref.var, rtol=2e-2, atol=2e-3)
        # Comparison-count rank equals the argsort position (up to exact ties).
        assert np.abs(f.logrank - ref.logrank).max() < 0.7
        assert (np.abs(f.logrank - ref.logrank) < 1e-4).mean() > 0.9


def test_only_needed_statistics_are_computed(gecko_zh):
    model, tok = gecko_zh
    (s,) = compute_token_stats(model, tokenize(TEXTS[:1], tok, 16), need=needs_for("logrank"))
    assert s.logrank is not None and s.logp is None and s.mu is None and s.var is None


def test_bf16_copy_stays_close_and_leaves_the_fp32_model_alone(gecko_zh):
    model, tok = gecko_zh
    bf16, _ = load_scorer("gecko-zh", "bf16")
    # Weights cast once (no per-call autocast re-cast); the fp32 scorer is untouched and the
    # embedding stays fp32 even though Gemma ties it to the vocabulary projection.
    assert bf16.get_output_embeddings().weight.dtype == torch.bfloat16
    assert bf16.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_output_embeddings().weight.dtype == torch.float32
    ids = tokenize(TEXTS[:1], tok, 24)
    a = compute_token_stats(model, ids)
    b = compute_token_stats(bf16, ids, dtype=torch.bfloat16)
    for x, z in zip(a, b, strict=True):
        assert abs(x.logp.mean() - z.logp.mean()) < 0.15
        assert abs(x.logrank.mean() - z.logrank.mean()) < 0.3
        assert abs(x.mu.mean() - z.mu.mean()) < 0.15


@pytest.mark.slow
def test_scores_point_towards_machine_text(gecko_zh):
    """Greedy model output must look more machine-written than the same characters shuffled."""
    model, tok = gecko_zh
    enc = tok("问：脂肪肝患者能吃水果吗？\n答：", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=False, max_new_tokens=40)
    machine = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    chars = list(machine)
    np.random.default_rng(0).shuffle(chars)
    shuffled = "".join(chars)
    stats = compute_token_stats(model, tokenize([machine, shuffled], tok, 64))
    for name in ("loglik", "logrank", "fast_detectgpt", "binoculars"):
        m, h = (simple_score(name, s) for s in stats)
        assert m > h, name
    X = feature_matrix(stats)
    assert X.shape == (2, len(FEATURES)) and not np.isnan(X).any()


def test_detector_flags_nothing_below_min_tokens(gecko_zh):
    det = Detector(
        GuardConfig(
            model="gecko-zh",
            score="loglik",
            threshold=-100.0,
            min_tokens=20,
            token_budget=32,
            bf16="off",
        )
    )
    res = det.score(["好的", TEXTS[3], ""])
    assert [r.trusted for r in res] == [False, True, False]
    assert [r.flag for r in res] == [False, True, False]  # threshold -100: everything scores above
    assert np.isnan(res[2].score) and res[1].model == "gecko-zh"


def test_nothing_is_trusted_or_flagged_below_the_calibrations_minimum(gecko_zh, tmp_path):
    """guard.min_tokens lower than the calibration's minimum does not make short texts
    trusted: the calibration never measured a threshold on them."""
    from zimo.guard.calibration import build_calibration, save_calibration

    s = np.linspace(-10.0, -9.0, 200)  # every real text scores far above this threshold
    cal = build_calibration(
        {"loglik": s},
        np.array([0] * 100 + [1] * 100),
        np.full(200, 64),
        model="gecko-zh",
        token_budget=32,
        min_tokens=30,
        target_fpr=0.01,
    )
    path = save_calibration(cal, tmp_path / "cal.json")
    det = Detector(
        GuardConfig(
            model="gecko-zh",
            score="loglik",
            calibration=path,
            style_adapter="off",
            min_tokens=1,
            token_budget=32,
            bf16="off",
        )
    )
    assert det.min_tokens("gecko-zh") == 30
    short, long = det.score([TEXTS[1], TEXTS[3]])
    assert short.n_tokens < 30 <= long.n_tokens
    assert (short.trusted, short.flag) == (False, False)
    assert (long.trusted, long.flag) == (True, True)


def test_pooled_hidden_state_is_the_mean_over_scored_positions_batched_or_in_windows(gecko_zh):
    model, tok = gecko_zh
    ids = tokenize(TEXTS, tok, 32)
    stats = compute_token_stats(model, ids, need=("logp",), batch_size=4, pool_hidden=True)
    body = model.get_decoder()
    with torch.inference_mode():
        for st, x in zip(stats, ids, strict=True):
            h = body(input_ids=torch.tensor([x])).last_hidden_state[0, :-1]
            np.testing.assert_allclose(st.hidden, h.mean(0).numpy(), rtol=1e-3, atol=1e-4)
    # Windows: the merged vector is the token-weighted mean of the windows' vectors.
    wids, owner = tokenize_windows([TEXTS[3]], tok, window=20, max_tokens=60)
    parts = compute_token_stats(model, wids, need=("logp",), pool_hidden=True)
    (merged,) = merge_windows(parts, owner, 1)
    want = sum(p.hidden * p.n_tokens for p in parts) / sum(p.n_tokens for p in parts)
    np.testing.assert_allclose(merged.hidden, want, rtol=1e-5, atol=1e-6)
    assert compute_token_stats(model, ids[:1], need=("logp",))[0].hidden is None


def test_every_simple_score_is_finite(gecko_zh):
    model, tok = gecko_zh
    (s,) = compute_token_stats(model, tokenize(TEXTS[3:], tok, 32))
    for name in SIMPLE_SCORES:
        assert np.isfinite(simple_score(name, s)), name


def test_pick_threads_clamps_to_cores_and_torch_threads_restores():
    cores = usable_cores()
    assert pick_threads(1) == 1
    assert pick_threads(10_000) == cores  # never more threads than cores
    assert 1 <= pick_threads() <= cores  # auto: the idle cores, at least one
    # Our own recent load is not the neighbours': discounting it never gives fewer threads.
    assert pick_threads(own_load=cores) >= pick_threads()
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_long_text_is_scored_whole_in_windows(gecko_zh):
    """Every token up to max_tokens is scored, each window from a fresh BOS, and the merged
    per-token statistics equal those of the windows scored one by one."""
    model, tok = gecko_zh
    long_text = "".join(TEXTS) * 2
    n_all = len(tok(long_text, add_special_tokens=False)["input_ids"])
    ids, owner = tokenize_windows([TEXTS[2], long_text], tok, window=24, max_tokens=60)
    assert owner[0] == 0 and set(owner[1:]) == {1}
    assert all(w[0] == tok.bos_token_id and len(w) <= 25 for w in ids)
    # 60 tokens in windows of 24: 24+24, and the 12-token tail (< 16) is folded out.
    assert [len(w) - 1 for w in ids[1:]] == [24, 24] and n_all > 60
    stats = compute_token_stats(model, ids, need=("logp", "logrank"), batch_size=4)
    merged = merge_windows(stats, owner, 2)
    assert merged[1].n_tokens == 48 == merged[1].logp.size
    np.testing.assert_allclose(merged[1].logp[24:48], stats[2].logp)
    det = Detector(
        GuardConfig(
            model="gecko-zh",
            score="logrank",
            threshold=0.0,
            token_budget=24,
            max_tokens=60,
            bf16="off",
            threads=1,
        )
    )
    short, whole = det.score([TEXTS[2], long_text])
    assert whole.n_tokens == 48 and short.n_tokens == merged[0].n_tokens
    assert det.describe()["threads_used"] == 1
