"""Warm start for flywheel rounds: which adapter a round continues, on which rows, and that
the continued adapter starts from the earlier one's weights (real gecko, real PEFT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train_fixtures import LABELS, records, tiny_cfg
from zimo.records import make_record
from zimo.train import train_label
from zimo.train.warm_start import STATE_FILE, load_adapter_weights, plan, record


def _human(n: int, start: int = 0) -> list[dict]:
    return [make_record(f"human message {i}", source="d", offset=i, label=LABELS[i % 2])
            for i in range(start, start + n)]  # fmt: skip


def _teacher(n: int) -> list[dict]:
    return [make_record(f"escalated message {i}", source="flywheel", offset=i, label="spam",
                        origin="teacher") for i in range(n)]  # fmt: skip


def _artifact(root: Path, name: str, cfg, train: list[dict]) -> Path:
    d = root / name
    (d / "adapter").mkdir(parents=True)
    record(d, cfg, train)
    return d


def test_a_round_continues_the_newest_adapter_on_new_teacher_rows_and_a_replay(tmp_path):
    cfg = tiny_cfg(warm_start={"replay_rows": 5})
    human, teacher = _human(40), _teacher(7)
    older = _artifact(tmp_path, "a1", cfg, human[:30])
    parent = _artifact(tmp_path, "a2", cfg, human)
    init, rows, info = plan(cfg, human + teacher, [parent, older])
    assert init == parent / "adapter"
    assert info["warm_start"] == {"parent": "a2", "new_rows": 7, "replay_rows": 5}
    texts = {r["text"] for r in rows}
    assert {r["text"] for r in teacher} <= texts and len(rows) == 12
    assert plan(cfg, human + teacher, [parent])[1] == rows  # the same draw on a rerun
    # The state names every row trained on, so the next round sees these 7 as learned.
    seen = json.loads((parent / STATE_FILE).read_text())["seen"]
    assert len(seen) == 40


@pytest.mark.parametrize("case", ["off", "no earlier", "recipe", "human rows", "removed",
                                  "nothing new"])  # fmt: skip
def test_otherwise_it_trains_from_scratch_and_says_why(tmp_path, case):
    cfg = tiny_cfg(warm_start={"replay_rows": 5})
    human, teacher = _human(40), _teacher(7)
    train = human + teacher
    earlier = [_artifact(tmp_path, "a1", cfg, human)]
    if case == "off":
        cfg = tiny_cfg()
    elif case == "no earlier":
        earlier = []
    elif case == "recipe":
        earlier = [_artifact(tmp_path, "a0", tiny_cfg(lora={"layers": 2, "r": 8}), human)]
    elif case == "human rows":
        train = human + teacher + _human(3, start=100)
    elif case == "removed":
        train = human[1:] + teacher
    elif case == "nothing new":
        train = human
    init, rows, info = plan(cfg, train, earlier)
    assert init is None and rows == train
    if case == "off":
        assert info == {}
    else:
        assert info["warm_start"].startswith("from scratch")


def test_the_continued_adapter_starts_from_the_earlier_weights(tmp_path):
    from zimo.models import resolve_model_dir
    from zimo.train.setup import prepare_model

    cfg = tiny_cfg(max_steps=2)
    train_label(records(8), records(4), LABELS, cfg, tmp_path / "first")
    saved = tmp_path / "first" / "adapter"
    model, *_ = prepare_model(cfg, resolve_model_dir(cfg.base))
    fresh = {k: v.clone() for k, v in model.state_dict().items() if "lora_B" in k}
    assert all(float(v.abs().sum()) == 0 for v in fresh.values())  # LoRA B starts at zero
    load_adapter_weights(model, saved)
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert any(float(v.abs().sum()) > 0 for v in loaded.values())
    # A warm-started run writes an adapter that went on from there.
    summary = train_label(records(8), records(4), LABELS, cfg, tmp_path / "second",
                          init_adapter=saved)  # fmt: skip
    assert summary["steps"] == 2
    other, *_ = prepare_model(tiny_cfg(lora={"layers": 2, "r": 8}), resolve_model_dir(cfg.base))
    with pytest.raises((RuntimeError, ValueError)):
        load_adapter_weights(other, saved)
