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
comparison count (rank), one exp that serves the normaliser, the mean and the variance, and
a gather -- no sort, no ``log_softmax``/``softmax`` tensors. In bf16 mode the weights are
stored in bf16 once (:func:`zimo.guard.detect.load_scorer`); statistics are taken in fp32.
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
    # Mean of the body's last hidden state over the scored positions (``pool_hidden``): what
    # a small supervised head reads; computed from the same forward pass at no extra cost.
    hidden: np.ndarray | None = None

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


def tokenize_windows(
    texts: Sequence[str], tokenizer, window: int, max_tokens: int
) -> tuple[list[list[int]], list[int]]:
    """Split each text's first ``max_tokens`` tokens into consecutive windows of ``window``
    tokens, each scored from a fresh start (BOS), like :func:`tokenize`.

    Returns ``(window_ids, owner)``, ``owner[k]`` = index of the text window ``k`` belongs to
    (every text gets at least one window, maybe empty). Why windows rather than one long pass:
    the thresholds are calibrated on documents scored from a cold start over at most ``window``
    tokens; with thousands of tokens of context the later tokens of *any* text become more
    predictable, which would push long human documents over the threshold. Windows use the
    whole text (less variance) while every token sees the context it was calibrated with.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    bos = tokenizer.bos_token_id
    ids_out: list[list[int]] = []
    owner: list[int] = []
    for d, ids in enumerate(enc):
        ids = list(ids[:max_tokens])
        starts = range(0, max(len(ids), 1), window)
        for s in starts:
            piece = ids[s : s + window]
            # A tail of a few tokens has too little context to say anything: fold it out.
            if s and len(piece) < min(16, window):
                break
            ids_out.append(([bos] + piece) if bos is not None else piece)
            owner.append(d)
    return ids_out, owner


def merge_windows(
    stats: Sequence[TokenStats], owner: Sequence[int], n_docs: int
) -> list[TokenStats]:
    """Concatenate the per-token statistics of each text's windows (see
    :func:`tokenize_windows`)."""
    parts: list[list[TokenStats]] = [[] for _ in range(n_docs)]
    for st, d in zip(stats, owner, strict=True):
        parts[d].append(st)
    out = []
    for ps in parts:
        if len(ps) == 1:
            out.append(ps[0])
            continue
        merged = {
            k: np.concatenate([getattr(p, k) for p in ps])
            for k in ALL_STATS
            if getattr(ps[0], k) is not None
        }
        n = sum(p.n_tokens for p in ps)
        if ps[0].hidden is not None:
            # Token-weighted mean of the windows' means = the mean over all scored positions.
            w = np.array([p.n_tokens for p in ps], np.float32)[:, None]
            merged["hidden"] = (np.stack([p.hidden for p in ps]) * w).sum(0) / max(n, 1)
        out.append(TokenStats(n_tokens=n, **merged))
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
        # (int32 count: summing bools as int64 doubles that pass's cost on CPU.)
        out["logrank"] = torch.log1p((logits > true).sum(-1, dtype=torch.int32).float())
    if need & {"logp", "mu", "var"}:
        # One exp over the vocabulary serves the normaliser and the moments: with z = logits -
        # max and e = exp(z), S = sum e: log p = z - log S, mu = E_p[z] - log S, and
        # var = E_p[z^2] - E_p[z]^2 (shift-invariant). In place, so one [N, V] buffer.
        m = logits.amax(-1, keepdim=True)
        z = logits.sub_(m)
        e = z.exp()
        s = e.sum(-1, keepdim=True)
        log_s = s.log()
        if "logp" in need:
            out["logp"] = (true - m - log_s).squeeze(-1)
        if need & {"mu", "var"}:
            ez = e.mul_(z)  # e now holds e * z
            mean_z = ez.sum(-1, keepdim=True) / s
            out["mu"] = (mean_z - log_s).squeeze(-1)
            if "var" in need:
                # sum_v e_v z_v^2 as a batched dot product (no third [N, V] temporary).
                m2 = torch.bmm(ez.unsqueeze(1), z.unsqueeze(2)).view(-1, 1) / s
                out["var"] = (m2 - mean_z.square()).clamp_min(0).squeeze(-1)
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
    pool_hidden: bool = False,
) -> list[TokenStats]:
    """Run the model over ``token_ids`` (from :func:`tokenize`) and return per-token stats.

    ``pool_hidden``: also keep each document's mean last hidden state (``TokenStats.hidden``).

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
    width_h = model.config.hidden_size if pool_hidden else 0
    for idx in [i for i, n in enumerate(lengths) if n < 2]:
        results[idx] = _empty(need, width_h)
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
            pooled = h.float().cpu().numpy() if pool_hidden else None
            start = 0
            for d in docs:
                n = lengths[d] - 1
                results[d] = TokenStats(
                    n_tokens=n, **{k: v[start : start + n].copy() for k, v in flat.items()}
                )
                if pooled is not None:
                    results[d].hidden = pooled[start : start + n].mean(0)
                start += n
            if progress:
                progress(len(docs))
    return results  # type: ignore[return-value]


def _empty(need: frozenset[str], hidden_width: int = 0) -> TokenStats:
    st = TokenStats(n_tokens=0, **{k: np.zeros(0, np.float32) for k in need})
    if hidden_width:
        st.hidden = np.zeros(hidden_width, np.float32)
    return st


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
