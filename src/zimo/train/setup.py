"""Model preparation shared by the label and chat trainers: base, LoRA/QLoRA/full, device,
dtype, threads, and joining a launcher's process group (``torchrun`` / ``accelerate launch``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from zimo.errors import ZimoError
from zimo.hw import cpu_has_fast_bf16, idle_cores
from zimo.train.config import TrainConfig
from zimo.train.split import decoder_parts

_LINEAR_TYPES = (torch.nn.Linear,)


def layer_indices(spec: int | list[int] | None, n_layers: int) -> list[int]:
    """``N`` = top N layers, list = those indices, None = all; validated against the model."""
    if spec is None:
        return list(range(n_layers))
    if isinstance(spec, int):
        return list(range(max(0, n_layers - spec), n_layers))
    bad = [i for i in spec if not 0 <= i < n_layers]
    if bad:
        raise ZimoError(
            f"train.lora.layers has indices {bad} outside 0..{n_layers - 1}",
            f"this base has {n_layers} decoder layers",
        )
    return sorted(set(spec))


def _layer_linear_names(model: torch.nn.Module) -> set[str]:
    """Short names of the linear modules inside the decoder layers (q_proj, up_proj, ...)."""
    body = decoder_parts(model).body
    return {
        n.rsplit(".", 1)[-1] for n, m in body.layers.named_modules() if isinstance(m, _LINEAR_TYPES)
    }


def apply_lora(model: torch.nn.Module, cfg: TrainConfig, layers: list[int]):
    """Wrap ``model`` with PEFT LoRA on ``layers``; clear error for unknown target modules."""
    from peft import LoraConfig, get_peft_model

    have = _layer_linear_names(model)
    targets = cfg.lora.target_modules
    if targets == "all-linear":
        # peft only takes layers_to_transform with a list of names, so expand it ourselves.
        targets = sorted(have)
    else:
        missing = sorted(set(targets) - have)
        if missing:
            raise ZimoError(
                f"train.lora.target_modules {missing} are not modules of this base",
                f"choose from {sorted(have)} or use all-linear",
            )
    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        layers_pattern="layers",
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(cfg.seed)  # identical LoRA init on every rank and on a resume
    return get_peft_model(model, lcfg)


def train_device(cfg: TrainConfig) -> torch.device:
    """The device this process trains on: its CUDA GPU (``LOCAL_RANK`` under a launcher) or CPU."""
    if cfg.device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if cfg.device == "cuda":
        raise ZimoError(
            "train.device is cuda but torch sees no CUDA GPU",
            "check nvidia-smi and that torch is a CUDA build, or set train.device: auto",
        )
    return torch.device("cpu")


def init_distributed(device: torch.device) -> None:
    """Join the process group a launcher describes in the environment, if not joined yet.

    ``torchrun`` and ``accelerate launch`` set ``WORLD_SIZE``/``RANK``/``MASTER_ADDR``; the
    trainer then shards batches over ranks and all-reduces gradients itself (see ``loop.py``).
    NCCL on GPUs, gloo on CPUs.
    """
    dist = torch.distributed
    if not dist.is_available() or dist.is_initialized():
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def launcher_engine() -> str | None:
    """``fsdp`` / ``deepspeed`` when ``accelerate launch`` runs with such a config, else None.

    Those sharding wrappers must see the whole forward, so the trainer then runs the model
    through accelerate instead of its split CPU fast path (see ``loop.py``). DDP needs no
    wrapper: the trainer all-reduces gradients itself. ``ZIMO_TRAIN_ENGINE=accelerate`` forces
    the accelerate path without a launcher (single process; for tests and debugging).
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed"
    if os.environ.get("ZIMO_TRAIN_ENGINE", "") == "accelerate":
        return "accelerate"
    return None


def check_qlora(device: torch.device) -> None:
    """QLoRA needs a CUDA GPU and bitsandbytes; say so in one line otherwise."""
    if device.type != "cuda":
        raise ZimoError(
            "train.method qlora needs a CUDA GPU (4-bit bitsandbytes kernels); this run is on "
            "the CPU",
            "use method: lora on the CPU (bf16 frozen base where the CPU has bf16), "
            "or run on a CUDA machine",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ZimoError(
            "train.method qlora needs the bitsandbytes package, which is not installed",
            "pip install bitsandbytes into this environment, or use method: lora",
        ) from e


def _load_4bit(base_dir: Path, device: torch.device):
    """The base in 4-bit NF4 (double-quantised) on ``device``, ready for LoRA (QLoRA recipe)."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from zimo.models import load_tokenizer

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    qcfg = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(base_dir),
        quantization_config=qcfg,
        device_map={"": device.index or 0},
        dtype=compute,
        local_files_only=True,
    )
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = load_tokenizer(base_dir).pad_token_id
    # Casts norms/embeddings to fp32 and freezes everything; our split forward needs no
    # gradient checkpointing (backward stops at the first trained layer).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def prepare_model(cfg: TrainConfig, base_dir: Path) -> tuple[Any, Any, int, dict[str, Any]]:
    """Load the base, make the chosen layers trainable; return (model, parts, first, info).

    The model ends up on :func:`train_device`; a launcher's process group is joined first.
    """
    from zimo.models import load_causal_lm

    device = train_device(cfg)
    if cfg.method == "qlora":
        check_qlora(device)
    init_distributed(device)
    try:
        if cfg.method == "qlora":
            model = _load_4bit(base_dir, device)
        else:
            model, _tok = load_causal_lm(base_dir, dtype=torch.float32)
    except Exception as e:
        if is_oom(e):
            raise oom_error(cfg, device, "loading the base model") from e
        raise
    n_layers = decoder_parts(model).n_layers
    if cfg.method in ("lora", "qlora"):
        layers = layer_indices(cfg.lora.layers, n_layers)
        for p in model.parameters():
            p.requires_grad_(False)
        model = apply_lora(model, cfg, layers)
    else:
        layers = layer_indices(cfg.full_layers, n_layers)
        parts = decoder_parts(model)
        for p in model.parameters():
            p.requires_grad_(False)
        # Embeddings stay frozen: they are tied to the LM head in small bases, and training a
        # 49k x 576 matrix would dominate the step for little gain on a narrow task.
        for i in layers:
            for p in parts.body.layers[i].parameters():
                p.requires_grad_(True)
        for p in parts.body.norm.parameters():
            p.requires_grad_(True)
    if cfg.method != "qlora":  # a 4-bit model was loaded onto its GPU already
        model.to(device)
    parts = decoder_parts(model)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {
        "layers_trained": layers,
        "n_layers": n_layers,
        "trainable_params": n_train,
        "train_device": str(device),
    }
    return model, parts, min(layers), info


def cast_frozen_bf16(model: torch.nn.Module) -> None:
    """Store frozen weights in bf16 (trainable weights and optimizer state stay fp32).

    Not under FSDP/DeepSpeed: their flat parameters need one dtype, and accelerate's mixed
    precision sets the compute dtype there.
    """
    if launcher_engine():
        return
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.to(torch.bfloat16)


def cuda_mixed_precision(cfg: TrainConfig) -> str:
    """``bf16``, ``fp16`` or ``no`` for a CUDA run.

    ``train.bf16: auto`` follows ``accelerate launch``'s ``mixed_precision`` when one is set
    (``ACCELERATE_MIXED_PRECISION``), else bf16 where the GPU supports it, else fp16.
    """
    ok = torch.cuda.is_bf16_supported()
    if cfg.bf16 is False:
        return "no"
    want = "bf16" if cfg.bf16 is True else os.environ.get("ACCELERATE_MIXED_PRECISION", "")
    if want not in ("bf16", "fp16", "no"):
        want = "bf16" if ok else "fp16"
    if want == "bf16" and not ok:
        raise ZimoError(
            "bf16 mixed precision was asked for (train.bf16 or accelerate's mixed_precision) "
            "but this GPU does not support bf16",
            "set train.bf16: auto with mixed_precision fp16 (loss scaling), or false (fp32)",
        )
    return want


def choose_bf16(cfg: TrainConfig, measure) -> tuple[bool, dict[str, Any]]:
    """CPU: bf16 only where the CPU has bf16 hardware and a timed step is faster than fp32.

    ``measure(bf16: bool) -> seconds`` runs one representative step. CUDA: bf16 autocast where
    the GPU supports it (no timing: it always pays there); without bf16 support, ``auto``
    returns False and the trainer uses fp16 autocast with loss scaling instead.
    """
    cuda = train_device(cfg).type == "cuda"
    if launcher_engine():  # accelerate applies the mixed precision (Fitter._prepare_accelerate)
        mp = cuda_mixed_precision(cfg) if cuda else "no"
        return False, {"bf16_reason": "accelerate", "mixed_precision": mp}
    if cuda:
        mp = cuda_mixed_precision(cfg)
        return mp == "bf16", {"bf16_reason": "cuda", "mixed_precision": mp}
    if cfg.bf16 is not True:
        if cfg.bf16 is False or not cpu_has_fast_bf16():
            return False, {"bf16_reason": "no bf16 hardware" if cfg.bf16 == "auto" else "off"}
    if cfg.bf16 is True:
        return True, {"bf16_reason": "forced on"}
    t = {False: [], True: []}
    for flag in (False, True, False, True):
        t[flag].append(measure(flag))
    fp32, bf16 = min(t[False]), min(t[True])
    return bf16 < 0.9 * fp32, {
        "bf16_reason": "measured",
        "step_s_fp32": round(fp32, 4),
        "step_s_bf16": round(bf16, 4),
    }


def is_oom(exc: BaseException) -> bool:
    """True for an allocator failure: CUDA OOM, Python ``MemoryError``, torch's CPU allocator."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg.lower() or "can't allocate memory" in msg
    )


def oom_error(cfg: TrainConfig, device: torch.device | str, where: str) -> ZimoError:
    """One line for an out-of-memory failure: what ran out, while doing what, and the fixes."""
    device = torch.device(device)
    what = f"GPU memory ({device})" if device.type == "cuda" else "memory (RAM)"
    fixes = [
        f"lower train.batch_size (now {cfg.batch_size}) and raise train.grad_accum "
        f"(now {cfg.grad_accum}) to keep the same effective batch",
        f"lower train.max_length (now {cfg.max_length})",
    ]
    if cfg.method == "full":
        fixes.append("use method: lora, or full_layers: N to train only the top N layers")
    elif cfg.lora.layers is None or isinstance(cfg.lora.layers, list) or cfg.lora.layers > 8:
        fixes.append("put LoRA on fewer layers (lora.layers: 8)")
    if where.startswith("caching"):
        fixes.insert(0, "set train.cache_frozen: false")
    if device.type == "cuda" and cfg.method != "qlora":
        fixes.append("method: qlora stores the base in 4 bits")
    return ZimoError(
        f"out of {what} while {where} (batch_size {cfg.batch_size}, max_length "
        f"{cfg.max_length}, method {cfg.method})",
        "; or ".join(fixes),
    )


def setup_threads(cfg: TrainConfig) -> int:
    """``train.threads`` when set, else the cores other work leaves idle (:func:`idle_cores`;
    every core on an idle machine). This process's own main thread, busy loading and
    tokenising until now, is not counted as other work."""
    n = cfg.threads or idle_cores(own_load=1.0)
    torch.set_num_threads(n)
    return n


RETUNE_EVERY_S = 30.0


def retune_threads(cfg: TrainConfig) -> int:
    """Re-read the machine's load during a long run (other jobs start and stop): our torch
    threads were runnable all along, so they are this process's own share of the load."""
    if not cfg.threads:
        torch.set_num_threads(idle_cores(own_load=torch.get_num_threads()))
    return torch.get_num_threads()


def atomic_dir(final: Path):
    """Context-free helper: a temp dir next to ``final`` and a commit function that renames."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))

    def commit() -> Path:
        os.chmod(tmp, 0o755)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{time.time_ns()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        return final

    return tmp, commit


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
