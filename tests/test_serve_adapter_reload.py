"""A sub-model retrained while the gateway runs (the flywheel's hot reload): the engine drops the
old adapter and serves the new one, with no error in between."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from models_fixtures import SMS, gecko

TEXTS = [t for _, t in SMS][:4]


def _adapter(tmp: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model

    model, _ = gecko()
    torch.manual_seed(seed)
    peft = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    out = tmp / f"adapter{seed}"
    peft.save_pretrained(str(out))
    return out


@pytest.mark.parametrize("int8", ["0", "1"])
def test_a_retrained_label_adapter_is_served_after_reload(tmp_path, monkeypatch, int8):
    from zimo.serve.backends.base import Job, SamplingParams
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig, SubModel

    monkeypatch.setenv("ZIMO_INT8", int8)
    first, second = _adapter(tmp_path, 1), _adapter(tmp_path, 2)
    meta = {"task": "label", "labels": ["ham", "spam"]}
    be = make_backend(BackendConfig(kind="transformers", base="gecko", threads=1))
    be.start()

    def spam_probs() -> np.ndarray:
        # One text at a time: int8's dynamic quantisation scales activations per batch, so a
        # text's score depends on which texts share its batch (0.416 batched, 0.397 alone on an
        # Intel Xeon with AMX), and how the engine batches jobs sent together varies with load.
        async def run():
            out = []
            for t in TEXTS:
                job = be.submit(Job("cls", be.encode_chat("cls", [{"role": "user", "content": t}]),
                                    SamplingParams(), kind="label"))  # fmt: skip
                out.append(await job.future)
            return out

        return np.array([r.label_probs["spam"] for r in asyncio.run(run())])

    try:
        be.add_model(SubModel(name="cls", adapter_dir=str(first), metadata=meta))
        before = spam_probs()
        be.add_model(SubModel(name="cls", adapter_dir=str(second), metadata=meta))
        after = spam_probs()  # raised KeyError in PEFT once the only adapter was replaced
        assert np.abs(after - before).max() > 1e-3  # the new weights answer
        be.add_model(SubModel(name="cls", adapter_dir=str(first), metadata=meta))
        np.testing.assert_allclose(spam_probs(), before, atol=2e-3)
    finally:
        be.close()
