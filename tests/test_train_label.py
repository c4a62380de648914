"""Label training: split forward, outputs loadable by plain peft, resume after kill -9, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models_fixtures import gecko
from train_fixtures import LABELS, records, tiny_cfg
from zimo.errors import DataError, ZimoError
from zimo.train import train_label
from zimo.train.split import decoder_parts, head_logits, run_layers


def test_split_forward_matches_full_model():
    model, tok = gecko()
    ids = torch.tensor([tok("hello there, how are you?")["input_ids"]] * 2)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # a padded row too
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    parts = decoder_parts(model)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        h = run_layers(
            parts,
            list(range(20)),
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            final_norm=False,
        )
        h = run_layers(
            parts,
            list(range(20, parts.n_layers)),
            hidden=h,
            attention_mask=mask,
            position_ids=pos,
            final_norm=True,
        )
        split = head_logits(parts, h[:, -3:])
    torch.testing.assert_close(split, full[:, -3:], atol=1e-3, rtol=1e-3)
    assert len(parts.body.layers) == parts.n_layers  # layers restored after the swap


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("label_run")
    summary = train_label(records(16), records(4), LABELS, tiny_cfg(), out)
    return out, summary


def test_outputs_and_log(trained):
    out, s = trained
    assert s["steps"] == 6 and s["trained_tokens"] > 0 and s["tokens_per_s"] > 0
    assert s["layers_trained"] == [28, 29]
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    assert all({"loss", "lr", "tokens_per_s"} <= set(r) for r in log)
    assert any("dev_loss" in r for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "tokenizer_config.json").is_file()
    task = json.loads((out / "label_task.json").read_text())
    assert task["labels"] == LABELS
    assert (out / "train_summary.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step-00000006.pt"


def test_adapter_loads_with_plain_peft_and_scores(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from zimo.infer.label import LabelScorer
    from zimo.models import resolve_model_dir

    out, _ = trained
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("gecko"))
    model = PeftModel.from_pretrained(base, out / "adapter")
    tok = gecko()[1]
    task = json.loads((out / "label_task.json").read_text())
    s = LabelScorer(model, tok, task["labels"], task["instruction"], system=task["system"])
    p = s.predict_proba([r["text"] for r in records(4)])
    assert p.shape == (4, 2)
    zero = LabelScorer(
        base.get_base_model() if hasattr(base, "get_base_model") else base,
        tok,
        task["labels"],
        task["instruction"],
        system=task["system"],
    )
    assert p is not None and zero is not None


def test_rerun_after_completion_resumes_without_training(trained):
    out, s = trained
    again = train_label(records(16), records(4), LABELS, tiny_cfg(), out)
    assert again["resumed_from_step"] == 6 and again["steps"] == 6
    assert again["final_loss"] == pytest.approx(s["final_loss"], rel=1e-6)


_RUNNER = """
import json, sys
sys.path.insert(0, {tests!r})
from train_fixtures import LABELS, records, tiny_cfg
from zimo.train import train_label
s = train_label(records(16), records(4), LABELS, tiny_cfg(max_steps=10, checkpoint_every=2), {out!r})
print(json.dumps(s))
"""


def _run(out: Path, kill_after_ckpt: str | None = None) -> dict | None:
    code = _RUNNER.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    if kill_after_ckpt:
        deadline = time.time() + 240
        while not (out / "checkpoints" / kill_after_ckpt).exists():
            assert proc.poll() is None, "run ended before the checkpoint to kill at"
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    return json.loads(stdout.strip().splitlines()[-1])


def test_crash_midway_resumes_to_same_loss(trained, tmp_path):
    """An exception after the step-4 checkpoint; the rerun continues from step 4."""

    def crash(row):
        if row["step"] == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        train_label(records(16), records(4), LABELS, tiny_cfg(), tmp_path, progress=crash)
    resumed = train_label(records(16), records(4), LABELS, tiny_cfg(), tmp_path)
    assert resumed["resumed_from_step"] == 4
    assert resumed["final_loss"] == pytest.approx(trained[1]["final_loss"], rel=0.01)
    assert resumed["weights_sha1"] == trained[1]["weights_sha1"]


@pytest.mark.slow
def test_kill9_resume_reaches_same_loss(tmp_path):
    clean = _run(tmp_path / "clean")
    _run(tmp_path / "killed", kill_after_ckpt="step-00000004.pt")
    resumed = _run(tmp_path / "killed")
    assert resumed["resumed_from_step"] >= 4
    assert resumed["steps"] == clean["steps"] == 10
    assert resumed["final_loss"] == pytest.approx(clean["final_loss"], rel=0.01)
    log = [
        json.loads(x) for x in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in log] == list(range(1, 11))  # no step lost or logged twice


def test_zero_usable_rows(tmp_path):
    bad = [{"text": "  ", "label": "ham"}, {"text": "hi", "label": "other"}]
    with pytest.raises(DataError, match="no usable training rows"):
        train_label(bad, [], LABELS, tiny_cfg(), tmp_path)


def test_long_rows_are_truncated_and_counted(tmp_path):
    rows = [{"text": f"hi {i}", "label": LABELS[i % 2]} for i in range(8)]
    rows += [{"text": "spam offer " * 400, "label": "spam"}]
    s = train_label(rows, [], LABELS, tiny_cfg(max_steps=1, max_length=80), tmp_path)
    assert s["truncated_rows"] == 1


def test_missing_base_path(tmp_path):
    with pytest.raises(ZimoError, match="does not exist"):
        train_label(records(4), [], LABELS, tiny_cfg(base=str(tmp_path / "nope")), tmp_path)


def test_unknown_lora_target_module(tmp_path):
    cfg = tiny_cfg(lora={"layers": 2, "target_modules": ["q_proj", "query_key_value"]})
    with pytest.raises(ZimoError, match="query_key_value"):
        train_label(records(4), [], LABELS, cfg, tmp_path)


def test_max_length_too_small_for_prompt(tmp_path):
    with pytest.raises(ZimoError, match="max_length"):
        train_label(records(4), [], LABELS, tiny_cfg(max_length=40), tmp_path)


def test_early_stopping_on_flat_dev_loss(tmp_path):
    cfg = tiny_cfg(
        lr=1e-12, max_steps=20, eval_every=1, early_stopping={"patience": 2, "min_delta": 0.01}
    )
    s = train_label(records(16), records(4), LABELS, cfg, tmp_path)
    assert s["stopped_early"] and s["steps"] == 3


def test_early_stopping_ends_on_the_best_dev_loss(tmp_path):
    # A far too high learning rate: the dev loss falls, then climbs. Patience is never used up,
    # so the run goes to its last step and must still hand back the weights of its best eval.
    cfg = tiny_cfg(lr=0.3, max_steps=6, eval_every=1, early_stopping={"patience": 100})
    s = train_label(records(16), records(4), LABELS, cfg, tmp_path)
    dev = {
        r["step"]: r["dev_loss"]
        for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines())
        if "dev_loss" in r
    }
    best = min(dev, key=dev.get)
    assert not s["stopped_early"] and s["steps"] == 6
    assert best < 6, f"the setup should overshoot: dev losses {dev}"
    assert s["restored_best_step"] == best
    assert s["best_dev_loss"] == pytest.approx(dev[best], abs=1e-4)
    # The same run without early stopping keeps its last weights: different ones.
    plain = train_label(
        records(16),
        records(4),
        LABELS,
        cfg.model_copy(update={"early_stopping": None}),
        tmp_path / "plain",
    )
    assert plain["restored_best_step"] is None
    assert plain["weights_sha1"] != s["weights_sha1"]
