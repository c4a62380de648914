"""Export: merge, GGUF, Ollama folder, verification report and the bad-input paths.

The default run does one real GGUF export (q8_0) of a LoRA adapter on gecko with its
load-back checks, one merged-safetensors export, and fast checks on a tiny random llama;
f16 / q4_k_m / Ollama exports of gecko are marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import go_renderer, make_lora_adapter
from zimo.errors import ZimoError

LABEL_TEXTS = [
    "WINNER!! You have won a 1000 cash prize, call 09061701461 to claim now",
    "Are we still meeting for lunch tomorrow?",
    "URGENT: your account is suspended, reply with your PIN to unlock",
    "Ok, see you at 7 then",
    "Free entry in 2 a weekly comp to win FA Cup final tkts, text FA to 87121",
    "Sorry, I'll call you later, in a meeting",
]
META = {
    "name": "sms-fraud",
    "task": "label",
    "labels": ["ham", "spam"],
    "instruction": "Is this SMS spam or ham?",
    "data": {
        "records": 90,
        "origins": {"human": 80, "teacher": 10},
        "sources": {"sms.csv": 80, "teacher": 10},
        "synthetic_share": 10 / 90,
    },
    "eval": {"finetuned": {"accuracy": 0.95, "spam_f1": 0.9}, "tfidf_logreg": {"accuracy": 0.9}},
}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return make_lora_adapter(tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def q8_export(adapter, tmp_path_factory) -> tuple[Path, dict]:
    from zimo.export.api import export_model

    out = tmp_path_factory.mktemp("exports") / "sms-gguf"
    report = export_model(
        adapter, None, "gguf", "q8_0", out, label_texts=LABEL_TEXTS, metadata=META
    )
    return out, report


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random llama (2 layers, 4 heads, 2 kv heads) with gecko's real tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from zimo.models import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(str(resolve_model_dir("gecko")))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok.get_vocab()),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- GGUF q8_0


def test_gguf_q8_0_export_meets_targets(q8_export):
    out, report = q8_export
    assert json.loads((out / "export_report.json").read_text()) == json.loads(
        json.dumps(report, default=str)
    )
    merge = report["merge"]
    assert merge["passed"], merge
    assert merge["greedy_identical"] == merge["prompts"] == 8
    assert merge["max_abs_logit_diff"] <= merge["tolerance"]
    # the adapter's random B really moves the model, so the merge is not a no-op
    assert merge["max_abs_logit_change_vs_base"] > 100 * merge["max_abs_logit_diff"]
    assert merge["dtype"] == "float32"
    tf = report["verify"]["transformers"]
    assert tf["tokenizer_agreement"] == 1.0
    assert tf["token_agreement"] >= 0.95 and tf["positions_all"] == 8 * 16
    # counted up to each answer's end-of-turn token, which a 16-token answer may not reach
    assert 8 <= tf["positions"] <= 8 * 16
    assert tf["sequences_identical"] <= tf["sequences"] == 8
    assert tf["labels"]["agreement"] >= 0.99 and tf["labels"]["n"] == len(LABEL_TEXTS)
    assert tf["passed"]
    llama = report["verify"]["llama_cpp"]
    if "skipped" in llama:
        assert "pip install 'zimo[llamacpp]'" in llama["skipped"]
    else:
        assert llama["tokenizer_agreement"] == 1.0
        assert llama["labels"]["agreement"] >= 0.99
        # llama.cpp also quantises activations to 8 bits; on this deliberately noisy random
        # adapter it measured 94.5% (target 95%), transformers' reader 99.2%: the report must
        # say so honestly rather than pass.
        assert llama["token_agreement"] >= 0.90
        assert llama["passed"] == (llama["token_agreement"] >= 0.95)
    met = [merge["passed"], tf["passed"], llama.get("passed", True)]
    assert report["passed"] is all(met) and report["verify"]["passed"] is all(met[1:])
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "export_report.json",
        "sms-fraud-q8_0.gguf",
    ]
    assert _leftovers(out.parent) == []


def test_gguf_file_embeds_tokenizer_and_chat_template(q8_export):
    from gguf import GGUFReader

    out, report = q8_export
    r = GGUFReader(str(out / report["files"]["gguf"]))
    big = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges")
    f = {k: v.contents() for k, v in r.fields.items() if k not in big}
    assert f["general.architecture"] == "llama"
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    assert "<|im_start|>" in f["tokenizer.chat_template"]
    assert f["tokenizer.ggml.eos_token_id"] == 2
    assert len(r.fields["tokenizer.ggml.tokens"].data) == 49152
    assert len(r.fields["tokenizer.ggml.merges"].data) > 40000
    assert f["llama.attention.head_count_kv"] == 3 and f["llama.rope.freq_base"] == 100000.0
    assert f["general.license"] == "apache-2.0"
    types = report["files"]["tensor_types"]
    assert types["Q8_0"] == 211 and types["F32"] == 61  # 2-D weights quantised, norms kept


def test_model_card_has_base_data_eval_and_checks(q8_export):
    out, report = q8_export
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nbase_model: HuggingFaceTB/SmolLM2-135M")
    assert "synthetic share" in card and "11.1%" in card  # 10 of 90 records
    assert "| teacher | 10 |" in card
    assert "| finetuned | 0.95 | 0.9 |" in card
    assert "Classifies a text into one of: ham, spam" in card
    agree = 100 * report["verify"]["transformers"]["token_agreement"]
    positions = report["verify"]["transformers"]["positions"]
    assert f"| transformers: greedy-token agreement ({positions} answer tokens" in card
    assert "all 128 positions" in card
    assert f"{agree:.1f}%" in card


# --------------------------------------------------------------------------- merged weights


def test_hf_export_of_tiny_lora_loads_with_plain_transformers(tiny_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.api import export_model

    adapter = make_lora_adapter(tmp_path / "adapter", base=str(tiny_llama), std=0.2)
    out = tmp_path / "merged"
    report = export_model(adapter, None, "hf", None, out, metadata={"name": "m"})
    merge = report["merge"]
    assert merge["passed"] and merge["greedy_identical"] == merge["prompts"]
    assert merge["max_abs_logit_change_vs_base"] > 100 * merge["max_abs_logit_diff"]
    assert report["passed"] and report["hf_reload"]["passed"]
    assert report["hf_reload"]["tokenizer_identical"] and report["quant"] is None
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= (
        names
    )
    assert not any(n.startswith("adapter") for n in names)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32
    assert "chat_template" in json.loads((out / "tokenizer_config.json").read_text())
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>assistant\n")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    w = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[w], base.state_dict()[w])  # the delta is in
    assert (out / "README.md").is_file() and (out / "export_report.json").is_file()
    assert oct((out / "model.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert _leftovers(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_hf_export_of_gecko_adapter(adapter, tmp_path):
    from zimo.export.api import export_model

    report = export_model(adapter, "gecko", "hf", None, tmp_path / "merged")
    assert report["passed"] and report["merge"]["dtype"] == "float32"
    assert report["merge"]["greedy_identical"] == 8


# --------------------------------------------------------------------------- writer details
def test_gguf_f16_roundtrip_tiny_llama_with_gqa(tiny_llama, tmp_path):
    """Q/K permutation with fewer kv heads: transformers' reader must undo it exactly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.gguf_writer import write_gguf
    from zimo.export.verify import _fast_gguf_name_maps

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    res = write_gguf(model, tok, tmp_path / "tiny.gguf", "f16", progress=False)
    assert res.tensor_types == {"F16": 15, "F32": 5}
    with _fast_gguf_name_maps():
        back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf").eval()
    ids = torch.tensor([tok("The quick brown fox jumps over the lazy dog").input_ids])
    with torch.no_grad():
        a, b = model(ids).logits, back(ids).logits
    assert (a - b).abs().max() < 2e-3  # f16 rounding only
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_q8_0_quantisation_error_is_small(tiny_llama, tmp_path):
    import gguf
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.gguf_writer import write_gguf

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    write_gguf(model, tok, tmp_path / "t.gguf", "q8_0", progress=False)
    t = {x.name: x for x in GGUFReader(str(tmp_path / "t.gguf")).tensors}["blk.0.ffn_up.weight"]
    assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
    w = model.state_dict()["model.layers.0.mlp.up_proj.weight"].numpy()
    deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(w.shape)
    rel = np.abs(deq - w).max() / np.abs(w).max()
    assert 0 < rel < 1 / 127  # 8-bit blocks: at most half a step of the block scale


def test_label_check_uses_the_served_prompt_and_threshold(tiny_llama, tmp_path):
    """Every label path of the export check (LabelScorer on the merged model, any engine's
    log-probs, llama.cpp's serving scorer) applies the sub-model's system prompt, text
    truncation and decision threshold, and they agree with one another."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.gguf_writer import write_gguf
    from zimo.export.verify import (
        decide_labels,
        hf_logprob_fn,
        label_choices_from_logprobs,
        label_choices_hf,
        label_choices_llamacpp,
    )
    from zimo.infer.label import LabelScorer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    spec = {"labels": ["ham", "spam"], "instruction": "Spam or ham?", "texts": LABEL_TEXTS,
            "system": "Reply with the label only.", "max_text_tokens": 8}  # fmt: skip
    proba = LabelScorer(model, tok, spec["labels"], spec["instruction"], system=spec["system"],
                        max_text_tokens=8, autocast=False).predict_proba(LABEL_TEXTS)  # fmt: skip
    p = np.sort(proba[:, 1])
    cases = {  # threshold -> expected labels: all spam, all ham, a split in the widest gap
        float(p[0] - 1e-3): [1] * len(p),
        float(p[-1] + 1e-3): [0] * len(p),
    }
    gap = int(np.argmax(np.diff(p)))
    mid = float((p[gap] + p[gap + 1]) / 2)
    cases[mid] = [int(x >= mid) for x in proba[:, 1]]
    write_gguf(model, tok, tmp_path / "tiny.gguf", "f16", progress=False)
    has_llamacpp = importlib.util.find_spec("llama_cpp") is not None
    for thr, want in cases.items():
        rule = {**spec, "positive_label": "spam", "decision_threshold": thr}
        assert decide_labels(proba, rule) == want
        assert label_choices_hf(model, tok, rule)[0] == want
        assert label_choices_from_logprobs(hf_logprob_fn(model), tok, rule) == want
        if has_llamacpp:
            assert label_choices_llamacpp(tmp_path / "tiny.gguf", tok, rule, 1) == want, thr
    # without the system prompt the prompt (and so the probabilities) would differ
    other = LabelScorer(model, tok, spec["labels"], spec["instruction"], system=None,
                        max_text_tokens=8, autocast=False).predict_proba(LABEL_TEXTS)  # fmt: skip
    assert not np.allclose(other, proba)


# --------------------------------------------------------------------------- bad input


def test_export_before_training_is_one_clear_line(tmp_path):
    from zimo.export.api import export_model

    empty = tmp_path / "adapter"
    empty.mkdir()
    for src in (tmp_path / "missing", empty):
        with pytest.raises(ZimoError) as e:
            export_model(src, "gecko", "gguf", "q8_0", tmp_path / "out")
        assert "train first" in e.value.one_line() and "\n" not in e.value.one_line()
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_project_without_training_says_train_first(tiny_project):
    from zimo.export.project import resolve_project

    with pytest.raises(ZimoError) as e:
        resolve_project(tiny_project)
    assert "no trained model" in e.value.message and "zimo build" in e.value.hint


def test_unsupported_architecture_is_refused_before_work(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from zimo.export.api import export_model

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(
        folder
    )
    with pytest.raises(ZimoError) as e:
        export_model(folder, None, "gguf", "q8_0", tmp_path / "out")
    line = e.value.one_line()
    assert "does not support the 'gpt2' architecture" in line and "--format hf" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]


def test_k_quant_without_extra_names_the_install_command(tmp_path, monkeypatch):
    import zimo.export.gguf_writer as gw
    from zimo.export.api import export_model

    if gw.llamacpp_available():  # simulate a machine without the optional extra
        monkeypatch.setattr(gw, "llamacpp_available", lambda: False)
    with pytest.raises(ZimoError) as e:
        export_model(tmp_path / "whatever", "gecko", "gguf", "q4_k_m", tmp_path / "out")
    line = e.value.one_line()
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF' in line and "pip install 'zimo[llamacpp]'" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MB tmpfs (root only); skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny-disk"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_is_one_line_and_leaves_nothing(tiny_llama, tiny_disk):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.api import export_model
    from zimo.export.gguf_writer import write_gguf

    # the up-front space check
    with pytest.raises(ZimoError) as e:
        export_model(tiny_llama, None, "gguf", "f16", tiny_disk / "out", verify=False)
    assert "not enough disk space" in e.value.one_line() and "MB free" in e.value.one_line()
    assert list(tiny_disk.iterdir()) == []
    # the disk filling up in the middle of the write (space check off): same line, no file
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    with pytest.raises(ZimoError) as e:
        write_gguf(model, tok, tiny_disk / "m.gguf", "f16", check_space=False, progress=False)
    assert "not enough disk space to write m.gguf" in e.value.one_line()
    assert list(tiny_disk.iterdir()) == []
    # merged safetensors export hits the full disk too
    with pytest.raises(ZimoError) as e:
        export_model(tiny_llama, None, "hf", None, tiny_disk / "hf", verify=False)
    assert "not enough disk space" in e.value.one_line()
    assert list(tiny_disk.iterdir()) == []


def test_cli_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-c", "from zimo.cli import main; main()", "export"]
    r = subprocess.run(
        [*cmd, "--adapter", str(tmp_path / "nope"), "--format", "gguf"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: nothing to export")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

    # neither a project nor --adapter: a usage error (exit 2), checked in-process
    import typer
    from typer.testing import CliRunner

    from zimo.errors import ConfigError
    from zimo.export.cli import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps `export` a named subcommand
        pass

    res = CliRunner().invoke(app, ["export"])
    assert isinstance(res.exception, ConfigError) and "--adapter" in res.exception.message


def test_export_config_rejects_unknown_keys():
    from zimo.errors import ConfigError
    from zimo.export.config import export_config

    cfg = export_config({"formats": ["gguf", "ollama"], "quant": "f16"})
    assert cfg.formats == ["gguf", "ollama"] and cfg.verify
    with pytest.raises(ConfigError) as e:
        export_config({"fromats": ["gguf"]})
    assert "export.fromats" in e.value.message
    with pytest.raises(ConfigError):
        export_config({"quant": "q2"})


# --------------------------------------------------------------------------- Ollama


def _gecko_tokenizer():
    from transformers import AutoTokenizer

    from zimo.models import resolve_model_dir

    return AutoTokenizer.from_pretrained(str(resolve_model_dir("gecko")))


CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke.\nA short one."},
    ],
]


def test_modelfile_template_matches_chat_template():
    from zimo.export.ollama import CHATML, build_modelfile, detect_chat_format, parse_modelfile

    tok = _gecko_tokenizer()
    assert detect_chat_format(tok.chat_template) is CHATML
    text, summary = build_modelfile(
        "m.gguf", tok.chat_template, parameters={"temperature": 0, "num_ctx": 2048}
    )
    parsed = parse_modelfile(text)
    assert parsed[0] == ("FROM", "./m.gguf")
    cmds = dict(parsed[:3])
    assert cmds["TEMPLATE"] == CHATML.go_template()
    assert "helpful AI assistant named SmolLM" in cmds["SYSTEM"]
    params = [a for c, a in parsed if c == "PARAMETER"]
    assert params[:2] == ["stop <|im_end|>", "stop <|im_start|>"]
    assert "temperature 0.0" in params and "num_ctx 2048" in params
    for conv in CONVERSATIONS:
        # Ollama puts SYSTEM first when the request has none, like SmolLM2's template does
        msgs = (
            conv
            if conv[0]["role"] == "system"
            else [
                {"role": "system", "content": cmds["SYSTEM"]},
                *conv,
            ]
        )
        want = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        assert CHATML.render(msgs) == want


def test_modelfile_parser_rejects_what_ollama_rejects():
    from zimo.export.ollama import parse_modelfile

    with pytest.raises(ValueError):
        parse_modelfile('FROM ./m.gguf\nTEMPLATE """{{ .Prompt }}\n')
    with pytest.raises(ValueError):
        parse_modelfile("FROM ./m.gguf\nPARAMETER temprature 0\n")
    with pytest.raises(ValueError):
        parse_modelfile("FROM ./m.gguf\nPARAMETER num_ctx lots\n")
    with pytest.raises(ValueError):
        parse_modelfile("PARAMETER num_ctx 10\n")


@pytest.mark.skipif(shutil.which("go") is None, reason="Go toolchain not installed")
def test_go_template_renders_like_chat_template(tmp_path):
    """Render TEMPLATE with Go's text/template (what Ollama uses) and compare."""
    from zimo.export.ollama import CHATML, GEMMA

    render = go_renderer(tmp_path)
    for fmt in (CHATML, GEMMA):
        for conv in CONVERSATIONS:
            assert render(fmt.go_template(), conv) == fmt.render(conv)


# `ollama create` on a real export: tests/test_export_ollama.py


# --------------------------------------------------------------------------- slow: more quants


@pytest.mark.slow
def test_ollama_export_writes_modelfile_and_command(adapter, tmp_path):
    from zimo.export.api import export_model
    from zimo.export.ollama import parse_modelfile

    out = tmp_path / "oll"
    report = export_model(adapter, None, "ollama", "f16", out, metadata=META)
    assert report["passed"], report["verify"]
    assert report["verify"]["transformers"]["token_agreement"] >= 0.99
    parsed = parse_modelfile((out / "Modelfile").read_text())
    assert parsed[0] == ("FROM", "./sms-fraud-f16.gguf") and (out / "sms-fraud-f16.gguf").is_file()
    assert report["ollama"]["create_command"] == f"ollama create sms-fraud -f {out / 'Modelfile'}"
    assert "PARAMETER temperature 0" in (out / "Modelfile").read_text()


@pytest.mark.slow
def test_q4_k_m_with_llamacpp(adapter, tmp_path):
    pytest.importorskip("llama_cpp")
    from zimo.export.api import export_model

    report = export_model(adapter, None, "gguf", "q4_k_m", tmp_path / "q4", metadata=META)
    types = report["files"]["tensor_types"]
    assert "Q4_K" in types and "F32" in types
    assert report["verify"]["llama_cpp"]["tokenizer_agreement"] == 1.0
    assert report["verify"]["transformers"]["token_agreement"] >= 0.85


# --------------------------------------------------------------------------- agreement metric


def test_token_agreement_counts_up_to_the_end_of_each_answer():
    from zimo.export.verify import answer_length, token_agreement

    # two prompts; the reference answers end with stop token 9 after 2 and 3 tokens
    ref = {
        "prompt_ids": [[1, 2], [1, 3, 4]],
        "continuations": [[5, 9, 7, 7], [6, 6, 9, 8]],
        "stop_ids": [9],
    }
    assert [answer_length(c, {9}) for c in ref["continuations"]] == [2, 3]
    assert answer_length([5, 6], {9}) == 2  # no stop: every position counts

    def engine(miss_at: set[tuple[int, int]]):
        def fn(ids: list[int]) -> np.ndarray:
            rows = np.full((len(ids), 10), -9.0)
            for pos, nxt in enumerate(ids[1:]):
                rows[pos, nxt] = 0.0
                if (len(ids), pos) in miss_at:  # this engine prefers another token here
                    rows[pos, (nxt + 1) % 10] = 1.0
            return rows

        return fn

    same = token_agreement(ref, engine(set()))
    assert same["token_agreement"] == same["token_agreement_all_positions"] == 1.0
    assert (same["positions"], same["positions_all"], same["sequences_identical"]) == (5, 8, 2)
    # a miss after the first answer's end (position 3 of 6 ids) is not counted...
    after = token_agreement(ref, engine({(6, 3)}))
    assert after["token_agreement"] == 1.0 and after["token_agreement_all_positions"] == 7 / 8
    # ...one inside the second answer is
    inside = token_agreement(ref, engine({(7, 3)}))
    assert inside["token_agreement"] == 4 / 5 and inside["sequences_identical"] == 1


def test_stop_tokens_include_end_of_turn():
    from zimo.export.merge import stop_token_ids

    tok = _gecko_tokenizer()
    stops = stop_token_ids(tok)
    assert tok.convert_tokens_to_ids("<|im_end|>") in stops and tok.eos_token_id in stops
    assert tok.convert_tokens_to_ids("Hello") not in stops
