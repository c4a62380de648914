"""Shared-prefix training: the prompt every row starts with is computed once per batch, with
the same loss and gradients as running every row in full."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train_fixtures import LABELS, records, tiny_cfg
from zimo.infer.label import decide, decide_label, dev_threshold
from zimo.train.batches import Example, shared_prefix
from zimo.train.loop import Fitter


def _fitter(share: bool, layers, tmp_path, cache_frozen=False):
    from zimo.models import load_tokenizer, resolve_model_dir
    from zimo.prompts import LabelPrompt
    from zimo.train.label import build_examples
    from zimo.train.setup import prepare_model

    base_dir = resolve_model_dir("gecko")
    tok = load_tokenizer(base_dir)
    prompt = LabelPrompt(tok, LABELS, "Is this SMS spam?")
    ex, _ = build_examples(records(6), prompt, "train")
    cfg = tiny_cfg(share_prefix=share, lora={"layers": layers, "r": 4, "alpha": 8})
    model, parts, first, _ = prepare_model(cfg, base_dir)
    with torch.no_grad():  # non-zero LoRA B, so the adapter really acts on the prefix
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    fitter = Fitter(model, parts, first, ex, ex[:2], cfg, tmp_path, tok.pad_token_id,
                    bf16=False, cache_frozen=cache_frozen)  # fmt: skip
    return fitter, ex


@pytest.mark.parametrize("layers", [2, None], ids=["top-layers", "all-layers"])
def test_shared_prefix_gives_the_same_loss_and_gradients(tmp_path, layers):
    results = []
    for share in (False, True):
        f, ex = _fitter(share, layers, tmp_path)
        if share:
            assert f.prefix_len >= 10  # system prompt + instruction are shared
        else:
            assert f.prefix_len == 0
        loss, _ = f._loss("train", ex, list(range(len(ex))))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in f.params])
        results.append((loss.item(), grads))
    (l0, g0), (l1, g1) = results
    assert abs(l0 - l1) <= 1e-4 * max(1.0, abs(l0))
    assert torch.linalg.vector_norm(g0) > 0
    torch.testing.assert_close(g1, g0, rtol=1e-3, atol=2e-5)


def test_shared_prefix_with_frozen_cache_matches(tmp_path):
    f, ex = _fitter(True, 2, tmp_path, cache_frozen=True)
    direct, _ = f._loss("train", ex, [0, 1, 2])
    f.build_cache("train", ex)
    cached, _ = f._loss("train", ex, [0, 1, 2])
    assert abs(direct.item() - cached.item()) <= 1e-4 * abs(direct.item())


def test_shared_prefix_stops_before_loss_positions_and_own_tokens():
    rows = [
        Example(ids=[1, 2, 3, 4, 5, 6, 7], pos=[6], targets=[9]),
        Example(ids=[1, 2, 3, 4, 5, 8], pos=[5], targets=[9]),
    ]
    assert shared_prefix(rows) == 5
    # a loss position inside the common part caps the prefix
    rows.append(Example(ids=[1, 2, 3, 4, 5, 6], pos=[4, 5], targets=[9, 9]))
    assert shared_prefix(rows) == 4
    # too short to pay for the extra pass
    assert shared_prefix([Example([1, 2, 9], [2], [0]), Example([1, 2, 8], [2], [0])]) == 0


def test_decision_threshold_rule():
    proba = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]])
    assert decide(proba, None, None).tolist() == [0, 0, 1]
    assert decide(proba, 1, 0.25).tolist() == [0, 1, 1]
    meta = {"positive_label": "spam", "decision_threshold": 0.25}
    assert decide_label([0.7, 0.3], LABELS, meta) == 1
    assert decide_label([0.7, 0.3], LABELS, {}) == 0
    assert (
        decide_label([0.7, 0.3], LABELS, {"positive_label": "fraud", "decision_threshold": 0.1})
        == 0
    )
    y = np.array([0] * 8 + [1, 1])
    p = np.array([[0.9, 0.1]] * 8 + [[0.8, 0.2], [0.7, 0.3]])
    t = dev_threshold(y, p, 1)
    assert 0.1 < t <= 0.2  # the lowest positive score that keeps every ham out
    assert dev_threshold(np.zeros(12, int), np.tile([0.9, 0.1], (12, 1)), 1) is None


def test_training_stores_the_dev_threshold_that_serving_applies(tmp_path):
    import json

    from zimo.serve.registry import load_submodel
    from zimo.train import train_label

    out = tmp_path / "run"
    summary = train_label(
        records(12), records(12), LABELS, tiny_cfg(max_steps=2), out, positive_label="spam"
    )
    task = json.loads((out / "label_task.json").read_text())
    assert task["positive_label"] == "spam"
    assert 0.0 <= task["decision_threshold"] <= 1.0
    assert summary["decision"]["dev_rows"] == 12
    assert summary["shared_prefix_tokens"] > 10
    (out / "zimo_model.json").write_text(
        json.dumps({"name": "m", "task": "label", "base": "gecko", "adapter": "adapter"})
    )
    meta = load_submodel(out).metadata
    t = meta["decision_threshold"]
    assert decide_label([1 - t, t], LABELS, meta) == 1
    assert decide_label([1 - t + 1e-3, t - 1e-3], LABELS, meta) == 0


def test_bf16_step_skips_lora_input_casts_with_identical_result(tmp_path):
    """Under CPU bf16 autocast the LoRA layers' bf16->fp32->bf16 input round trip is switched
    off: the same loss and gradients, and the casts are back on outside the step."""
    from zimo.train.setup import cast_frozen_bf16

    f, ex = _fitter(True, 2, tmp_path)
    cast_frozen_bf16(f.model)
    f.bf16 = True
    assert f._lora_layers
    results = []
    for skip in (False, True):
        if not skip:  # the old path: peft casts every input to the fp32 LoRA weights
            f._lora_layers, saved = [], f._lora_layers
        loss, _ = f._loss("train", ex, [0, 1, 2])
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten().clone() for p in f.params])))
        f.model.zero_grad(set_to_none=True)
        if not skip:
            f._lora_layers = saved
    (l0, g0), (l1, g1) = results
    assert l0 == l1
    torch.testing.assert_close(g1, g0, rtol=0, atol=0)
    assert all(m.cast_input_dtype_enabled for m in f._lora_layers)


def test_attention_kernel_is_measured_and_gives_the_same_loss(tmp_path):
    from zimo.hw import fastest_attention

    t = fastest_attention("float32", 2, 3, 24, 16)
    assert t["backend"] in ("flash", "math") and t["flash_ms"] > 0 and t["math_ms"] > 0
    if t["backend"] == "math":
        assert t["math_ms"] < t["flash_ms"]
    f, ex = _fitter(True, 2, tmp_path)
    info = f.choose_attention()
    assert set(info["attention"]) == {"train", "eval"}
    losses = []
    for kernel in ("flash", "math"):
        f.attention = {"train": kernel, "eval": kernel}
        losses.append(f._loss("train", ex, [0, 1, 2])[0].item())
    assert abs(losses[0] - losses[1]) <= 1e-4 * abs(losses[0])
