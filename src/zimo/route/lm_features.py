"""Prompt features from an embedded causal LM: how surprising a prompt is to a small model.

One forward pass of the embedded ``gecko`` (SmolLM2-135M) over the prompt gives

- **surprisal statistics** of the prompt's tokens under the model (mean, spread, 90th
  percentile and maximum of the per-token negative log-likelihood — the question's perplexity
  and its rarest parts), the entropy of the next-token distribution at the end of the prompt
  (how unsure the small model is about what comes next) and the log token count;
- the **mean-pooled hidden state of a middle layer** (576 numbers): what the LM "thinks" the
  prompt is about, a representation trained on far more text than MiniLM's sentence objective.

The hypothesis is that these carry difficulty information the sentence embedding
lacks. ``benchmarks/route_lm_features.py`` measures them next to the MiniLM features on unseen
subjects; a full pass with the LM head costs ~140 ms CPU per ~100-token prompt, nearly three
times the router's 50 ms budget.

The router's own use is cheaper: :class:`LMEmbedder` (``route.router.embedder: gecko@<layer>``)
runs only the first layers, without the LM head, and hands the scorers the standardised,
unit-normalised pooled state in place of MiniLM's vector (:func:`lm_hidden`).
``benchmarks/route_lm_layers.py`` and ``route_mmlu.py`` measure what that buys and costs
(docs/routing.md).

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

    dtype = _resolve_dtype(dtype)
    with _models_lock:
        key = (model, dtype)
        if key not in _models:
            _models[key] = load_causal_lm(model, dtype=getattr(torch, dtype))
        return _models[key]


def _key(kind: str, model: str, max_tokens: int, layer: int, text: str) -> str:
    h = hashlib.sha1(f"{kind}{FEATURE_VERSION}\0{model}\0{max_tokens}\0{layer}\0{text}".encode())
    return h.hexdigest()


def _cached(
    kind: str,
    texts: Sequence[str],
    model: str,
    max_tokens: int,
    layer: int,
    compute,
    cache_path,
    progress: bool,
    label: str,
) -> np.ndarray | None:
    """``(n, d)``: one row per text, in order (None for no texts). Rows come from the SQLite
    cache where present, the rest from ``compute(texts, bar)`` in chunks of 256, each chunk
    cached as it finishes (an interrupted long run keeps what it computed)."""
    from zimo.embeddings import _DiskCache, _progress

    texts = [t if isinstance(t, str) else str(t) for t in texts]
    keys = [_key(kind, model, max_tokens, layer, t) for t in texts]
    disk = _DiskCache(cache_path) if cache_path else None
    try:
        found = disk.get_many(keys) if disk is not None else {}
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            todo = [texts[first[k]] for k in missing]
            bar = _progress(progress, len(todo), label)
            try:
                for a in range(0, len(todo), 256):
                    fresh = dict(
                        zip(missing[a : a + 256], compute(todo[a : a + 256], bar), strict=True)
                    )
                    found.update(fresh)
                    if disk is not None:
                        disk.put_many(fresh)
            finally:
                if bar is not None:
                    bar[0].stop()
    finally:
        if disk is not None:
            disk.close()
    return np.stack([found[k] for k in keys]) if keys else None


def _token_ids(tok, texts: list[str], max_tokens: int) -> list[list[int]]:
    """Truncated token ids; an empty text (no tokens: this tokenizer adds no BOS) becomes the
    end-of-text token, so a request with an empty prompt still gets a vector."""
    ids = tok(texts, truncation=True, max_length=max_tokens)["input_ids"]
    filler = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return [x if x else [filler] for x in ids]


def _mean_pool(h, attention_mask):
    """``(batch, dim)`` mean of ``h`` over each row's tokens, position 0 left out: it carries
    the outsized activations of an attention sink (hundreds of times the others here), which
    would drown the rest. A one-token row keeps it, having nothing else."""
    m = attention_mask.clone()
    m[:, 0] = (m.sum(1) <= 1).to(m.dtype)
    m = m.unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


def _compute(
    texts: list[str], model: str, max_tokens: int, layer: int, dtype: str, batch_size: int, bar
) -> np.ndarray:
    import torch

    lm, tok = _load(model, dtype)
    n_layers = lm.config.num_hidden_layers
    li = layer if layer >= 0 else n_layers // 2
    ids = _token_ids(tok, texts, max_tokens)
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
            pooled = _mean_pool(res.hidden_states[li].float(), feats["attention_mask"]).numpy()
            for r, i in enumerate(idx):
                m = mask[r]
                length = int(m.sum())
                x = nll[r, : max(length - 1, 0)].numpy()
                if len(x) == 0:
                    x = np.zeros(1, dtype=np.float32)
                last = logp[r, length - 1]
                ent = float(-(last.exp() * last).sum())
                out[i, : len(SCALAR_NAMES)] = (
                    x.mean(),
                    x.std(),
                    np.percentile(x, 90),
                    x.max(),
                    ent,
                    np.log1p(length),
                )
                out[i, len(SCALAR_NAMES) :] = pooled[r]
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

    def compute(chunk, bar):
        return _compute(chunk, model, max_tokens, layer, dtype, batch_size, bar)

    mat = _cached("lmfeat", texts, model, max_tokens, layer, compute, cache_path, progress,
                  f"{model} features")  # fmt: skip
    if mat is None:
        return np.zeros((0, len(SCALAR_NAMES))), np.zeros((0, 0), dtype=np.float32)
    k = len(SCALAR_NAMES)
    return mat[:, :k].astype(np.float64), np.ascontiguousarray(mat[:, k:])


# -- the router's LM embedder -------------------------------------------------------------------
# A second, cheaper use of the same model: no LM head (its 49k-way projection costs as much as
# half the layers on a 100-token prompt) and only the first ``layer`` decoder layers.

_bodies: dict[tuple[str, str, int], tuple] = {}
_run_lock = threading.Lock()


def _resolve_dtype(dtype: str) -> str:
    if dtype == "auto":
        from zimo.hw import cpu_has_fast_bf16

        return "bfloat16" if cpu_has_fast_bf16() else "float32"
    return dtype


def _load_body(model: str, dtype: str, layer: int):
    """(decoder truncated to its first ``layer`` layers + final norm, tokenizer), once per
    process. A private copy: truncating the layers of a model that also serves would break it."""
    import torch

    from zimo.errors import ConfigError
    from zimo.models import load_causal_lm

    dtype = _resolve_dtype(dtype)
    with _models_lock:
        key = (model, dtype, layer)
        if key not in _bodies:
            lm, tok = load_causal_lm(model, dtype=getattr(torch, dtype))
            n = lm.config.num_hidden_layers
            if not 1 <= layer <= n:
                raise ConfigError(
                    f"route.router.embedder: {model} has {n} layers, not {layer}",
                    f"use {model}@<1..{n}> (e.g. {model}@{n // 2 + 1})",
                )
            body = lm.get_decoder()
            body.layers = body.layers[:layer]
            del lm  # the LM head and the later layers are freed with it
            _bodies[key] = (body, tok)
        return _bodies[key]


def _hidden(
    texts: list[str], model: str, max_tokens: int, layer: int, dtype: str, batch_size: int, bar
) -> np.ndarray:
    body, tok = _load_body(model, dtype, layer)
    with _run_lock:  # concurrent requests (the gateway's threads) take turns on the cores
        return _pooled(body, tok, texts, max_tokens, batch_size, bar)


def _pooled(body, tok, texts, max_tokens, batch_size, bar) -> np.ndarray:
    import torch

    ids = _token_ids(tok, texts, max_tokens)
    order = np.argsort([len(x) for x in ids], kind="stable")[::-1]  # similar lengths per batch
    out = np.zeros((len(texts), body.config.hidden_size), dtype=np.float32)
    tok.padding_side = "right"
    with torch.inference_mode():
        for a in range(0, len(order), batch_size):
            idx = order[a : a + batch_size]
            b = tok.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
            h = body(**b, use_cache=False).last_hidden_state.float()
            out[idx] = _mean_pool(h, b["attention_mask"]).numpy()
            if bar is not None:
                bar[0].update(bar[1], advance=len(idx))
    return out


def lm_hidden(
    texts: Sequence[str],
    *,
    model: str = "gecko",
    layer: int = 16,
    max_tokens: int = 256,
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 16,
    dtype: str = "auto",
    progress: bool = False,
) -> np.ndarray:
    """``(n, hidden_size)``: the mean-pooled output of ``model``'s first ``layer`` layers (after
    the final norm, as a model cut at ``layer`` would give it), position 0 left out.

    Texts are truncated to ``max_tokens`` tokens; cached texts (``cache_path``) are not computed
    again."""

    def compute(chunk, bar):
        return _hidden(chunk, model, max_tokens, layer, dtype, batch_size, bar)

    mat = _cached("lmhid", texts, model, max_tokens, layer, compute, cache_path, progress,
                  f"{model}@{layer} hidden states")  # fmt: skip
    return np.zeros((0, 0), dtype=np.float32) if mat is None else mat


# What ``embedder: auto`` picks where the CPU has native bf16. Measured by
# benchmarks/route_mmlu.py on unseen MMLU subjects (grouped 5-fold x 3, 2-core EPYC with
# AVX512-BF16): APGR 0.661 / CPT(50%) 0.340 vs MiniLM's 0.644 / 0.353, decide() p50 48.9 ms
# vs 24.3 ms. gecko@10 (43.7 ms) matched MiniLM's quality, so it buys nothing for its cost.
AUTO_LM = "gecko@12"


def resolve_embedder(spec: str) -> str:
    """``auto`` -> :data:`AUTO_LM` where bf16 runs in hardware, else ``minilm`` (in fp32 the
    first 12 gecko layers took 1.9x as long on the 2-core EPYC, 75 vs 40 ms, far past the
    router's 50 ms budget); any other spec unchanged."""
    if spec != "auto":
        return spec
    from zimo.hw import cpu_has_fast_bf16

    return AUTO_LM if cpu_has_fast_bf16() else "minilm"


def parse_embedder(spec: str) -> tuple[str, int] | None:
    """``"minilm"`` -> None; ``"<model>@<layer>"`` -> (model, layer); ``auto`` is resolved
    first (:func:`resolve_embedder`)."""
    from zimo.errors import ConfigError

    spec = resolve_embedder(spec)
    if spec == "minilm":
        return None
    model, sep, layer = spec.rpartition("@")
    if not sep or not model or not layer.isdigit():
        raise ConfigError(
            f"route.router.embedder: {spec!r} is neither minilm nor <model>@<layer>",
            "use auto, minilm or e.g. gecko@12",
        )
    return model, int(layer)


class LMEmbedder:
    """Router vectors from an embedded LM: :func:`lm_hidden` standardised per dimension with the
    training prompts' statistics, then unit-normalised.

    Standardising matters: a few hidden dimensions carry activations tens of times the others
    and would decide every cosine alone; unit norm lets the scorers built for MiniLM's unit
    vectors (kNN cosine, the logistic regression's embedding weight) take these unchanged. This
    is what ``benchmarks/route_lm_layers.py`` and ``route_mmlu.py`` measured. Repeated prompts
    are answered from an in-memory LRU (not pickled with the router).
    """

    def __init__(
        self, spec: str, *, max_tokens: int = 256, dtype: str = "auto", cache_size: int = 2048
    ):
        parsed = parse_embedder(spec)
        if parsed is None:
            raise ValueError("LMEmbedder needs <model>@<layer>, not minilm")
        self.spec = spec
        self.model, self.layer = parsed
        self.max_tokens, self.dtype, self.cache_size = max_tokens, dtype, cache_size
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self._init_lru()

    def _init_lru(self) -> None:
        from collections import OrderedDict

        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_lru", "_lru_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_lru()

    def raw(self, texts: Sequence[str], *, cache_path=None, progress: bool = False) -> np.ndarray:
        """Pooled hidden states before standardisation."""
        texts = list(texts)
        with self._lru_lock:
            hit = {t: self._lru[t] for t in texts if t in self._lru}
            for t in hit:
                self._lru.move_to_end(t)
        todo = list(dict.fromkeys(t for t in texts if t not in hit))
        if todo:
            vecs = lm_hidden(
                todo,
                model=self.model,
                layer=self.layer,
                max_tokens=self.max_tokens,
                cache_path=cache_path,
                dtype=self.dtype,
                progress=progress,
            )
            new = dict(zip(todo, vecs, strict=True))
            hit.update(new)
            if self.cache_size and len(todo) <= self.cache_size:  # requests, not bulk refits
                with self._lru_lock:
                    self._lru.update(new)
                    while len(self._lru) > self.cache_size:
                        self._lru.popitem(last=False)
        if not texts:  # no prompts: no rows, the fitted width (a 0-row transform still works)
            return np.zeros((0, 0 if self.mean is None else len(self.mean)), dtype=np.float32)
        return np.stack([hit[t] for t in texts])

    def fit_transform(self, texts: Sequence[str], *, cache_path=None, progress: bool = False):
        """Fit the standardisation on ``texts`` and return their vectors: one LM pass."""
        raw = self.raw(texts, cache_path=cache_path, progress=progress)
        return self.fit(raw).transform(raw)

    def fit(self, raw: np.ndarray) -> LMEmbedder:
        raw = np.asarray(raw, dtype=np.float64)
        self.mean = raw.mean(0)
        self.std = raw.std(0) + 1e-6
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("LMEmbedder.transform before fit")
        z = (np.asarray(raw, dtype=np.float64) - self.mean) / self.std
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z

    def embed(self, texts: Sequence[str], *, cache_path=None, progress: bool = False):
        return self.transform(self.raw(texts, cache_path=cache_path, progress=progress))


# -- the cheap tier's own confidence, from a first pass ------------------------------------------
# What a cascade reads after the cheap call (its answer's probability), read off an embedded LM
# standing in for the cheap tier: one forward pass over the prompt, the LM head applied at the
# last position only, the distribution over the option letters. Unlike the prompt vector it does
# not say what the prompt is about, only how sure a model is of its answer, which is what should
# carry over to subjects (and tasks) the router never saw.

CONFIDENCE_NAMES = (
    "lm_letter_entropy",  # entropy of the renormalised distribution over the options' letters
    "lm_letter_top",  # probability of the most likely letter (renormalised)
    "lm_letter_margin",  # top minus second
    "lm_letter_mass",  # log of the probability mass on any option letter (format followed?)
    "lm_next_entropy",  # entropy of the full next-token distribution (open-ended prompts too)
)
_OPTION = None


def option_letters(text: str) -> list[str]:
    """Letters of the options listed one per line (``A. ...``, ``B) ...``); [] if none."""
    import re

    global _OPTION
    if _OPTION is None:
        _OPTION = re.compile(r"^\s*\(?([A-J])[.):]\s", re.M)
    seen = list(dict.fromkeys(_OPTION.findall(text)))
    return seen if len(seen) >= 2 else []


def _confidence(
    texts: list[str], model: str, max_tokens: int, dtype: str, batch_size: int, bar
) -> np.ndarray:
    import torch

    lm, tok = _load(model, dtype)
    # Keep the end of a long prompt: the options and the "Answer:" cue are there.
    tok.truncation_side = "left"
    ids = _token_ids(tok, texts, max_tokens)
    tok.truncation_side = "right"
    letters = "ABCDEFGHIJ"
    # Both spellings a model may continue with ("Answer: A" / "Answer:A").
    lid = {
        c: sorted({tok.encode(" " + c, add_special_tokens=False)[-1], tok.encode(c)[-1]})
        for c in letters
    }
    order = np.argsort([len(x) for x in ids], kind="stable")[::-1]
    out = np.zeros((len(texts), len(CONFIDENCE_NAMES)), dtype=np.float32)
    tok.padding_side = "right"
    body, head = lm.get_decoder(), lm.get_output_embeddings()
    with torch.inference_mode():
        for a in range(0, len(order), batch_size):
            idx = order[a : a + batch_size]
            b = tok.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
            h = body(**b, use_cache=False).last_hidden_state
            last = b["attention_mask"].sum(1) - 1
            # The LM head on the last position only: a 49k-way projection of every position
            # would cost as much as half the layers.
            logp = torch.log_softmax(head(h[torch.arange(len(idx)), last]).float(), -1)
            for r, i in enumerate(idx):
                opts = option_letters(texts[i]) or list("ABCD")
                lp = torch.stack([torch.logsumexp(logp[r, lid[c]], 0) for c in opts])
                mass = float(torch.logsumexp(lp, 0))
                p = torch.softmax(lp, 0)
                top = torch.topk(p, 2).values
                ent_all = float(-(logp[r].exp() * logp[r]).sum())
                out[i] = (
                    float(-(p * p.clamp_min(1e-12).log()).sum()) / np.log(len(opts)),
                    float(top[0]),
                    float(top[0] - top[1]),
                    mass,
                    ent_all,
                )
            if bar is not None:
                bar[0].update(bar[1], advance=len(idx))
    return out


def lm_confidence(
    texts: Sequence[str],
    *,
    model: str = "gecko",
    max_tokens: int = 256,
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 8,
    dtype: str = "auto",
    progress: bool = False,
) -> np.ndarray:
    """``(n, 5)``: the embedded LM's confidence in its next token (``CONFIDENCE_NAMES``): over the
    option letters the prompt lists (A-D when it lists none) and over the whole vocabulary.

    One forward pass per prompt (the last ``max_tokens`` tokens), cached by text in
    ``cache_path``."""
    mat = _cached(
        "lmconf",
        texts,
        model,
        max_tokens,
        0,
        lambda chunk, bar: _confidence(chunk, model, max_tokens, dtype, batch_size, bar),
        cache_path,
        progress,
        f"{model} answer confidence",
    )
    return np.zeros((0, len(CONFIDENCE_NAMES))) if mat is None else mat.astype(np.float64)
