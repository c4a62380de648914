"""LoRA on a local CLIP's towers, trained against the label prompts.

The image tower's attention projections (transformers; the residual MLPs for open_clip, whose
attention module bypasses wrapped projections) take LoRA adapters; with ``text_tower`` the text
tower's too. Loss: cross-entropy of the image embedding against the label prompts' embeddings
(each label's prompts averaged, as zero-shot does), at the checkpoint's own temperature, so the
tuned model starts from exactly its zero-shot predictions. Rows with a free-text caption add
CLIP's in-batch contrastive loss against their own captions (each caption is its own positive).

Trained by ``zimo.image.fit.fit``, the loop of the embedded default: budgeted by CPU time of
the process, the LR on the same warm-up/decay triangle over the fraction of the budget spent
(AdamW here: only the adapters' parameters require gradients).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from zimo.image.clip import ClipBackend
from zimo.image.fit import FitReport, FitSettings, fit


@dataclass
class LoraReport:
    fit: FitReport
    first_loss: float
    trainable_params: int


def _label_vecs(clip: ClipBackend, prompts: list[str], n_labels: int) -> torch.Tensor:
    feats = F.normalize(clip.text_features(prompts), dim=-1)
    return F.normalize(feats.view(n_labels, -1, feats.shape[-1]).mean(dim=1), dim=-1)


def label_vectors(clip: ClipBackend, prompts: list[str], n_labels: int) -> np.ndarray:
    with torch.inference_mode():
        return _label_vecs(clip, prompts, n_labels).numpy().astype(np.float32)


def train_clip_lora(clip: ClipBackend, images: torch.Tensor, targets: torch.Tensor,
                    prompts: list[str], n_labels: int, cfg, batch_size: int, flip: bool = True,
                    captions: list[str | None] | None = None,
                    on_step: Callable[[float, float], None] | None = None):  # fmt: skip
    """Train LoRA adapters in place on ``clip.model``; returns (peft model, report).

    ``images``: uint8 (N, 3, S, S); ``targets``: label index or -1 (caption only);
    ``prompts``: the label prompts, label-major (n_labels x templates)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)
    for p in clip.model.parameters():
        p.requires_grad_(False)
    peft_model = get_peft_model(clip.model, LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=clip.lora_targets(cfg.text_tower)))  # fmt: skip
    scale = clip.logit_scale
    frozen = None
    if not cfg.text_tower:
        with torch.no_grad():
            frozen = _label_vecs(clip, prompts, n_labels)
    has_cap = torch.tensor([bool(c) for c in captions]) if captions else None

    def loss_fn(tower, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(tower.features(x.contiguous()), dim=-1)
        loss = emb.new_zeros(())
        y = targets[idx]
        lab = y >= 0
        if lab.any():
            lv = frozen if frozen is not None else _label_vecs(clip, prompts, n_labels)
            loss = loss + F.cross_entropy(scale * emb[lab] @ lv.T, y[lab])
        sel = has_cap[idx] if has_cap is not None else None
        if sel is not None and int(sel.sum()) > 1:
            tv = F.normalize(clip.text_features([captions[int(i)] for i in idx[sel]]), dim=-1)
            sims = scale * emb[sel] @ tv.T
            ar = torch.arange(len(tv))
            loss = loss + 0.5 * (F.cross_entropy(sims, ar) + F.cross_entropy(sims.T, ar))
        return loss

    losses: list[float] = []

    def tick(p: float, loss: float) -> None:
        losses.append(loss)
        if on_step is not None:
            on_step(p, loss)

    settings = FitSettings(budget_cpu_s=cfg.budget_cpu_s, max_epochs=cfg.max_epochs,
                           batch_size=max(2, min(batch_size, len(images))), lr=cfg.lr,
                           weight_decay=0.0, warmup=0.1, flip=flip, seed=cfg.seed,
                           optimizer="adamw")  # fmt: skip
    tower = clip.tower()
    rep = fit(tower, images, torch.arange(len(images)), loss_fn, settings, tick)
    peft_model.eval()
    params = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return peft_model, LoraReport(rep, losses[0] if losses else math.nan, params)
