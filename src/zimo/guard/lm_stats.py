"""Per-token statistics of a text under a causal LM, from ONE forward pass.

For every scored token ``x_t`` (given ``x_<t``) we keep, as needed by the requested scores:

- ``logp``: log p(x_t)                                  (log-likelihood)
- ``logrank``: log(1 + #{v : z_v > z_{x_t}})            (log-rank; rank by comparison count)
- ``mu``: E_{v~p}[log p(v)] = -entropy                   (entropy, Fast-DetectGPT mean)
- ``var``: Var_{v~p}[log p(v)]                           (Fast-DetectGPT analytic variance)

Speed: documents are length-sorted into batches (little padding); the transformer body runs on
the batch, but the vocabulary projection, which dominates a small model with a large vocabulary
(Gemma 3 270M: 262k tokens, more FLOPs than the body), runs only on the real (unpadded)
positions, in chunks so that memory stays bounded. Over the vocabulary each chunk does one
log-softmax-style normaliser, one gather and one comparison count -- no sort, no full
``log_softmax`` tensor per score.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# What each statistic needs computed over the vocabulary.
ALL_STATS = ("logp", "logrank", "mu", "var")
# Positions per vocabulary-projection chunk: 128 x 262k fp32 logits = 128 MB.
_HEAD_CHUNK = 128


@dataclass
class TokenStats:
    """Per-token arrays (float32) for one document; absent statistics are None."""

    n_tokens: int
    logp: np.ndarray | None = None
    logrank: np.ndarray | None = None
    mu: np.ndarray | None = None
    var: np.ndarray | None = None

    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ALL_STATS if getattr(self, k) is not None}


def tokenize(texts: Sequence[str], tokenizer, token_budget: int) -> list[list[int]]:
    """Token ids per text, truncated to ``token_budget`` scored tokens, BOS prepended if the
    model has one (so the first real token is scored too)."""
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    bos = tokenizer.bos_token_id
    out = []
    for ids in enc:
        ids = list(ids[:token_budget])
        # Without BOS the first token has no context and is not scored.
        out.append(([bos] + ids) if bos is not None else ids)
    return out


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int
) -> list[list[int]]:
    """Index batches of similar length (longest first) so padding waste stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        # Padded size of the batch is governed by its first (longest) member.
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or longest * (len(cur) + 1) > max_batch_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def _head(model):
    """The vocabulary projection and the logit soft-cap (Gemma 2 style) if the model has one."""
    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return head, cap


def head_chunk_stats(
    hidden, targets, head, softcap: float | None, need: frozenset[str]
) -> dict[str, object]:
    """Statistics for hidden states ``[N, d]`` predicting ``targets`` ``[N]`` (torch tensors)."""
    import torch

    logits = head(hidden)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logits = logits.float()  # statistics in fp32 even when the matmul ran in bf16
    out: dict[str, object] = {}
    true = logits.gather(-1, targets[:, None])
    if "logrank" in need:
        # Rank = how many tokens score strictly higher: one comparison pass, no argsort.
        out["logrank"] = torch.log1p((logits > true).sum(-1).float())
    if need & {"logp", "mu", "var"}:
        lse = torch.logsumexp(logits, -1, keepdim=True)
        if "logp" in need:
            out["logp"] = (true - lse).squeeze(-1)
        if need & {"mu", "var"}:
            logits.sub_(lse)  # in place: logits now hold log p
            p = logits.exp()
            mu = (p * logits).sum(-1)
            out["mu"] = mu
            if "var" in need:
                m2 = (p * logits.square_()).sum(-1)
                out["var"] = (m2 - mu.square()).clamp_min(0)
    return out


def compute_token_stats(
    model,
    token_ids: Sequence[list[int]],
    *,
    need: Iterable[str] = ALL_STATS,
    batch_size: int = 8,
    max_batch_tokens: int = 4096,
    dtype=None,
    progress: Callable[[int], None] | None = None,
) -> list[TokenStats]:
    """Run the model over ``token_ids`` (from :func:`tokenize`) and return per-token stats.

    ``dtype`` torch.bfloat16 runs body and head under bf16 autocast; None keeps the model's.
    ``progress(n_docs_done)`` is called after every batch.
    """
    import torch

    need = frozenset(need)
    unknown = need - set(ALL_STATS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}")
    lengths = [len(t) for t in token_ids]
    results: list[TokenStats | None] = [None] * len(token_ids)
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    head, cap = _head(model)
    pad = 0
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if dtype == torch.bfloat16
        else contextlib.nullcontext()
    )
    for idx in [i for i, n in enumerate(lengths) if n < 2]:
        results[idx] = _empty(need)
    todo = [i for i, n in enumerate(lengths) if n >= 2]
    batches = length_sorted_batches([lengths[i] for i in todo], batch_size, max_batch_tokens)
    with torch.inference_mode(), autocast:
        for batch in batches:
            docs = [todo[b] for b in batch]
            width = max(lengths[d] for d in docs)
            ids = torch.full((len(docs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(docs), width), dtype=torch.long)
            for row, d in enumerate(docs):
                ids[row, : lengths[d]] = torch.tensor(token_ids[d])
                mask[row, : lengths[d]] = 1
            ids, mask = ids.to(device), mask.to(device)
            hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            # Position t predicts token t+1; keep only real positions (no padding) for the head.
            valid = mask[:, 1:].bool()
            h = hidden[:, :-1][valid]
            tgt = ids[:, 1:][valid]
            parts: dict[str, list] = {k: [] for k in need}
            for s in range(0, h.shape[0], _HEAD_CHUNK):
                st = head_chunk_stats(
                    h[s : s + _HEAD_CHUNK], tgt[s : s + _HEAD_CHUNK], head, cap, need
                )
                for k, v in st.items():
                    parts[k].append(v)
            flat = {k: torch.cat(v).float().cpu().numpy() for k, v in parts.items()}
            start = 0
            for d in docs:
                n = lengths[d] - 1
                results[d] = TokenStats(
                    n_tokens=n, **{k: v[start : start + n].copy() for k, v in flat.items()}
                )
                start += n
            if progress:
                progress(len(docs))
    return results  # type: ignore[return-value]


def _empty(need: frozenset[str]) -> TokenStats:
    return TokenStats(n_tokens=0, **{k: np.zeros(0, np.float32) for k in need})


def reference_token_stats(model, ids: list[int]) -> TokenStats:
    """The plain way, one document at a time, as the published reference code does it
    (full ``log_softmax``; rank by ``argsort``). Used by tests and the speed benchmark only."""
    import torch

    with torch.inference_mode():
        x = torch.tensor([ids], device=next(model.parameters()).device)
        logits = model(input_ids=x).logits[0, :-1].float()
        labels = x[0, 1:]
        lprobs = torch.log_softmax(logits, -1)
        logp = lprobs.gather(-1, labels[:, None]).squeeze(-1)
        # Fast-DetectGPT baselines.get_rank: position of the label in the descending argsort.
        order = logits.argsort(-1, descending=True)
        rank = (order == labels[:, None]).nonzero()[:, 1].float()
        probs = torch.softmax(logits, -1)
        mu = (probs * lprobs).sum(-1)
        var = (probs * lprobs.square()).sum(-1) - mu.square()
    return TokenStats(
        n_tokens=len(ids) - 1,
        logp=logp.cpu().numpy(),
        logrank=torch.log1p(rank).cpu().numpy(),
        mu=mu.cpu().numpy(),
        var=var.cpu().numpy(),
    )


def nan_safe_mean(a: np.ndarray | None) -> float:
    return float(a.mean()) if a is not None and a.size else math.nan
