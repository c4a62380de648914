"""Train the embedded default image tower against the frozen text tower's label vectors, and
the same-budget supervised CNN it is compared with.

With labels, LiT's contrastive loss against a locked text tower reduces to cross-entropy over
the label prompts' embeddings (each image's "caption" is its label's prompt; the other labels
are the negatives). Rows with a free-text caption add CLIP's in-batch loss against their own
caption embeddings, so captions teach the encoder words that are not label names.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from zimo.image.encoder import ImageTextEncoder, LinearHeadCNN
from zimo.image.fit import FitReport, FitSettings, fit


def train_image_text(
    images: torch.Tensor,
    targets: torch.Tensor,
    label_vecs: np.ndarray,
    settings: FitSettings,
    widths: tuple[int, ...],
    captions: np.ndarray | None = None,
    on_step: Callable[[float, float], None] | None = None,
) -> tuple[ImageTextEncoder, FitReport]:
    """``targets``: label index per image, or -1 for a row that has only a caption;
    ``captions``: (N, dim) caption embeddings (rows without one all zero) or None."""
    torch.manual_seed(settings.seed)
    model = ImageTextEncoder(label_vecs.shape[1], widths)
    text = torch.from_numpy(np.ascontiguousarray(label_vecs, dtype=np.float32))
    cap = torch.from_numpy(captions.astype(np.float32)) if captions is not None else None
    index = torch.arange(len(images))
    ls = settings.label_smoothing

    def loss_fn(m: ImageTextEncoder, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        emb = m(x)
        y = targets[idx]
        scale = m.scale()
        labelled = y >= 0
        loss = emb.new_zeros(())
        if labelled.any():
            logits = scale * emb[labelled] @ text.T
            loss = loss + F.cross_entropy(logits, y[labelled], label_smoothing=ls)
        if cap is not None:
            c = cap[idx]
            has = c.abs().sum(dim=1) > 0
            if has.sum() > 1:
                sims = scale * emb[has] @ c[has].T
                ar = torch.arange(int(has.sum()))
                loss = loss + 0.5 * (F.cross_entropy(sims, ar) + F.cross_entropy(sims.T, ar))
        return loss

    report = fit(model, images, index, loss_fn, settings, on_step)
    return model, report


def train_cnn_baseline(
    images: torch.Tensor,
    targets: torch.Tensor,
    n_classes: int,
    settings: FitSettings,
    widths: tuple[int, ...],
    on_step: Callable[[float, float], None] | None = None,
) -> tuple[LinearHeadCNN, FitReport]:
    """The same tower with a linear head and plain cross-entropy: what one would write."""
    torch.manual_seed(settings.seed)
    model = LinearHeadCNN(n_classes, widths)
    ls = settings.label_smoothing

    def loss_fn(m: LinearHeadCNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y, label_smoothing=ls)

    report = fit(model, images, targets, loss_fn, settings, on_step)
    return model, report
