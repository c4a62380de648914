"""GPU and scale-out paths: clear errors where they cannot run (CPU box), out-of-memory turned
into one line, the accelerate config files valid for accelerate, the launcher entry point."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from project_fixtures import SMALL_YAML, make_tiny_project
from train_fixtures import LABELS, records, tiny_cfg
from zimo.errors import ZimoError
from zimo.train import train_label
from zimo.train.setup import check_qlora, is_oom, oom_error, train_device

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")


def _one_line(e: ZimoError) -> str:
    text = e.one_line()
    assert "\n" not in text and "Traceback" not in text
    return text


@no_cuda
def test_qlora_on_cpu_is_one_clear_line(tmp_path):
    with pytest.raises(ZimoError) as e:
        train_label(records(8), [], LABELS, tiny_cfg(method="qlora"), tmp_path)
    text = _one_line(e.value)
    assert "qlora needs a CUDA GPU" in text and "method: lora" in text
    assert not (tmp_path / "adapter").exists()


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="installed")
def test_qlora_without_bitsandbytes_says_what_to_install():
    # The check runs before any CUDA call, so the GPU-side message is testable here.
    with pytest.raises(ZimoError) as e:
        check_qlora(torch.device("cuda", 0))
    assert "pip install bitsandbytes" in _one_line(e.value)


@no_cuda
def test_device_cuda_without_gpu_is_an_error():
    with pytest.raises(ZimoError, match="no CUDA GPU"):
        train_device(tiny_cfg(device="cuda"))
    assert train_device(tiny_cfg(device="auto")).type == "cpu"


def test_real_allocator_failures_are_recognised_as_oom():
    with pytest.raises(RuntimeError) as cpu_alloc:  # torch's CPU allocator, for real
        torch.empty(1 << 60, dtype=torch.uint8)
    assert is_oom(cpu_alloc.value)
    assert is_oom(MemoryError())
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom(ValueError("out of range"))


def test_oom_message_names_what_ran_out_and_the_fixes():
    cpu = _one_line(oom_error(tiny_cfg(batch_size=16, grad_accum=2), "cpu", "training (step 3)"))
    assert cpu.startswith("out of memory (RAM) while training (step 3)")
    for fix in ("train.batch_size (now 16)", "train.grad_accum (now 2)", "train.max_length"):
        assert fix in cpu
    gpu = _one_line(oom_error(tiny_cfg(method="full"), "cuda:1", "evaluating dev loss"))
    assert gpu.startswith("out of GPU memory (cuda:1)")
    assert "method: lora" in gpu and "qlora" in gpu
    wide = _one_line(oom_error(tiny_cfg(lora={"layers": None}), "cpu", "training"))
    assert "lora.layers: 8" in wide
    cache = _one_line(oom_error(tiny_cfg(), "cpu", "caching the frozen layers' outputs"))
    assert "cache_frozen: false" in cache


def test_oom_inside_the_training_loop_becomes_one_line(tmp_path):
    """A real allocator failure raised mid-run (from the per-step callback, the cheapest place
    to force one without a huge batch) surfaces as one ZimoError naming the step."""

    def progress(row):
        torch.empty(1 << 60, dtype=torch.uint8)

    cfg = tiny_cfg(max_steps=2, checkpoint_every=10)
    with pytest.raises(ZimoError) as e:
        train_label(records(8), records(4), LABELS, cfg, tmp_path, progress=progress)
    text = _one_line(e.value)
    assert text.startswith("out of memory (RAM) while training (step 1 of 2)")
    assert "train.batch_size (now 4)" in text


# -- accelerate config files --------------------------------------------------------------------


def _launch_args(path: Path):
    # accelerate's own parser and validation (what `accelerate launch --config_file` runs).
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(
        ["--config_file", str(path), "-m", "zimo.train.cli", "fit", "proj"]
    )
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def test_accelerate_configs_exist():
    assert {p.stem for p in CONFIGS} == {"ddp", "fsdp", "deepspeed_zero2"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_parses_with_known_keys(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    cfg = ClusterConfig.from_yaml_file(str(path))  # raises on unknown top-level keys
    known = {a.dest for a in launch_command_parser()._actions}
    nested = {**(cfg.fsdp_config or {}), **(cfg.deepspeed_config or {})}
    unknown = [k for k in nested if k not in known]
    assert not unknown, f"{path.name}: keys accelerate launch does not know: {unknown}"
    assert "-m zimo.train.cli" in path.read_text()  # the usage line names the real entry point
    args, _ = _launch_args(path)
    assert args.num_processes >= 2


def test_fsdp_config_builds_accelerates_fsdp_plugin(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _ = _launch_args(ROOT / "configs" / "accelerate" / "fsdp.yaml")
    assert args.use_fsdp
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert env["FSDP_SYNC_MODULE_STATES"] == "true"
    if not torch.cuda.is_available():  # (syncing module states asks for the current GPU,
        monkeypatch.setenv("FSDP_SYNC_MODULE_STATES", "false")  # and RAM-efficient loading
        monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")  # turns syncing on)
    plugin = FullyShardedDataParallelPlugin()  # reads and validates the FSDP_* variables
    assert plugin.use_orig_params  # LoRA: frozen and trainable params share flat buffers
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")


def test_deepspeed_config_is_zero2(monkeypatch):
    args, defaults = _launch_args(ROOT / "configs" / "accelerate" / "deepspeed_zero2.yaml")
    assert args.use_deepspeed
    assert defaults.deepspeed_config["zero_stage"] == 2
    assert args.zero_stage == 2 and args.offload_optimizer_device == "none"


def test_ddp_config_is_multi_gpu():
    args, _ = _launch_args(ROOT / "configs" / "accelerate" / "ddp.yaml")
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed


# -- launcher entry point -----------------------------------------------------------------------


def test_launch_entry_needs_a_split(tmp_path):
    from zimo.train.cli import launch_train

    proj = make_tiny_project(tmp_path / "p")
    with pytest.raises(ZimoError, match="no split yet"):
        launch_train(proj)


def _launch_project(tmp_path: Path, batch_size: int) -> Path:
    """A tiny fast project (2 LoRA layers, 1 thread) plus train/dev files beside it."""
    from zimo.dataset_io import write_records

    fast = SMALL_YAML.replace(
        "  batch_size: 4\n",
        f"  batch_size: {batch_size}\n  lora: {{layers: 2, r: 4}}\n  threads: 1\n",
    )
    proj = make_tiny_project(tmp_path / "p", yaml_text=fast)
    write_records(tmp_path / "train.parquet", records(8))
    write_records(tmp_path / "dev.parquet", records(4))
    return proj


def test_launch_entry_trains_from_files(tmp_path):
    from zimo.train.cli import launch_train

    proj = _launch_project(tmp_path, batch_size=4)
    out = tmp_path / "out"
    s = launch_train(proj, out, tmp_path / "train.parquet", tmp_path / "dev.parquet")
    assert s["steps"] == 3 and s["world_size"] == 1  # max_steps: 3 from the project's yaml
    assert (out / "adapter" / "adapter_config.json").is_file()


# -- the accelerate engine path (FSDP / DeepSpeed on GPUs), run here as a single CPU process ----


def _losses(out: Path) -> list[float]:
    import json

    return [json.loads(x)["loss"] for x in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow  # 30-layer forward + full-state checkpoints: ~70 s on a busy 2-core box
def test_accelerate_engine_matches_native_and_resumes(tmp_path, monkeypatch):
    """The whole-model path used under FSDP/DeepSpeed trains to the same per-step losses as
    the split fast path, and resumes from its accelerate state after a crash."""
    from accelerate.state import AcceleratorState

    cfg = tiny_cfg(max_steps=4, checkpoint_every=2, cache_frozen=False)
    native = train_label(records(8), records(4), LABELS, cfg, tmp_path / "native")

    def crash(row):
        if row["step"] == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setenv("ZIMO_TRAIN_ENGINE", "accelerate")
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            train_label(records(8), records(4), LABELS, cfg, tmp_path / "acc", progress=crash)
        assert (tmp_path / "acc" / "checkpoints" / "acc-step-00000002").is_dir()
        resumed = train_label(records(8), records(4), LABELS, cfg, tmp_path / "acc")
    finally:
        AcceleratorState._reset_state(True)
    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == 4
    assert _losses(tmp_path / "acc") == pytest.approx(_losses(tmp_path / "native"), rel=2e-3)
    assert resumed["final_dev_loss"] == pytest.approx(native["final_dev_loss"], rel=2e-3)
    assert (tmp_path / "acc" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow  # two processes each load gecko: ~30 s quiet, minutes on a busy 2-core box
def test_torchrun_two_cpu_processes_through_the_launch_entry(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    proj = _launch_project(tmp_path, batch_size=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "zimo.train.cli"]
    cmd += ["fit", str(proj), "--train", str(tmp_path / "train.parquet")]
    cmd += ["--dev", str(tmp_path / "dev.parquet"), "--out", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
