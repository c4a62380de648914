"""Prompt features from an embedded causal LM: how surprising a prompt is to a small model.

One forward pass of the embedded ``gecko`` (SmolLM2-135M) over the prompt gives

- **surprisal statistics** of the prompt's tokens under the model (mean, spread, 90th
  percentile and maximum of the per-token negative log-likelihood — the question's perplexity
  and its rarest parts), the entropy of the next-token distribution at the end of the prompt
  (how unsure the small model is about what comes next) and the log token count;
- the **mean-pooled hidden state of a middle layer** (576 numbers): what the LM "thinks" the
  prompt is about, a representation trained on far more text than MiniLM's sentence objective.

The issue's hypothesis is that these carry difficulty information the sentence embedding
lacks. ``benchmarks/route_lm_features.py`` measures them next to the MiniLM features on unseen
subjects. They are not (yet) a router feature: one gecko pass over a ~100-token prompt costs
~140 ms CPU, nearly three times the router's whole 50 ms budget (docs/routing.md has the
measured trade-off).

Vectors are cached by (model, truncation, layer, text) in a SQLite file, like the MiniLM
embeddings (:class:`zimo.embeddings._DiskCache`), so benchmarks and refits compute each prompt
once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence

import numpy as np

SCALAR_NAMES = (
    "lm_nll_mean",
    "lm_nll_std",
    "lm_nll_p90",
    "lm_nll_max",
    "lm_next_entropy",
    "lm_log_tokens",
)
# Bump when what is stored under a key changes, so old cache rows are not misread.
FEATURE_VERSION = 2

_models: dict[tuple[str, str], tuple] = {}
_models_lock = threading.Lock()


def _load(model: str, dtype: str):
    """(model, tokenizer), loaded once per process."""
    import torch

    from zimo.models import load_causal_lm

    if dtype == "auto":
        from zimo.hw import cpu_has_fast_bf16

        dtype = "bfloat16" if cpu_has_fast_bf16() else "float32"
    with _models_lock:
        key = (model, dtype)
        if key not in _models:
            _models[key] = load_causal_lm(model, dtype=getattr(torch, dtype))
        return _models[key]


def _key(model: str, max_tokens: int, layer: int, text: str) -> str:
    h = hashlib.sha1(f"lmfeat{FEATURE_VERSION}\0{model}\0{max_tokens}\0{layer}\0{text}".encode())
    return h.hexdigest()


def _compute(
    texts: list[str], model: str, max_tokens: int, layer: int, dtype: str, batch_size: int, bar
) -> np.ndarray:
    import torch

    lm, tok = _load(model, dtype)
    n_layers = lm.config.num_hidden_layers
    li = layer if layer >= 0 else n_layers // 2
    enc = tok(texts, truncation=True, max_length=max_tokens)
    ids = enc["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")[::-1]  # similar lengths per batch
    dim = lm.config.hidden_size
    out = np.zeros((len(texts), len(SCALAR_NAMES) + dim), dtype=np.float32)
    tok.padding_side = "right"
    with torch.inference_mode():
        for a in range(0, len(order), batch_size):
            idx = order[a : a + batch_size]
            feats = tok.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
            res = lm(**feats, output_hidden_states=True)
            logits = res.logits.float()
            mask = feats["attention_mask"].bool()
            logp = torch.log_softmax(logits, -1)
            # NLL of token t+1 given the prefix up to t.
            nll = -logp[:, :-1].gather(-1, feats["input_ids"][:, 1:, None]).squeeze(-1)
            hid = res.hidden_states[li].float()
            for r, i in enumerate(idx):
                m = mask[r]
                length = int(m.sum())
                x = nll[r, : max(length - 1, 0)].numpy()
                if len(x) == 0:
                    x = np.zeros(1, dtype=np.float32)
                last = logp[r, length - 1]
                ent = float(-(last.exp() * last).sum())
                # The first position carries the outsized activations of an attention sink
                # (hundreds of times the others here); pooling it would drown the rest.
                pooled = hid[r, 1 if length > 1 else 0 : length].mean(0).numpy()
                out[i, : len(SCALAR_NAMES)] = (
                    x.mean(),
                    x.std(),
                    np.percentile(x, 90),
                    x.max(),
                    ent,
                    np.log1p(length),
                )
                out[i, len(SCALAR_NAMES) :] = pooled
            if bar is not None:
                bar[0].update(bar[1], advance=len(idx))
    return out


def lm_features(
    texts: Sequence[str],
    *,
    model: str = "gecko",
    max_tokens: int = 128,
    layer: int = -1,
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scalars, hidden)`` for each text: ``(n, 6)`` surprisal statistics (``SCALAR_NAMES``)
    and ``(n, hidden_size)`` the mean-pooled hidden state of layer ``layer`` (-1: the middle).

    Texts are truncated to ``max_tokens`` tokens; cached texts (``cache_path``) are not
    computed again.
    """
    from zimo.embeddings import _DiskCache, _progress

    texts = [t if isinstance(t, str) else str(t) for t in texts]
    keys = [_key(model, max_tokens, layer, t) for t in texts]
    disk = _DiskCache(cache_path) if cache_path else None
    found = disk.get_many(keys) if disk is not None else {}
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    if missing:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        todo = [texts[first[k]] for k in missing]
        bar = _progress(progress, len(todo), f"{model} features")
        try:
            # Cache in chunks so an interrupted long run keeps what it computed.
            for a in range(0, len(todo), 256):
                vecs = _compute(todo[a : a + 256], model, max_tokens, layer, dtype, batch_size, bar)
                fresh = dict(zip(missing[a : a + 256], vecs, strict=True))
                found.update(fresh)
                if disk is not None:
                    disk.put_many(fresh)
        finally:
            if bar is not None:
                bar[0].stop()
    if disk is not None:
        disk.close()
    if not texts:
        return np.zeros((0, len(SCALAR_NAMES))), np.zeros((0, 0), dtype=np.float32)
    mat = np.stack([found[k] for k in keys])
    k = len(SCALAR_NAMES)
    return mat[:, :k].astype(np.float64), np.ascontiguousarray(mat[:, k:])
