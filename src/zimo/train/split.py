"""Run a decoder-only model in two parts: frozen lower layers, then trainable upper layers.

Why: with LoRA on the top N layers only, the lower layers never change, so their output can be
computed without autograd (and, across epochs, cached) and backward stops at the first trained
layer. Logits are computed only at the positions the loss needs (a label answer is 1-3 tokens
of a ~70-token row; the 49k-vocab head over every position is a large share of a step).

The body of a Hugging Face decoder (``LlamaModel``, ``Qwen2Model``, ``Gemma3TextModel``, ...)
runs ``self.layers`` in order and applies ``self.norm`` at the end. We call that same body with
``self.layers`` temporarily swapped for a slice (and the norm for an identity on the lower
part), so masks, rotary embeddings and per-layer attention types stay the model's own code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from zimo.infer.label import cache_kwarg


@dataclass
class DecoderParts:
    """Handles on the pieces of a causal LM (unwrapped from PEFT)."""

    lm: nn.Module  # the *ForCausalLM
    body: nn.Module  # the decoder stack (has .layers and .norm)
    head: nn.Module  # lm_head
    n_layers: int
    softcap: float | None


def decoder_parts(model: nn.Module) -> DecoderParts:
    """Find body/head of ``model`` (a causal LM, possibly wrapped in a ``PeftModel``)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = lm.get_decoder() if hasattr(lm, "get_decoder") else getattr(lm, "model", None)
    if body is None or not hasattr(body, "layers") or not hasattr(body, "norm"):
        raise TypeError(f"{type(lm).__name__} is not a decoder with .layers and .norm")
    return DecoderParts(
        lm=lm,
        body=body,
        head=lm.get_output_embeddings(),
        n_layers=len(body.layers),
        softcap=getattr(lm.config, "final_logit_softcapping", None),
    )


@contextmanager
def _only_layers(
    parts: DecoderParts, idx: Sequence[int], final_norm: bool, renumber: bool = False
) -> Iterator[None]:
    """Swap the body's layers for ``idx``; with ``renumber`` the attention modules' cache slots
    (``layer_idx``) become 0..k-1, so a KV cache holds just this slice and its length (read
    from slot 0 for the causal mask) is right."""
    body, cfg = parts.body, parts.body.config
    layers, norm = body.layers, body.norm
    types = getattr(cfg, "layer_types", None)
    saved: list[tuple[nn.Module, int]] = []
    try:
        body.layers = nn.ModuleList([layers[i] for i in idx])
        if types is not None:
            cfg.layer_types = [types[i] for i in idx]
        if not final_norm:
            body.norm = nn.Identity()
        if renumber:
            for j, i in enumerate(idx):
                for m in layers[i].modules():
                    if isinstance(getattr(m, "layer_idx", None), int):
                        saved.append((m, m.layer_idx))
                        m.layer_idx = j
        yield
    finally:
        body.layers, body.norm = layers, norm
        if types is not None:
            cfg.layer_types = types
        for m, i in saved:
            m.layer_idx = i


def expanded_cache(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], batch: int):
    """A fresh ``DynamicCache`` holding ``pairs`` (per-layer K/V of batch 1) for ``batch`` rows.

    Gradients flow back through the expansion (summed over rows), so a shared prompt prefix can
    be computed once per batch even in the trainable layers.
    """
    from transformers import DynamicCache

    cache = DynamicCache()
    for j, (k, v) in enumerate(pairs):
        cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), j)
    return cache


def cache_pairs(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer ``(keys, values)`` of a ``DynamicCache`` filled by :func:`run_layers`."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def run_layers(
    parts: DecoderParts,
    idx: Sequence[int],
    *,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    hidden: torch.Tensor | None = None,
    final_norm: bool,
    cache=None,
) -> torch.Tensor:
    """Hidden states after decoder layers ``idx`` (from token ids or from earlier hidden states).

    With ``final_norm`` the body's final norm is applied (as before the LM head). ``cache``: a
    ``DynamicCache`` for this slice (slot j = ``idx[j]``); it is read as the tokens before these
    (``attention_mask`` then covers cached + new tokens) and receives the new keys/values.
    """
    if not idx:  # nothing to run: embeddings (or the given hidden states) pass through
        h = parts.body.embed_tokens(input_ids) if hidden is None else hidden
        return parts.body.norm(h) if final_norm else h
    extra = {} if cache is None else {cache_kwarg(parts.body): cache}
    with _only_layers(parts, idx, final_norm, renumber=cache is not None):
        out = parts.body(
            input_ids=input_ids if hidden is None else None,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **extra,
        )
    return out.last_hidden_state


def run_prefix(
    parts: DecoderParts,
    idx: Sequence[int],
    n: int,
    device: torch.device,
    *,
    input_ids: torch.Tensor | None = None,
    hidden: torch.Tensor | None = None,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """A shared prompt prefix of ``n`` tokens (batch 1) through layers ``idx``: their per-layer
    K/V and the output (un-normed, as the next layers read it)."""
    cache = expanded_cache([], 1)
    h = run_layers(
        parts,
        idx,
        input_ids=input_ids,
        hidden=hidden,
        attention_mask=torch.ones((1, n), dtype=torch.long, device=device),
        position_ids=torch.arange(n, device=device).unsqueeze(0),
        final_norm=False,
        cache=cache,
    )
    return cache_pairs(cache), h


def head_logits(parts: DecoderParts, hidden: torch.Tensor) -> torch.Tensor:
    """LM-head logits for already-normed hidden states (any leading shape)."""
    logits = parts.head(hidden)
    if parts.softcap:
        logits = torch.tanh(logits / parts.softcap) * parts.softcap
    return logits
