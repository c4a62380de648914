"""Label scoring by comparing answer log-probabilities (no free-text parsing).

For every text, the model sees the same chat prompt as in training (:class:`zimo.prompts.
LabelPrompt`), and each candidate answer (label word + end-of-turn) is scored by its total
log-probability; a softmax over those scores gives ``predict_proba``. When the labels already
differ in their first token (``ham``/``spam``), one forward per batch suffices and logits are
computed only at the last position. Otherwise every (text, label) pair is scored with the answer
appended, computing logits only over the answer tail.

Batches are length-sorted and left-padded (so every prompt ends at the same column and the
"last position" is one slice), with position ids derived from the attention mask so padding
does not shift RoPE positions. The same class works on a base model (zero-shot) and on a
``PeftModel`` (base + adapter).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from zimo.hw import cpu_has_fast_bf16
from zimo.prompts import DEFAULT_SYSTEM, LabelPrompt


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def cache_kwarg(model) -> str:
    """transformers >= 5.x calls the KV cache argument ``cache``; older ``past_key_values``.
    ``model``: a causal LM, a ``PeftModel`` or a bare decoder body."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``seqs``."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return i
    return n


def expand_cache(cache, n: int):
    """A cache for ``n`` rows that starts with ``cache``'s (batch-1) keys and values, without
    copying them: every layer's tensors become broadcast views, and ``DynamicCache`` layers
    grow by concatenation (a new tensor), so the shared prefix stays untouched for the next
    call. Only the layer objects are new."""
    new = copy.copy(cache)
    layers = []
    for layer in cache.layers:
        lay = copy.copy(layer)
        if getattr(lay, "keys", None) is not None and lay.keys.numel():
            lay.keys = lay.keys.expand(n, *lay.keys.shape[1:])
            lay.values = lay.values.expand(n, *lay.values.shape[1:])
        layers.append(lay)
    new.layers = layers
    return new


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad ``seqs``: returns ``(input_ids, attention_mask, position_ids)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def decide(proba: np.ndarray, pos: int | None, threshold: float | None) -> np.ndarray:
    """Predicted class per row: argmax, or, for a calibrated positive class, ``P(pos) >= t``
    (else the most likely other class). Training, evaluation and serving share this rule."""
    proba = np.atleast_2d(np.asarray(proba, dtype=np.float64))
    pred = proba.argmax(axis=1)
    if pos is None or threshold is None:
        return pred
    rest = proba.copy()
    rest[:, pos] = -1.0
    return np.where(proba[:, pos] >= threshold, pos, rest.argmax(axis=1))


def decide_label(probs: Sequence[float], labels: Sequence[str], meta: dict | None) -> int:
    """Index of the answer for one request, with the sub-model's dev-tuned threshold if it has
    one (``positive_label`` + ``decision_threshold`` in its metadata)."""
    meta = meta or {}
    pos_label, thr = meta.get("positive_label"), meta.get("decision_threshold")
    pos = list(labels).index(pos_label) if pos_label in labels and thr is not None else None
    return int(decide(np.asarray([probs]), pos, thr)[0])


def _best_f1_threshold(truth: np.ndarray, p: np.ndarray) -> float:
    """The threshold on ``p`` with the highest F1 for ``truth`` (ties: closest to 0.5)."""
    cand = np.unique(np.concatenate([p, [0.5]]))
    srt, pos_srt = np.sort(p), np.sort(p[truth])
    n_pred = len(p) - np.searchsorted(srt, cand, side="left")
    tp = len(pos_srt) - np.searchsorted(pos_srt, cand, side="left")
    f1 = 2 * tp / np.maximum(n_pred + truth.sum(), 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(cand[best[np.argmin(np.abs(cand[best] - 0.5))]])


def dev_threshold(
    y_dev: np.ndarray, p_dev: np.ndarray, pos: int, bootstrap: int = 200, seed: int = 0
) -> float | None:
    """The threshold on P(positive) that maximises the positive class's F1 on the dev split.

    A dev split has few positives (a 5% split of the SMS data holds ~34 spam), and the single
    F1-optimal cut on it jumps with every row: measured on four demo adapters it ranged from
    0.08 to 0.73 and cost up to 0.02 F1 on test. So the cut is bagged: the median of the
    F1-optimal thresholds of ``bootstrap`` resamples of dev (deterministic for ``seed``);
    ``bootstrap=0`` gives the plain optimum. None when dev has < 10 rows or no positive row.
    """
    truth = np.asarray(y_dev) == pos
    if not truth.any() or len(truth) < 10:
        return None
    p = np.asarray(p_dev, dtype=np.float64)[:, pos]
    if not bootstrap:
        return _best_f1_threshold(truth, p)
    rng = np.random.default_rng(seed)
    cuts = []
    for _ in range(bootstrap):
        i = rng.integers(0, len(p), len(p))
        if truth[i].any():
            cuts.append(_best_f1_threshold(truth[i], p[i]))
    return float(np.median(cuts))


class LabelHead:
    """The output head's rows for the labels' first tokens, on top of the decoder body.

    Where the labels differ in their first token, a label's probability is a softmax over
    those tokens' logits alone: the vocabulary's normaliser (log-softmax over all ~49k rows)
    cancels. Computing just those rows skips the head's whole weight matrix (28M values for
    SmolLM2-135M, read from memory once per forward: 18-25 ms at batch 1 on the emulated AVX2
    kind, about a fifth of a label request). ``__call__`` maps last hidden states
    ``[n, hidden]`` to scores ``[n, labels]`` (logits: log-probabilities up to a per-row
    constant)."""

    def __init__(self, body, head, rows: torch.Tensor, softcap: float | None, cache_kw: str):
        self.body, self.head, self.rows = body, head, rows
        self.softcap, self.cache_kw = softcap, cache_kw

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        # Rows read at each call, not copied once: training may update the head between calls.
        z = hidden.float() @ self.head.weight[self.rows].float().T
        if self.head.bias is not None:
            z = z + self.head.bias[self.rows].float()
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


def label_head(model, first_ids: Sequence[int]) -> LabelHead | None:
    """A :class:`LabelHead` for ``model`` (a causal LM or a ``PeftModel``), or None where the
    logits are not a plain ``Linear`` of the decoder's last hidden state (a wrapped or trained
    head, logit scaling this does not reproduce): callers then run the whole model."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    cfg = getattr(lm, "config", None)
    if type(head) is not torch.nn.Linear or cfg is None or not hasattr(lm, "get_decoder"):
        return None
    if getattr(cfg, "logit_scale", None) or getattr(cfg, "logits_scaling", None):
        return None
    body = lm.get_decoder()
    if body is lm or not callable(body):
        return None
    rows = torch.tensor(list(first_ids), device=head.weight.device)
    softcap = getattr(cfg, "final_logit_softcapping", None)
    return LabelHead(body, head, rows, softcap, cache_kwarg(body))


class _RowsHead(torch.nn.Module):
    """An output head that computes only ``rows`` of ``head`` (see :func:`head_rows`)."""

    def __init__(self, head: torch.nn.Linear, rows: torch.Tensor) -> None:
        super().__init__()
        self.head, self.rows = head, rows

    def forward(self, h):
        bias = None if self.head.bias is None else self.head.bias[self.rows]
        return torch.nn.functional.linear(h, self.head.weight[self.rows], bias)


@contextlib.contextmanager
def head_rows(model, rows: Sequence[int]):
    """Inside this block ``model``'s logits are only the vocabulary ``rows`` (in that order):
    the output head is swapped for one that computes just them, so softcapping or scaling in
    the model's own forward still applies. For callers that need a softmax over a few tokens
    (label words) and that own the model in this thread (a serving engine's worker): the head
    is a model attribute. Yields False (and changes nothing) where the head is not a plain
    ``Linear`` that the model lets be replaced."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or not hasattr(lm, "set_output_embeddings"):
        yield False
        return
    lm.set_output_embeddings(_RowsHead(head, torch.tensor(list(rows), device=head.weight.device)))
    try:
        yield True
    finally:
        lm.set_output_embeddings(head)


class LabelScorer:
    """Scores texts against a fixed label set with a causal LM (+ optional PEFT adapter)."""

    def __init__(
        self,
        model,
        tokenizer,
        labels: list[str],
        instruction: str | None = None,
        *,
        system: str | None = DEFAULT_SYSTEM,
        max_text_tokens: int = 256,
        autocast: bool | None = None,
        frozen: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.prompt = LabelPrompt(
            tokenizer, self.labels, instruction, system=system, max_text_tokens=max_text_tokens
        )
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.device = _device_of(model)
        self._autocast = autocast  # None: decide by measurement on first use
        self._cache_kw = cache_kwarg(model)
        # Every prompt starts with the same template + system + instruction tokens (~40 of a
        # ~65-token SMS prompt): run them once per call and reuse their KV cache (2-3x faster).
        probe = [self.prompt.prompt_ids(t) for t in ("a", "b c", "1")]
        self.prompt.truncated = 0
        self.prefix = probe[0][: common_prefix(probe)]
        self._prefix_kv = None
        # frozen: the weights do not change between calls (evaluation, serving), so the prefix
        # KV is computed once per adapter state instead of once per call; a batch-1 request
        # then runs only its own ~25 tokens. Off by default: training scores dev between steps.
        self.frozen = frozen
        self._prefix_key: tuple | None = None
        self._lora_probe = None
        self._label_firsts = [ids[0] for ids in self.prompt.label_ids]
        self._head = (
            label_head(model, self._label_firsts) if self.prompt.first_tokens_distinct else None
        )

    # -- forward ----------------------------------------------------------------------------
    def _autocast_ctx(self):
        use_bf16 = bool(self._autocast) and self.device.type == "cpu"
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16)

    def _prefix_cache(self):
        """KV cache of the shared prompt prefix (batch 1), computed once per scoring call."""
        if self._prefix_kv is None:
            ids = torch.tensor([self.prefix], device=self.device)
            # The decoder alone where it can: the prefix's logits are never read.
            body = self._head.body if self._head is not None else self.model
            kw = {} if self._head is not None else {"logits_to_keep": 1}
            with self._autocast_ctx():
                out = body(input_ids=ids, use_cache=True, **kw)
            self._prefix_kv = getattr(out, "cache", None) or out.past_key_values
        return self._prefix_kv

    def _first_token_scores(self, seqs: list[list[int]]) -> torch.Tensor:
        """Per label, its first answer token's score after each of ``seqs``: the label rows of
        the output head only (:func:`label_head`), else the log-softmax over the vocabulary."""
        if self._head is None:
            return self._forward_tail(seqs, keep=1)[:, -1, self._label_firsts]
        return self._forward_tail(seqs, keep=1, head=self._head)

    def _forward_tail(self, seqs: list[list[int]], keep: int, head=None) -> torch.Tensor:
        """Log-softmax logits of the last ``keep`` positions of left-padded ``seqs``; with
        ``head`` (a :class:`LabelHead`), its label scores at the last position, ``[n, labels]``."""
        p = len(self.prefix)
        shared = p > 0 and all(len(s) > p and s[:p] == self.prefix for s in seqs)
        model = head.body if head is not None else self.model
        tail = {} if head is not None else {"logits_to_keep": keep}
        if not shared:
            ids, mask, pos = left_pad(seqs, self.pad_id, self.device)
            with self._autocast_ctx():
                out = model(
                    input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **tail
                )
            if head is not None:
                return head(out.last_hidden_state[:, -1, :])
            return torch.log_softmax(out.logits.float(), dim=-1)
        # Suffixes left-padded after the cached prefix: [prefix | pad.. | suffix]; the mask hides
        # the pads and position ids continue from the prefix, so results match the full forward.
        ids, mask, pos = left_pad([s[p:] for s in seqs], self.pad_id, self.device)
        cache = expand_cache(self._prefix_cache(), len(seqs))
        full_mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, p), mask], dim=1)
        cache_kw = head.cache_kw if head is not None else self._cache_kw
        with self._autocast_ctx():
            out = model(
                input_ids=ids,
                attention_mask=full_mask,
                position_ids=pos + p,
                use_cache=True,
                **{cache_kw: cache},
                **tail,
            )
        if head is not None:
            return head(out.last_hidden_state[:, -1, :])
        return torch.log_softmax(out.logits.float(), dim=-1)

    def _score_batch(self, prompts: list[list[int]]) -> np.ndarray:
        if self.prompt.first_tokens_distinct:
            return self._first_token_scores(prompts).double().cpu().numpy()
        # General path: append each answer, read its tokens' log-probs from the tail.
        scores = np.zeros((len(prompts), len(self.labels)), dtype=np.float64)
        for j, ans in enumerate(self.prompt.label_ids):
            k = len(ans)
            seqs = [p + ans[:-1] for p in prompts]
            lp = self._forward_tail(seqs, keep=k)  # positions predicting ans[0..k-1]
            tgt = torch.tensor(ans, device=self.device).expand(len(prompts), k)
            scores[:, j] = lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).sum(-1).cpu().numpy()
        return scores

    def _weights_key(self) -> tuple | None:
        """What the prefix KV depends on besides the (frozen) weights: the active adapters and
        whether adapters are disabled (``disable_adapter()`` contexts). None: not frozen."""
        if not self.frozen:
            return None
        if self._lora_probe is None:
            self._lora_probe = next(
                (m for m in self.model.modules() if hasattr(m, "lora_A")), False
            )
        m = self._lora_probe
        if m is False:
            return ("plain", self._autocast)
        return (tuple(m.active_adapters), bool(m.disable_adapters), self._autocast)

    # -- autocast choice --------------------------------------------------------------------
    def _decide_autocast(self, sample: list[list[int]]) -> None:
        """bf16 autocast only where the CPU has bf16 hardware *and* it measures faster here."""
        if self._autocast is not None:
            return
        if self.device.type != "cpu" or not cpu_has_fast_bf16() or not sample:
            self._autocast = False
            return
        timings = {}
        for flag in (False, True, False, True):
            self._autocast = flag
            self._prefix_kv = None
            t = time.perf_counter()
            self._score_batch(sample)
            timings[flag] = min(timings.get(flag, 1e9), time.perf_counter() - t)
        self._autocast = timings[True] < 0.9 * timings[False]

    @property
    def uses_bf16(self) -> bool:
        return bool(self._autocast)

    # -- public -----------------------------------------------------------------------------
    @torch.inference_mode()
    def log_scores(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Raw per-label answer log-probabilities, shape ``[n, n_labels]``."""
        was_training = self.model.training
        self.model.eval()
        prompts = [self.prompt.prompt_ids(t) for t in texts]
        key = self._weights_key()
        if key is None or key != self._prefix_key:
            self._prefix_kv = None  # the model (or its adapter) may have changed since last call
        order = np.argsort([len(p) for p in prompts], kind="stable")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if len(texts) and self._autocast is None:
            self._decide_autocast([prompts[i] for i in order[-min(batch_size, len(order)) :]])
            self._prefix_kv = None
        self._prefix_key = key
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._score_batch([prompts[i] for i in idx])
            if progress is not None:
                progress(len(idx))
        if was_training:
            self.model.train()
        return out

    def predict_proba(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Probabilities over ``labels`` (softmax of the answer log-probs), ``[n, n_labels]``."""
        s = self.log_scores(texts, batch_size=batch_size, progress=progress)
        if not len(s):
            return s
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str], batch_size: int = 16) -> list[str]:
        """The most probable label for each text."""
        proba = self.predict_proba(texts, batch_size=batch_size)
        return [self.labels[i] for i in proba.argmax(axis=1)]

    def measure_latency(self, texts: Sequence[str], n: int = 20, warmup: int = 2) -> dict:
        """Per-request latency (batch size 1) over up to ``n`` texts, in milliseconds."""
        texts = list(texts)[: max(n, 1)]
        for t in texts[:warmup]:
            self.predict_proba([t], batch_size=1)
        times = []
        for t in texts:
            t0 = time.perf_counter()
            self.predict_proba([t], batch_size=1)
            times.append((time.perf_counter() - t0) * 1000)
        arr = np.array(times) if times else np.zeros(1)
        return {
            "n": len(times),
            "mean_ms": float(arr.mean()),
            "p50_ms": float(np.percentile(arr, 50)),
            "p95_ms": float(np.percentile(arr, 95)),
            "bf16": self.uses_bf16,
        }
