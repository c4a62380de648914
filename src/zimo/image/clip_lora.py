"""LoRA on a local CLIP's towers, trained against the label prompts.

The image tower's attention projections (transformers; the residual MLPs for open_clip, whose
attention module bypasses wrapped projections) take LoRA adapters; with ``text_tower`` the text
tower's too. Loss: cross-entropy of the image embedding against the label prompts' embeddings
(each label's prompts averaged, as zero-shot does), at the checkpoint's own temperature, so the
tuned model starts from exactly its zero-shot predictions. Rows with a free-text caption add
CLIP's in-batch contrastive loss against their own captions (each caption is its own
positive), which is also what trains a caption-only project.

Budgeted by CPU time of the process like the embedded default (``zimo.image.fit``): the LR
follows the same warm-up/decay triangle over the fraction of the budget spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from zimo.image.clip import ClipBackend
from zimo.image.fit import augment, lr_at


@dataclass
class LoraReport:
    steps: int
    epochs: float
    images: int
    cpu_s: float
    wall_s: float
    final_loss: float
    first_loss: float
    stopped_by: str
    trainable_params: int


def _label_vecs(clip: ClipBackend, prompts: list[str], n_labels: int) -> torch.Tensor:
    feats = F.normalize(clip.text_features(prompts), dim=-1)
    return F.normalize(feats.view(n_labels, -1, feats.shape[-1]).mean(dim=1), dim=-1)


def train_clip_lora(clip: ClipBackend, images: torch.Tensor, targets: torch.Tensor,
                    prompts: list[str], n_labels: int, cfg, batch_size: int, flip: bool = True,
                    captions: list[str | None] | None = None,
                    on_step: Callable[[float, float], None] | None = None):  # fmt: skip
    """Train LoRA adapters in place on ``clip.model``; returns (peft model, report).

    ``images``: uint8 (N, 3, S, S); ``targets``: label index or -1 (caption only);
    ``prompts``: the label prompts, label-major (n_labels x templates)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    for p in clip.model.parameters():
        p.requires_grad_(False)
    peft_model = get_peft_model(clip.model, LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=clip.lora_targets(cfg.text_tower)))  # fmt: skip
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    scale = clip.logit_scale
    frozen_labels = None
    if not cfg.text_tower:
        with torch.no_grad():
            frozen_labels = _label_vecs(clip, prompts, n_labels)
    has_cap = np.array([bool(c) for c in captions]) if captions else np.zeros(len(images), bool)
    n = len(images)
    bs = max(2, min(batch_size, n))
    steps_per_epoch = max(1, n // bs)
    total = steps_per_epoch * cfg.max_epochs
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step, seen, first, last, stopped = 0, 0, math.nan, math.nan, "epochs"
    tower = clip.tower().train()
    while step < total and stopped == "epochs":
        order = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            spent = (time.process_time() - cpu0) / cfg.budget_cpu_s
            p = max(step / total, spent)
            if p >= 1.0:
                stopped = "budget" if spent >= 1.0 else "epochs"
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(p, cfg.lr, 0.1)
            idx = order[b * bs : (b + 1) * bs]
            emb = F.normalize(tower.features(augment(images[idx], gen, flip).contiguous()), dim=-1)
            loss = emb.new_zeros(())
            y = targets[idx]
            lab = y >= 0
            if lab.any():
                lv = frozen_labels if frozen_labels is not None else _label_vecs(clip, prompts, n_labels)
                loss = loss + F.cross_entropy(scale * emb[lab] @ lv.T, y[lab])
            cap_rows = [int(i) for i in idx if has_cap[int(i)]]
            if len(cap_rows) > 1:
                sel = torch.tensor([bool(has_cap[int(i)]) for i in idx])
                tv = F.normalize(clip.text_features([captions[i] for i in cap_rows]), dim=-1)
                sims = scale * emb[sel] @ tv.T
                ar = torch.arange(len(cap_rows))
                loss = loss + 0.5 * (F.cross_entropy(sims, ar) + F.cross_entropy(sims.T, ar))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(idx)
            last = float(loss.detach())
            first = last if math.isnan(first) else first
            if on_step is not None:
                on_step(p, last)
    peft_model.eval()
    return peft_model, LoraReport(step, seen / n, seen, time.process_time() - cpu0,
                                  time.perf_counter() - wall0, last, first, stopped,
                                  sum(p.numel() for p in params))  # fmt: skip


def label_vectors(clip: ClipBackend, prompts: list[str], n_labels: int) -> np.ndarray:
    with torch.inference_mode():
        return _label_vecs(clip, prompts, n_labels).numpy().astype(np.float32)
