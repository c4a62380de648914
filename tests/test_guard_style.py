"""The machine-style adapter: what it is trained on, that it moves the scorer towards chat-model
text, that a calibration is only used with the adapter it was made with, and that the training
entry point writes a loadable adapter (real embedded models throughout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zimo.errors import ConfigError
from zimo.guard import GuardConfig
from zimo.guard.calibration import load_calibration
from zimo.guard.detect import Detector, load_scorer, pick_threads, torch_threads
from zimo.guard.lm_stats import compute_token_stats, tokenize
from zimo.guard.style import (
    HELD_OUT,
    adapter_id,
    resolve_adapter,
    shipped_adapter,
    split_alpaca,
    train_adapter,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_adapter_resolution_and_identity(tmp_path):
    shipped = shipped_adapter("gecko-zh")
    assert shipped is not None and resolve_adapter("auto", "gecko-zh") == shipped
    assert resolve_adapter("auto", "gecko") is None  # no English adapter shipped
    assert resolve_adapter("off", "gecko-zh") is None
    assert resolve_adapter(str(shipped), "gecko-zh") == shipped
    with pytest.raises(ConfigError, match="not an adapter folder"):
        resolve_adapter(str(tmp_path), "gecko-zh")
    ident = adapter_id(shipped)
    assert (
        ident.startswith("gecko-zh@") and ident == adapter_id(shipped) and adapter_id(None) is None
    )
    # The shipped calibration was made with the shipped adapter.
    assert load_calibration("gecko-zh")["style_adapter"] == ident


def test_training_answers_and_probe_answers_are_disjoint():
    rows = json.loads((DATA / "alpaca_zh_1k.json").read_text("utf-8"))
    train, held = split_alpaca(rows)
    assert len(held) == HELD_OUT and all(len(t) >= 60 for t in held)
    assert not set(train) & set(held)
    assert set(train) | set(held) == {r["output"] for r in rows if r["output"]}
    # A record that is not an object, or has no string answer, is skipped, not fatal.
    train2, held2 = split_alpaca([*rows, 7, {"output": None}, {"instruction": "x"}])
    assert (train2, held2) == (train, held)


def test_style_cli_bad_data_is_a_one_line_usage_error(tmp_path):
    from zimo.guard.style import main

    (tmp_path / "d.json").write_text('{"not": "a list"}')
    for data in (tmp_path / "missing.json", tmp_path / "d.json"):
        with pytest.raises(SystemExit) as e:
            main(["--data", str(data), "--out", str(tmp_path / "ad")])
        assert e.value.code == 2
    assert not (tmp_path / "ad").exists()


def test_the_adapter_makes_held_out_chat_answers_more_likely_than_human_text():
    """On GPT-4 answers it never saw, the adapted scorer's log-likelihood rises clearly more
    than on human HC3 answers: the gap the detector uses."""
    rows = json.loads((DATA / "alpaca_zh_1k.json").read_text("utf-8"))
    _, held = split_alpaca(rows)
    dev = [json.loads(x) for x in (DATA / "hc3_zh_qa_dev.jsonl").read_text("utf-8").splitlines()]
    human = [r["text"] for r in dev if r["label"] == 0 and len(r["text"]) >= 60][:12]
    machine = held[:12]
    gain = {}
    with torch_threads(pick_threads()):
        base, tok = load_scorer("gecko-zh")
        styled, _ = load_scorer("gecko-zh", "fp32", shipped_adapter("gecko-zh"))
        for name, texts in (("machine", machine), ("human", human)):
            ids = tokenize(texts, tok, 96)
            a = compute_token_stats(base, ids, need=("logp",))
            b = compute_token_stats(styled, ids, need=("logp",))
            gain[name] = np.mean([y.logp.mean() - x.logp.mean() for x, y in zip(a, b, strict=True)])
    assert gain["machine"] > 0
    assert gain["machine"] > gain["human"] + 0.1, gain


def test_a_calibration_from_another_adapter_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIMO_BF16", "0")
    det = Detector(GuardConfig(model="gecko-zh", style_adapter="off", bf16="off"))
    with pytest.raises(
        ConfigError, match="style adapter gecko-zh@.* but the guard scores with none"
    ):
        det.score(["脂肪肝患者和正常人一样每天都要吃水果，只是量和品种稍微要调整。" * 4])
    # Through the real CLI: one line, exit code 2, no traceback.
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "一段文字" * 20}) + "\n")
    cmd = [sys.executable, "-c", "from zimo.cli import main; main()", "guard", "score"]
    res = subprocess.run(
        [*cmd, str(tmp_path / "d.jsonl"), "--style-adapter", "off", "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2, res.stderr
    out = (res.stdout + res.stderr).strip()
    assert "error:" in out and "recalibrate" in out and "Traceback" not in out


def test_train_adapter_writes_a_loadable_adapter(tmp_path):
    texts = ["The answer is short and polite. I hope this helps!"] * 3
    steps = []
    out = train_adapter(
        "gecko",
        texts,
        tmp_path / "ad",
        rank=2,
        epochs=1,
        batch_size=2,
        progress=lambda s, n, loss: steps.append((s, n, loss)),
    )
    assert [s for s, _, _ in steps] == [1, 2] and all(np.isfinite(x) for *_, x in steps)
    conf = json.loads((out / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == "gecko" and conf["r"] == 2
    assert resolve_adapter(str(out), "gecko") == out
    assert [p.name for p in tmp_path.iterdir()] == ["ad"]  # moved in whole, no temp left
    model, tok = load_scorer("gecko", "fp32", out)
    (s,) = compute_token_stats(model, tokenize(texts[:1], tok, 16), need=("logp",))
    assert np.isfinite(s.logp).all()
