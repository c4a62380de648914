"""The frozen lower layers of a split forward: run without autograd, the shared prompt prefix
through them computed once, and (when it fits in memory) their outputs cached for every row.

Frozen layers give the same result every step, so a run that revisits its rows (more than one
epoch) computes them once; the shared prefix's keys and values are the same for every batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager

import numpy as np
import torch

from zimo.train.batches import Batch, Example
from zimo.train.split import DecoderParts, expanded_cache, run_layers, run_prefix


class FrozenLower:
    """Layers ``layers`` of ``parts`` (the frozen bottom of the model), run under ``autocast``
    (the fitter's precision and attention kernel)."""

    def __init__(
        self,
        parts: DecoderParts,
        layers: list[int],
        device: torch.device,
        prefix_ids: torch.Tensor | None,
        pad_id: int,
        autocast: Callable[[], AbstractContextManager],
    ) -> None:
        self.parts, self.layers, self.device = parts, layers, device
        self.prefix_ids, self.pad_id, self.autocast = prefix_ids, pad_id, autocast
        self._prefix: dict[Hashable, tuple[list, torch.Tensor | None]] = {}
        self._cache: dict[str, list[torch.Tensor]] = {}

    def prefix(self, precision: Hashable) -> tuple[list, torch.Tensor | None]:
        """K/V of the shared prefix in these layers and their output there (batch 1), once per
        ``precision`` (the activations differ between fp32 and bf16)."""
        if precision not in self._prefix:
            n = self.prefix_ids.shape[1]
            with torch.no_grad(), self.autocast():
                self._prefix[precision] = run_prefix(
                    self.parts,
                    self.layers,
                    n,
                    self.device,
                    input_ids=self.prefix_ids.to(self.device),
                )
        return self._prefix[precision]

    def hidden(self, b: Batch, precision: Hashable) -> torch.Tensor | None:
        """These layers' output for batch ``b`` (None when no layer is frozen)."""
        if not self.layers:
            return None
        cache = expanded_cache(self.prefix(precision)[0], len(b.lengths)) if b.offset else None
        with torch.no_grad(), self.autocast():
            return run_layers(
                self.parts,
                self.layers,
                input_ids=b.ids,
                attention_mask=b.full_mask(),
                position_ids=b.pos,
                final_norm=False,
                cache=cache,
            )

    def build_cache(
        self, split: str, examples: list[Example], batch_size: int, precision: Hashable
    ) -> None:
        """Run these layers once over ``examples`` (shortest first, so padding costs little)
        and keep each row's output."""
        out: list[torch.Tensor | None] = [None] * len(examples)
        order = np.argsort([e.n_tokens for e in examples], kind="stable")
        offset = 0 if self.prefix_ids is None else self.prefix_ids.shape[1]
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size].tolist()
            b = Batch([examples[i] for i in idx], self.pad_id, offset).to(self.device)
            h = self.hidden(b, precision)
            for j, i in enumerate(idx):
                out[i] = h[j, : b.lengths[j]].clone()
        self._cache[split] = out  # type: ignore[assignment]

    def is_cached(self, split: str) -> bool:
        return split in self._cache

    def cached(self, split: str, idx: list[int], b: Batch) -> torch.Tensor:
        """The cached outputs of rows ``idx`` of ``split``, right-padded like ``b``."""
        rows = [self._cache[split][i] for i in idx]
        h = torch.zeros(
            (len(rows), b.ids.shape[1], rows[0].shape[-1]), dtype=rows[0].dtype, device=self.device
        )
        for i, r in enumerate(rows):
            h[i, : r.shape[0]] = r
        return h
