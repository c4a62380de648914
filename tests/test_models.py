"""Model registry: presets, one-time GGUF conversion, loading, and clear errors."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from models_fixtures import gecko
from zimo import models
from zimo.errors import ZimoError


def test_list_presets_shape():
    rows = {r["name"]: r for r in models.list_presets()}
    assert {"gecko", "gecko-zh", "otter", "bison"} <= set(rows)
    for r in rows.values():
        assert set(r) >= {"name", "description", "size", "embedded", "available"}
    assert rows["gecko"]["embedded"] and rows["gecko"]["available"]
    assert not rows["otter"]["embedded"]


def test_gecko_converted_folder_is_clean_hf_model():
    folder = models.resolve_model_dir("gecko")
    assert (folder / "model.safetensors").is_file()
    cfg = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in cfg  # Trainer refuses models that carry it
    assert cfg["model_type"] == "llama"
    tok_files = {p.name for p in folder.iterdir()}
    assert "tokenizer.json" in tok_files
    # the chat template survives the conversion
    template = (
        (folder / "chat_template.jinja").read_text()
        if (folder / "chat_template.jinja").is_file()
        else json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
    )
    assert "<|im_start|>" in template
    # a second call is a no-op returning the same folder
    assert models.resolve_model_dir("gecko") == folder


def test_gecko_greedy_answer_is_sane():
    model, tok = gecko()
    msgs = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France? Answer in one word."},
    ]
    enc = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0][enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_local_folder_works_as_base():
    folder = models.resolve_model_dir("gecko")
    assert models.resolve_model_dir(str(folder)) == folder


def test_otter_without_weights_says_how(monkeypatch, tmp_path):
    monkeypatch.delenv("ZIMO_OTTER", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    with pytest.raises(ZimoError) as e:
        models.resolve_model_dir("otter")
    assert "ZIMO_OTTER" in e.value.one_line()
    monkeypatch.setenv("ZIMO_OTTER", str(tmp_path / "nope"))
    with pytest.raises(ZimoError) as e:
        models.resolve_model_dir("otter")
    assert "never downloads" in e.value.one_line()


def test_otter_from_env_folder(monkeypatch):
    folder = models.resolve_model_dir("gecko")
    monkeypatch.setenv("ZIMO_OTTER", str(folder))
    assert models.resolve_model_dir("otter") == folder
    assert {r["name"]: r for r in models.list_presets()}["otter"]["available"]


@pytest.mark.parametrize("spec", ["/no/such/model", "no-such-preset"])
def test_missing_base_is_one_clear_error(spec):
    with pytest.raises(ZimoError) as e:
        models.resolve_model_dir(spec)
    assert "does not exist" in e.value.one_line()


def test_uncached_hub_id_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ZimoError) as e:
        models.resolve_model_dir("someorg/some-model-that-is-not-cached")
    assert "never downloads" in e.value.one_line()


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ZimoError, match="config.json"):
        models.resolve_model_dir(tmp_path)


def _slow_build(target: str, counter: str) -> None:
    def build(tmp: Path) -> None:
        with open(counter, "a") as f:
            f.write("x")
        time.sleep(0.5)
        (tmp / "weights.bin").write_bytes(b"123")

    models._build_once(Path(target), build)


def test_build_once_is_atomic_and_single_under_concurrency(tmp_path):
    target, counter = tmp_path / "models" / "m", tmp_path / "count"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_build, args=(str(target), str(counter))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert counter.read_text() == "x"  # converted exactly once
    assert (target / "weights.bin").read_bytes() == b"123"
    assert not list(target.parent.glob(".m.tmp-*"))


def test_failed_build_leaves_nothing(tmp_path):
    target = tmp_path / "models" / "broken"

    def build(tmp: Path) -> None:
        (tmp / "half").write_text("partial")
        raise RuntimeError("killed mid-conversion")

    with pytest.raises(RuntimeError):
        models._build_once(target, build)
    assert not target.exists()
    assert not list(target.parent.glob(".broken.tmp-*"))


def test_models_cli_json():
    from typer.testing import CliRunner

    from zimo.cli import app  # the shipped CLI, commands registered through entry points

    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0
    assert [r["name"] for r in json.loads(res.output)][:2] == ["gecko", "gecko-zh"]


def _cached_conversion(target: Path, source: str, size: int) -> None:
    target.mkdir(parents=True)
    (target / "zimo_model.json").write_text("{}")
    (target / "weights.bin").write_bytes(b"123")
    (target / "zimo_source.json").write_text(json.dumps({"source_gguf": source, "source_size": size}))  # fmt: skip


def test_a_cached_conversion_follows_its_gguf_to_a_new_environment(tmp_path):
    # A re-created virtualenv installs the same GGUF elsewhere; the old path is gone.
    gguf = tmp_path / "new-venv" / "m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    target = tmp_path / "models" / "m"
    _cached_conversion(target, str(tmp_path / "old-venv" / "m.gguf"), gguf.stat().st_size)
    assert models._embedded_dir(target, gguf) == target
    rec = json.loads((target / "zimo_source.json").read_text())
    assert rec["source_gguf"] == str(gguf)
    assert (target / "weights.bin").read_bytes() == b"123"  # re-pointed, not converted again
    from zimo.export.gguf_writer import source_gguf

    assert source_gguf(target) == gguf


def test_a_cached_conversion_of_other_weights_is_not_served(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a real gguf")
    target = tmp_path / "models" / "m"
    _cached_conversion(target, str(tmp_path / "gone.gguf"), 12345)
    with pytest.raises(
        (ValueError, OSError, RuntimeError)
    ):  # converting again from this bogus file fails...
        models._embedded_dir(target, gguf)
    assert not (target / "weights.bin").exists()  # ...and the stale conversion is gone
