"""The no-bf16 inference path: int8 base weights (choice per CPU kind, agreement with fp32,
LoRA on top) and the label scorer's reusable prefix KV cache."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models_fixtures import SMS, gecko
from zimo.infer import fastpath
from zimo.infer.label import LabelScorer, expand_cache

TEXTS = [t for _, t in SMS]

pytestmark = pytest.mark.skipif(
    not fastpath.int8_available(), reason="this torch build has no x86 int8 kernels"
)


def test_int8_linear_matches_fp32_and_stays_a_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 96)
    q = fastpath.Int8Linear(lin)
    x = torch.randn(3, 5, 64)
    want, got = lin(x), q(x)
    assert got.shape == want.shape
    rel = (got - want).norm() / want.norm()
    assert rel < 0.02, rel  # 8-bit weights and 7-bit activations: ~1% error, not garbage
    assert rel > 0  # it really is a different (quantised) kernel
    assert isinstance(q, torch.nn.Linear) and q.weight.numel() == 0
    # Smoothing with activation maxima keeps it accurate when some channels are 50x larger.
    x = torch.randn(40, 64)
    x[:, :3] *= 50
    plain = (fastpath.Int8Linear(lin)(x) - lin(x)).norm() / lin(x).norm()
    smooth = (fastpath.Int8Linear(lin, x.abs().amax(0))(x) - lin(x)).norm() / lin(x).norm()
    assert smooth < plain and smooth < 0.02


def test_default_per_cpu_kind_and_override(monkeypatch):
    """int8 where the CPU has no fast bf16 (the AVX2 kind), fp32/bf16 where it has;
    ZIMO_INT8=0/1 overrides either way; never on a GPU."""
    lin = torch.nn.Sequential(torch.nn.Linear(32, 64))
    monkeypatch.delenv("ZIMO_INT8", raising=False)
    monkeypatch.setenv("ZIMO_BF16", "0")  # what zimo.hw reports on an AVX2-only CPU
    assert fastpath.int8_choice(lin)["int8"] is True
    assert "bf16" in fastpath.int8_choice(lin)["reason"]
    assert fastpath.int8_choice(lin, device="cuda")["int8"] is False
    monkeypatch.setenv("ZIMO_INT8", "0")
    assert fastpath.int8_choice(lin) == {"int8": False, "reason": "ZIMO_INT8=0"}
    monkeypatch.delenv("ZIMO_INT8")
    monkeypatch.setenv("ZIMO_BF16", "1")  # an AVX512-BF16 / AMX CPU
    assert fastpath.int8_choice(lin)["int8"] is False
    monkeypatch.setenv("ZIMO_INT8", "1")
    assert fastpath.int8_choice(lin)["int8"] is True
    model = torch.nn.Sequential(torch.nn.Linear(32, 64))
    assert fastpath.prepare_for_cpu_inference(model)["layers"] == 1
    assert fastpath.is_int8(model)
    probe = fastpath.int8_probe(32, 64)
    for rows in (1, 32):
        assert probe[f"rows{rows}_us"]["fp32"] > 0 and probe[f"rows{rows}_us"]["int8"] > 0


def test_kept_float_weights_run_only_inside_float_weights():
    """An engine that also generates keeps the float weights for its one-token steps."""
    import threading

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 96)
    q = fastpath.Int8Linear(lin, keep_float=True)
    assert q.fweight.data_ptr() == lin.weight.data_ptr()  # kept, not copied
    x = torch.randn(2, 5, 64)
    with torch.inference_mode():
        quantised = q(x)
        assert not torch.equal(quantised, lin(x))
        seen = {}
        with fastpath.float_weights():
            assert torch.equal(q(x), lin(x))
            # Another thread (a second engine's worker) keeps running int8.
            t = threading.Thread(target=lambda: seen.update(y=q(x)))
            t.start()
            t.join()
        assert torch.equal(seen["y"], quantised)
        assert torch.equal(q(x), quantised)  # back to int8 after the block
    # Without keep_float the block changes nothing (there is no float weight to use).
    plain = fastpath.Int8Linear(lin)
    with torch.inference_mode(), fastpath.float_weights():
        assert plain.fweight is None and not torch.equal(plain(x), lin(x))


def test_quantize_skips_head_and_lora_matrices():
    from peft import LoraConfig, get_peft_model

    model, _ = gecko()
    m = copy.deepcopy(model)
    peft = get_peft_model(m, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    n = fastpath.quantize_base_int8(peft)
    layers = model.config.num_hidden_layers
    assert n == layers * 7  # q k v o gate up down of every layer, not lm_head, not lora_A/B
    lora = peft.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(lora.base_layer, fastpath.Int8Linear)
    assert type(lora.lora_A["default"]) is torch.nn.Linear
    assert type(peft.get_output_embeddings()) is torch.nn.Linear
    assert fastpath.is_int8(peft)


@pytest.fixture(scope="module")
def fp32_and_int8():
    model, tok = gecko()
    q = copy.deepcopy(model)
    fastpath.quantize_base_int8(q, tok)
    return (model, q), tok


def test_int8_labels_track_fp32(fp32_and_int8):
    """Not equal (int8 is chosen only where the CPU has no fast bf16), but the same scorer,
    not noise."""
    (model, q), tok = fp32_and_int8
    texts = [t for lab, t in SMS]
    want = LabelScorer(model, tok, ["ham", "spam"], autocast=False).log_scores(texts)
    got = LabelScorer(q, tok, ["ham", "spam"], autocast=False, frozen=True).log_scores(texts)
    diff = want[:, 1] - want[:, 0]
    assert np.corrcoef(diff, got[:, 1] - got[:, 0])[0, 1] > 0.8


def test_lora_on_an_int8_base_runs_and_changes_outputs(fp32_and_int8):
    """PEFT wraps the int8 layers like any Linear (what the serving engine does)."""
    from peft import LoraConfig, get_peft_model

    (_, q), tok = fp32_and_int8
    torch.manual_seed(1)
    peft = get_peft_model(
        copy.deepcopy(q),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    ids = torch.tensor([tok("hello there")["input_ids"]])
    with torch.inference_mode():
        with_lora = peft(input_ids=ids).logits
        with peft.disable_adapter():
            without = peft(input_ids=ids).logits
        base = q(input_ids=ids).logits
    torch.testing.assert_close(without, base)
    assert (with_lora - base).abs().max() > 1e-3


def test_frozen_scorer_reuses_prefix_without_mutating_it(fp32_and_int8):
    (model, _), tok = fp32_and_int8
    sc = LabelScorer(model, tok, ["ham", "spam"], autocast=False, frozen=True)
    first = sc.log_scores(TEXTS[:4], batch_size=2)
    kv = sc._prefix_kv
    snap = [(lay.keys.clone(), lay.values.clone()) for lay in kv.layers]
    again = np.stack([sc.log_scores([t], batch_size=1)[0] for t in TEXTS[:4]])
    assert sc._prefix_kv is kv  # computed once, reused by every later call
    for (k, v), lay in zip(snap, kv.layers, strict=True):
        assert torch.equal(k, lay.keys) and torch.equal(v, lay.values)
    np.testing.assert_allclose(again, first, atol=1e-3)
    # expand_cache: views of the prefix (no copy), a new layer list
    big = expand_cache(kv, 3)
    assert big.layers[0].keys.shape[0] == 3 and big.layers[0].keys.data_ptr() == (
        kv.layers[0].keys.data_ptr()
    )
    # A scorer that is not frozen recomputes the prefix every call (weights may change).
    plain = LabelScorer(model, tok, ["ham", "spam"], autocast=False)
    plain.log_scores(TEXTS[:1], batch_size=1)
    kv1 = plain._prefix_kv
    plain.log_scores(TEXTS[:1], batch_size=1)
    assert plain._prefix_kv is not kv1


def test_frozen_scorer_follows_disable_adapter(fp32_and_int8):
    from peft import LoraConfig, get_peft_model

    (model, _), tok = fp32_and_int8
    torch.manual_seed(2)
    peft = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    sc = LabelScorer(peft, tok, ["ham", "spam"], autocast=False, frozen=True)
    tuned = sc.log_scores(TEXTS[:3])
    with peft.disable_adapter():
        off = sc.log_scores(TEXTS[:3])
    want_off = LabelScorer(model, tok, ["ham", "spam"], autocast=False).log_scores(TEXTS[:3])
    np.testing.assert_allclose(off, want_off, atol=1e-3)
    assert np.abs(tuned - off).max() > 1e-3
    np.testing.assert_allclose(sc.log_scores(TEXTS[:3]), tuned, atol=1e-3)


def test_engine_labels_in_int8_and_generates_with_float_weights(monkeypatch):
    """The serving engine on the int8 base: label requests track the fp32 engine's (the
    untuned base has small margins, so not row for row), greedy generation is token for token
    the fp32 engine's (its steps run the kept float weights)."""
    import asyncio

    from zimo.serve.backends.base import Job, SamplingParams
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig, SubModel

    cls = SubModel(name="cls", metadata={"task": "label", "labels": ["ham", "spam"]})
    out = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("ZIMO_INT8", flag)
        be = make_backend(BackendConfig(kind="transformers", base="gecko", threads=1))
        be.start()
        try:
            be.add_model(cls)
            be.add_model(SubModel(name="gecko"))

            def job(model, text, be=be, **params):
                ids = be.encode_chat(model, [{"role": "user", "content": text}])
                kind = "label" if model == "cls" else "generate"
                return be.submit(Job(model, ids, SamplingParams(**params), kind=kind))

            async def run():
                jobs = [job("cls", t) for t in TEXTS]
                gen = job("gecko", "Name a colour.", max_tokens=8, temperature=0.0)
                return [await j.future for j in jobs], await gen.future

            out[flag] = asyncio.run(run()), be.stats()["int8"]
        finally:
            be.close()
    ((labels32, gen32), int8_32), ((labels8, gen8), int8_8) = out["0"], out["1"]
    assert (int8_32, int8_8) == (False, True)
    assert gen8.text == gen32.text and gen8.completion_tokens == gen32.completion_tokens
    p32 = np.array([r.label_probs["spam"] for r in labels32])
    p8 = np.array([r.label_probs["spam"] for r in labels8])
    assert np.corrcoef(np.log(p32 / (1 - p32)), np.log(p8 / (1 - p8)))[0, 1] > 0.8
    assert np.abs(p32 - p8).max() > 1e-4  # the label path really ran int8


def test_linears_reading_one_input_share_one_int8_gemm(fp32_and_int8):
    """q/k/v and gate/up are stacked into one int8 GEMM each (the default); the result tracks
    the unstacked int8 model and fp32, and the shared output is dropped once every part read
    it (a batch must not keep a layer's activations alive)."""
    (model, q), tok = fp32_and_int8
    attn, mlp = q.model.layers[0].self_attn, q.model.layers[0].mlp
    assert all(isinstance(m, fastpath.Int8Part) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
    assert attn.q_proj.shared is attn.k_proj.shared is attn.v_proj.shared
    assert mlp.gate_proj.shared is mlp.up_proj.shared is not attn.q_proj.shared
    assert type(attn.o_proj) is fastpath.Int8Linear and type(mlp.down_proj) is fastpath.Int8Linear
    assert fastpath.is_int8(q)
    single = copy.deepcopy(model)
    fastpath.quantize_base_int8(single, tok, stack=False)
    assert not any(isinstance(m, fastpath.Int8Part) for m in single.modules())
    # The median over several messages: one message's logit error moves by half between two
    # int8 kernels that round differently (0.09 vs 0.15 on one 13-token message).
    errs: dict[str, list[float]] = {"one": [], "stacked": []}
    with torch.inference_mode():
        for text in TEXTS:
            ids = torch.tensor([tok(text)["input_ids"]])
            want, one, stacked = (m(input_ids=ids).logits[0, -1] for m in (model, single, q))
            errs["one"].append(float((one - want).norm() / want.norm()))
            errs["stacked"].append(float((stacked - want).norm() / want.norm()))
    assert attn.q_proj.shared.memo is None and mlp.up_proj.shared.memo is None
    err = {k: float(np.median(v)) for k, v in errs.items()}
    assert err["stacked"] < 0.3 and err["stacked"] < 2 * err["one"] + 1e-3
    # Float weights kept per part serve generation exactly.
    kept = copy.deepcopy(model)
    fastpath.quantize_base_int8(kept, tok, keep_float=True)
    with torch.inference_mode(), fastpath.float_weights():
        torch.testing.assert_close(kept(input_ids=ids).logits, model(input_ids=ids).logits)


def test_label_head_scores_match_the_full_vocabulary_softmax(fp32_and_int8):
    """Label scores from the labels' head rows alone give the probabilities of the full
    log-softmax over the vocabulary (the normaliser cancels), on the prefix-cached path and on
    whole prompts; a wrapped head falls back to the full logits."""
    from peft import LoraConfig, get_peft_model

    from zimo.infer.label import label_head

    (model, _), tok = fp32_and_int8
    sc = LabelScorer(model, tok, ["ham", "spam"], autocast=False, frozen=True)
    assert sc._head is not None
    fast = sc.predict_proba(TEXTS, batch_size=3)
    first = [a[0] for a in sc.prompt.label_ids]
    with torch.inference_mode():
        for i, text in enumerate(TEXTS[:3]):
            lp = torch.log_softmax(model(torch.tensor([sc.prompt.prompt_ids(text)])).logits[0, -1], -1)  # fmt: skip
            want = torch.softmax(lp[first], -1).numpy()
            np.testing.assert_allclose(fast[i], want, atol=1e-4)
    sc._head = None  # the full-vocabulary path gives the same probabilities
    np.testing.assert_allclose(sc.predict_proba(TEXTS, batch_size=3), fast, atol=1e-4)
    peft = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"]),
    )
    assert label_head(peft, first) is None


def test_head_rows_computes_only_the_asked_rows_and_restores_the_head(fp32_and_int8):
    """The serving engine's label path: inside ``head_rows`` the logits are the given
    vocabulary rows of the full logits, in that order; the head is back afterwards, also when
    the block raises."""
    from zimo.infer.label import head_rows

    (model, _), tok = fp32_and_int8
    ids = torch.tensor([tok("see you at 5")["input_ids"]])
    head = model.get_output_embeddings()
    rows = [17, 3, 40000]
    with torch.inference_mode():
        full = model(input_ids=ids, logits_to_keep=1).logits[0, -1]
        with head_rows(model, rows) as only:
            part = model(input_ids=ids, logits_to_keep=1).logits[0, -1]
        assert only is True and part.shape == (3,)
        torch.testing.assert_close(part, full[rows], rtol=1e-4, atol=1e-4)
        with pytest.raises(RuntimeError), head_rows(model, rows):
            raise RuntimeError("boom")
    assert model.get_output_embeddings() is head


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("targets", [ALL_LINEAR, ["q_proj", "v_proj"]])
def test_merged_int8_tracks_the_unmerged_path_and_shares_the_rest(
    fp32_and_int8, targets, monkeypatch
):
    """A fixed adapter merged into the base before int8 quantisation: the same probabilities
    as merging in float and quantising the whole model, tracking fp32 like LoRA on the int8
    base; only the adapted layers are new (a partly adapted q/k/v group is requantised
    whole), the rest is the unmerged model's own modules and tensors, which keeps working
    with the adapter disabled."""
    from peft import LoraConfig, get_peft_model

    (model, _), tok = fp32_and_int8
    torch.manual_seed(3)
    top = model.config.num_hidden_layers - 2
    cfg = LoraConfig(r=4, target_modules=targets, layers_to_transform=[top, top + 1],
                     init_lora_weights=False)  # fmt: skip
    fp32 = get_peft_model(copy.deepcopy(model), cfg)
    with torch.no_grad():  # a trained adapter's size: outputs move, not explode
        for n, p in fp32.named_parameters():
            if "lora_B" in n:
                p.mul_(0.1)
    peft = copy.deepcopy(fp32)
    monkeypatch.setenv("ZIMO_INT8", "1")  # the int8 path on any CPU kind
    tuned, choice = fastpath.prepare_for_label_scoring(peft, tok, merge=True)
    assert choice["int8"] and choice["merged"]
    assert tuned is not None and not hasattr(tuned, "peft_config")
    assert not any(hasattr(m, "lora_A") for m in tuned.modules())
    assert all(m.fweight is None for m in peft.modules() if isinstance(m, fastpath.Int8Linear))
    lm = peft.get_base_model()
    # Shared: embeddings, head, the unadapted layers (the very same modules).
    assert tuned.model.embed_tokens is lm.model.embed_tokens
    assert tuned.get_output_embeddings() is lm.get_output_embeddings()
    assert tuned.model.layers[0] is lm.model.layers[0]
    attn = tuned.model.layers[top].self_attn
    assert attn is not lm.model.layers[top].self_attn
    assert all(isinstance(m, fastpath.Int8Part) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
    assert attn.q_proj.shared is attn.k_proj.shared is attn.v_proj.shared
    mlp = tuned.model.layers[top].mlp
    assert (mlp is lm.model.layers[top].mlp) == (targets != ALL_LINEAR)
    labels = ["ham", "spam"]
    kw = dict(autocast=False, frozen=True)
    p_merged = LabelScorer(tuned, tok, labels, **kw).predict_proba(TEXTS)
    p_lora = LabelScorer(peft, tok, labels, **kw).predict_proba(TEXTS)
    p_fp32 = LabelScorer(fp32, tok, labels, **kw).predict_proba(TEXTS)
    with peft.disable_adapter():
        p_base = LabelScorer(peft, tok, labels, **kw).predict_proba(TEXTS)
    # The copy is what merging in float and quantising the whole model gives.
    full = copy.deepcopy(fp32).merge_and_unload()
    fastpath.quantize_base_int8(full, tok)
    p_full = LabelScorer(full, tok, labels, **kw).predict_proba(TEXTS)
    # Float order flips a rounding here and there. Where the int8 GEMM saturates (no VNNI)
    # weights have 7 bits, so each flip moves twice as far: 0.023 at most on the emulated
    # AVX2 kind, where int8 itself sits 0.21 from fp32 on these near-even untuned margins.
    # With 8-bit weights 0.008 at most on fbgemm's GEMM (natively on an AVX512-VNNI Xeon).
    fb = fastpath.fbgemm_dynamic()
    atol = 0.01 if (fb["qmax"] if fb else fastpath.weight_qmax()) == 127 else 0.03
    np.testing.assert_allclose(p_merged, p_full, atol=atol)
    # It tracks fp32 as the unmerged int8 path does (the untuned base's margins are small, so
    # log-odds, not labels), and the adapter really is in it.
    lo = lambda p: np.log(p[:, 1] / p[:, 0])  # noqa: E731
    for p in (p_merged, p_lora):
        assert np.corrcoef(lo(p), lo(p_fp32))[0, 1] > 0.8
    assert np.abs(p_merged - p_base).max() > 0.01


def test_int8_weights_fit_the_gemm_the_cpu_has():
    """Without VNNI the int8 GEMM saturates 16-bit pair sums; weights then get 7 bits and a
    worst-case row (every activation and weight at its largest) still adds up exactly."""
    qmax = fastpath.weight_qmax()
    assert qmax in (127, 63)
    a = torch.full((3, 576), 127, dtype=torch.int8)
    a[1] = -127
    b = torch.full((16, 576), qmax, dtype=torch.int8).T
    assert (torch._int_mm(a, b)[:2] == torch.tensor([[127 * qmax * 576], [-127 * qmax * 576]])).all()  # fmt: skip
    lin = torch.nn.Linear(576, 16)
    fb = fastpath.fbgemm_dynamic()
    assert int(fastpath.Int8Linear(lin).int8_weight().abs().max()) == (fb["qmax"] if fb else qmax)


@pytest.fixture
def fbgemm_forced(monkeypatch):
    """fbgemm on any CPU kind (by default only where ``_int_mm`` saturates)."""
    monkeypatch.setenv("ZIMO_FBGEMM", "1")
    fastpath.fbgemm_dynamic.cache_clear()
    yield fastpath.fbgemm_dynamic()
    fastpath.fbgemm_dynamic.cache_clear()


def test_fbgemm_weights_fit_its_gemm(fbgemm_forced):
    """fbgemm's dynamic int8 linear (the layer's GEMM on the AVX2 kind) adds up a worst-case
    row exactly with the weights' bits the probe picked, and the layer tracks fp32 like the
    ``_int_mm`` one."""
    fb = fbgemm_forced
    if fb is None:
        pytest.skip("no fbgemm in this torch build")
    torch.manual_seed(0)
    lin = torch.nn.Linear(576, 64, bias=True)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    q = fastpath.Int8Linear(lin)
    assert q.packed is not None and not hasattr(q, "qweight")
    assert int(q.int8_weight().abs().max()) == fb["qmax"]
    x = torch.ones(3, 576)
    x[1] = -1.0  # uint8 activations at both ends of their range: the pair sums that saturate
    with torch.inference_mode():
        y, want = q(x), lin(x)
    torch.testing.assert_close(y, want, rtol=0.01, atol=0.5)
    lin = torch.nn.Linear(576, 64, bias=True)
    q = fastpath.Int8Linear(lin)
    x = torch.randn(25, 576) * torch.rand(25, 1) * 10  # rows of very different magnitudes
    with torch.inference_mode():
        rel = (q(x) - lin(x)).norm(dim=1) / lin(x).norm(dim=1)
    assert float(rel.max()) < 0.05  # per-row scales: small rows lose no precision
