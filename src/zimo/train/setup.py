"""Model preparation shared by the label and chat trainers: base, LoRA/full, dtype, threads."""

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
from zimo.hw import cpu_has_fast_bf16, set_threads
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


def prepare_model(cfg: TrainConfig, base_dir: Path) -> tuple[Any, Any, int, dict[str, Any]]:
    """Load the base, make the chosen layers trainable; return (model, parts, first, info)."""
    from zimo.models import load_causal_lm

    model, _tok = load_causal_lm(base_dir, dtype=torch.float32)
    n_layers = decoder_parts(model).n_layers
    if cfg.method == "lora":
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
    parts = decoder_parts(model)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {"layers_trained": layers, "n_layers": n_layers, "trainable_params": n_train}
    return model, parts, min(layers), info


def cast_frozen_bf16(model: torch.nn.Module) -> None:
    """Store frozen weights in bf16 (trainable weights and optimizer state stay fp32)."""
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            p.data = p.data.to(torch.bfloat16)


def choose_bf16(cfg: TrainConfig, measure) -> tuple[bool, dict[str, Any]]:
    """bf16 only where the CPU has bf16 hardware and a timed step is faster than fp32.

    ``measure(bf16: bool) -> seconds`` runs one representative step.
    """
    if not torch.cuda.is_available() and cfg.bf16 is not True:
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


def setup_threads(cfg: TrainConfig) -> int:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
        return cfg.threads
    return set_threads()


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
