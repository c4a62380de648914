"""GGUF export of Gemma 3 (gecko-zh): tensor names, w+1 norms, the sentencepiece vocabulary.

The default run uses a tiny random Gemma 3 (6 layers, so one global layer) with gecko-zh's
real tokenizer and vocabulary; the export of gecko-zh itself with a LoRA adapter is slow.
The embedded gecko-zh GGUF (converted by llama.cpp's own script) is the reference for the
keys and tensor names a gemma3 file must have.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zimo.errors import ZimoError


def _gecko_zh_gguf() -> Path:
    from zimo.export.gguf_writer import source_gguf
    from zimo.models import resolve_model_dir

    src = source_gguf(resolve_model_dir("gecko-zh"))
    assert src is not None, "gecko-zh's folder must record the GGUF it came from"
    return src


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory) -> Path:
    """A tiny random Gemma 3 text model with gecko-zh's tokenizer (262k tokens)."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from zimo.models import resolve_model_dir

    base = resolve_model_dir("gecko-zh")
    tok = AutoTokenizer.from_pretrained(str(base))
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok.get_vocab()),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=2,
        num_key_value_heads=1,
        # GGUF has no key for query_pre_attn_scalar: llama.cpp scales by 1/sqrt(head_dim) and
        # transformers' loader assumes Gemma 3's default 256, so 256 is what both read right
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=8,  # shorter than the test prompts, so the local layers really slide
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():  # Gemma inits norms to 0 (= scale 1); random ones test the w+1 shift
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(-0.5, 0.5)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-gemma"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    # the vocabulary's scores come from the GGUF the base was converted from, as for gecko-zh
    (folder / "zimo_source.json").write_text(
        json.dumps({"source_gguf": str(_gecko_zh_gguf())}), encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="module")
def tiny_gemma_f16(tiny_gemma, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.gguf_writer import write_gguf
    from zimo.export.merge import _ensure_template

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma).eval()
    tok = AutoTokenizer.from_pretrained(tiny_gemma)
    _ensure_template(tok)
    out = tmp_path_factory.mktemp("gguf") / "tiny-gemma.gguf"
    res = write_gguf(model, tok, out, "f16", base_dir=tiny_gemma, progress=False)
    return model, tok, out, res


def _fields(path: Path) -> dict:
    from gguf import GGUFReader

    big = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}
    r = GGUFReader(str(path))
    return {k: (None if k in big else v.contents()) for k, v in r.fields.items()}


def test_gemma3_keys_and_tensor_names_match_llamacpp_reference(tiny_gemma_f16):
    from gguf import GGUFReader

    _, _, path, res = tiny_gemma_f16
    assert res.arch == "gemma3"
    ours, ref = _fields(path), _fields(_gecko_zh_gguf())
    # every model/tokenizer key llama.cpp's converter wrote, except descriptive ones
    descriptive = {"general.basename", "general.size_label", "general.tags", "general.license"}
    missing = set(ref) - set(ours) - descriptive
    assert missing == set()
    assert ours["general.architecture"] == "gemma3"
    assert ours["tokenizer.ggml.model"] == "llama" and ours["tokenizer.ggml.pre"] == "default"
    for key in (
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix",
    ):
        assert ours[key] == ref[key], key
    assert ours["gemma3.attention.key_length"] == 256 and ours["gemma3.block_count"] == 6
    assert ours["gemma3.rope.freq_base"] == 1_000_000.0  # the global layers' base
    assert ours["gemma3.attention.sliding_window"] == 8
    assert "<start_of_turn>model" in ours["tokenizer.chat_template"]
    # same tensor names per block as llama.cpp's file, and no separate output head (tied)
    names = {t.name for t in GGUFReader(str(path)).tensors}
    ref_names = {t.name for t in GGUFReader(str(_gecko_zh_gguf())).tensors}
    per_block = {n.split(".", 2)[2] for n in ref_names if n.startswith("blk.0.")}
    assert {n.split(".", 2)[2] for n in names if n.startswith("blk.0.")} == per_block
    assert {n for n in names if not n.startswith("blk.")} == {
        "token_embd.weight",
        "output_norm.weight",
    }
    assert res.tensor_types == {"F16": 1 + 6 * 7, "F32": 1 + 6 * 6}


def test_gemma3_norms_are_stored_plus_one(tiny_gemma_f16):
    from gguf import GGUFReader

    model, _, path, _ = tiny_gemma_f16
    t = {x.name: x for x in GGUFReader(str(path)).tensors}
    sd = model.state_dict()
    for gguf_name, hf_name in [
        ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
        ("blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight"),
        ("blk.5.post_ffw_norm.weight", "model.layers.5.post_feedforward_layernorm.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ]:
        np.testing.assert_allclose(np.asarray(t[gguf_name].data), sd[hf_name].numpy() + 1.0)
    # projections are not permuted for gemma3 (NEOX rope in both engines)
    q = np.asarray(t["blk.0.attn_q.weight"].data, dtype=np.float32)
    w = sd["model.layers.0.self_attn.q_proj.weight"].numpy()
    np.testing.assert_allclose(q.reshape(w.shape), w, atol=1e-3)


# ~50 s on 2 idle cores (transformers' GGUF loader parses the 262k-token vocabulary in Python):
# slow. The default run keeps the writer's Gemma 3 specifics (keys, tensor names, norms stored
# +1, no permutation) in the two tests above and the loader round trip on a tiny Llama
# (test_export.py::test_gguf_f16_roundtrip_tiny_llama_with_gqa).
@pytest.mark.slow
def test_gemma3_f16_roundtrip_with_transformers_loader(tiny_gemma_f16):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.verify import _fast_gguf_name_maps

    model, tok, path, _ = tiny_gemma_f16
    with _fast_gguf_name_maps():
        back = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
        back_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    texts = [
        "The quick brown fox jumps over the lazy dog again and again",
        "请用一句话介绍你自己。",
    ]
    for text in texts:  # the embedded vocabulary tokenises exactly as the HF tokenizer
        assert back_tok(text)["input_ids"] == tok(text)["input_ids"]
    ids = torch.tensor([tok(texts[0]).input_ids])
    assert ids.shape[1] > 8  # longer than the sliding window
    with torch.no_grad():
        a, b = model(ids).logits, back(ids).logits
    assert (a - b).abs().max() < 5e-3  # f16 rounding only
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_gemma3_vocab_mismatch_is_one_line(tiny_gemma, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.gguf_writer import write_gguf

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma)
    tok = AutoTokenizer.from_pretrained(tiny_gemma)
    with pytest.raises(ZimoError) as e:  # no recorded source GGUF: no token scores
        write_gguf(model, tok, tmp_path / "x.gguf", "f16", base_dir=tmp_path, progress=False)
    assert "sentencepiece" in e.value.one_line() and "--format hf" in e.value.one_line()
    src = tmp_path / "other"
    src.mkdir()
    (src / "zimo_source.json").write_text(json.dumps({"source_gguf": str(_gecko_gguf())}))
    with pytest.raises(ZimoError) as e:  # a GGUF whose vocabulary is another model's
        write_gguf(model, tok, tmp_path / "x.gguf", "f16", base_dir=src, progress=False)
    assert "sentencepiece vocabulary" in e.value.one_line()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def _gecko_gguf() -> Path:
    from zimo.export.gguf_writer import source_gguf
    from zimo.models import resolve_model_dir

    return source_gguf(resolve_model_dir("gecko"))


def test_gemma3_variant_llamacpp_cannot_run_is_refused():
    from transformers import Gemma3TextConfig

    from zimo.export.gguf_writer import check_supported

    ok = Gemma3TextConfig(num_hidden_layers=12, head_dim=256, query_pre_attn_scalar=256)
    assert check_supported(ok) == "gemma3"
    bad = Gemma3TextConfig(
        num_hidden_layers=4, layer_types=["full_attention"] * 4, query_pre_attn_scalar=128
    )
    with pytest.raises(ZimoError) as e:
        check_supported(bad)
    line = e.value.one_line()
    assert "global/local layer pattern" in line and "query_pre_attn_scalar" in line


# --------------------------------------------------------------------------- slow: gecko-zh


@pytest.fixture(scope="module")
def gecko_zh_adapter(tmp_path_factory) -> Path:
    from export_fixtures import make_lora_adapter

    return make_lora_adapter(
        tmp_path_factory.mktemp("lora-zh") / "adapter", base="gecko-zh", std=0.01
    )


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gecko_zh_adapter_gguf_meets_targets(gecko_zh_adapter, tmp_path, quant):
    from zimo.export.api import export_model

    report = export_model(gecko_zh_adapter, None, "gguf", quant, tmp_path / "zh")
    assert report["merge"]["passed"] and report["gguf"]["arch"] == "gemma3"
    tf = report["verify"]["transformers"]
    assert tf["tokenizer_agreement"] == 1.0
    assert tf["token_agreement"] >= {"f16": 0.99, "q8_0": 0.95}[quant], tf
    llama = report["verify"]["llama_cpp"]
    if "skipped" not in llama:
        assert llama["tokenizer_agreement"] == 1.0
        assert llama["token_agreement"] >= {"f16": 0.99, "q8_0": 0.95}[quant], llama
    assert report["passed"]
