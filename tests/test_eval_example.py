"""The zh-instruct example project: its data, licence and config are consistent."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from zimo.eval.config import EvalConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zh-instruct"


def test_example_data_and_licence():
    rows = json.loads((EXAMPLE / "data" / "alpaca_zh_short.json").read_text(encoding="utf-8"))
    assert len(rows) >= 700
    assert all(set(r) == {"instruction", "input", "output"} for r in rows)
    assert all(8 <= len(r["output"]) <= 300 for r in rows)
    assert all(len(r["instruction"]) + len(r["input"]) <= 200 for r in rows)
    notes = (EXAMPLE / "data" / "README.md").read_text(encoding="utf-8")
    assert "CC BY-NC 4.0" in notes and "teacher" in notes.lower()


def test_example_config():
    raw = yaml.safe_load((EXAMPLE / "zimo.yaml").read_text(encoding="utf-8"))
    assert raw["task"] == "chat" and raw["train"]["base"] == "gecko-zh"
    assert raw["data"]["origin"] == "teacher" and raw["data"]["license"] == "CC BY-NC 4.0"
    cfg = EvalConfig.model_validate(raw["eval"])
    assert cfg.systems_for("chat") == ["finetuned", "base_zero_shot"]
    assert cfg.metrics_for("chat") == ["chrf", "rouge_l", "embed_sim"]


def test_example_loads_as_a_project():
    from zimo.config import load_project
    from zimo.eval.generate_eval import eval_config_of

    project = load_project(EXAMPLE)
    assert project.config.task == "chat"
    cfg = eval_config_of(project)
    assert cfg.systems_for("chat") == ["finetuned", "base_zero_shot"]
    assert cfg.max_test_rows == 200 and cfg.reference_for("chat") == "base_zero_shot"
