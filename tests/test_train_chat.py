"""Chat training: assistant-only loss spans, packing, a tiny run; full fine-tuning output."""

from __future__ import annotations

import json

import pytest

from models_fixtures import gecko
from train_fixtures import LABELS, records, tiny_cfg
from zimo.errors import DataError
from zimo.train.batches import Example
from zimo.train.chat import chat_example, pack, record_messages, train_chat

CONVS = [
    {"instruction": "Say hi", "input": "", "output": "Hi there!"},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "and 3+3?"},
            {"role": "assistant", "content": "6"},
        ]
    },
] * 4


def test_loss_only_on_assistant_tokens():
    _, tok = gecko()
    ex, status = chat_example(tok, record_messages(CONVS[1]), 256)
    assert status == "ok"
    assert tok.decode(ex.targets) == "4<|im_end|>6<|im_end|>"
    # targets are the next tokens of their positions
    full = ex.ids + [ex.targets[-1]]
    assert all(full[p + 1] == t for p, t in zip(ex.pos, ex.targets, strict=True))


def test_truncation_keeps_what_fits_and_drops_what_cannot():
    _, tok = gecko()
    long = {"instruction": "x " * 300, "output": "answer"}
    ex, status = chat_example(tok, record_messages(long), 64)
    assert ex is None and status == "assistant turn beyond max_length"
    ex, status = chat_example(tok, record_messages({"instruction": "hi", "output": "y " * 300}), 64)
    assert status == "truncated" and len(ex.ids) == 63


def test_pack_offsets_positions():
    rows = [Example([1, 2], [1], [3]), Example([4, 5, 6], [0], [5])]
    packed = pack(rows, 8)
    assert len(packed) == 1 and packed[0].ids == [1, 2, 4, 5, 6]
    assert packed[0].pos == [1, 2] and packed[0].targets == [3, 5]


def test_train_chat_tiny(tmp_path):
    cfg = tiny_cfg(task="chat", max_steps=3, packing=True)
    s = train_chat(CONVS, CONVS[:2], cfg, tmp_path)
    assert s["steps"] == 3 and s["task"] == "chat" and s["trained_tokens"] > 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and "dev_loss" in log[-1]
    # The dev loss before training is the curve's step 0 (what the eval report plots).
    from zimo.eval.html import training_curve

    curve = training_curve(tmp_path)
    assert s["initial_dev_loss"] > 0 and curve["dev_loss"][0] == [
        0,
        round(s["initial_dev_loss"], 5),
    ]
    assert curve["final_dev_loss"] == log[-1]["dev_loss"] and curve["steps"] == 3


def test_chat_without_assistant_turns_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no usable training conversations"):
        train_chat([{"messages": [{"role": "user", "content": "hi"}]}], [], tiny_cfg(), tmp_path)


def test_full_finetune_writes_safetensors(tmp_path):
    from transformers import AutoModelForCausalLM

    from zimo.train import train_label

    cfg = tiny_cfg(method="full", full_layers=1, max_steps=2, lr=1e-5)
    s = train_label(records(8), [], LABELS, cfg, tmp_path)
    assert s["method"] == "full" and s["layers_trained"] == [29]
    assert (tmp_path / "model" / "model.safetensors").is_file()
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert m.config.num_hidden_layers == 30


def test_gemma_fallback_answer_ends_with_a_token_the_base_can_learn():
    """gecko-zh (a pretrained Gemma) has no chat template: Zimo's fallback ends the answer with
    <eos>, which pretraining taught, not <end_of_turn>, which it never produced."""
    from zimo.eval.generate_local import _stop_ids
    from zimo.models import load_causal_lm
    from zimo.prompts import ensure_chat_template

    model, tok = load_causal_lm("gecko-zh")
    assert ensure_chat_template(tok)  # the GGUF carries no template
    msgs = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]
    ex, status = chat_example(tok, msgs, 64)
    assert status == "ok" and ex.targets[-1] == tok.eos_token_id
    assert tok.eos_token_id in _stop_ids(tok, model)
    # Why: at the end of an answer the base ranks <end_of_turn> far below <eos>.
    import torch

    ids = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)
    ids = torch.tensor([ids["input_ids"]])
    with torch.no_grad():
        last = model(ids).logits[0, ex.pos[-1]]
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    assert last[tok.eos_token_id] > last[eot] + 10
