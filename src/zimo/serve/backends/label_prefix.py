"""Label requests after a cached prompt prefix, for the transformers engine.

Every label prompt of a sub-model starts with the same chat template, system prompt and
instruction (about 40 of an SMS prompt's ~65 tokens). The engine runs that prefix once per
sub-model and adapter and keeps its KV cache; a batch of label requests then runs only the
messages' own tokens, on top of broadcast views of the cached prefix (no copy per request,
``zimo.infer.label.expand_cache``). The cache is dropped whenever adapters are loaded or
evicted, since a prefix's keys and values depend on the adapter.
"""

from __future__ import annotations

from typing import Any


class LabelPrefixCache:
    def __init__(self) -> None:
        self._prefix: dict[str, list[int]] = {}  # sub-model -> shared prompt prefix ids
        self._kv: dict[tuple[str, str], Any] = {}  # (sub-model, adapter) -> prefix KV cache

    def clear(self, model: str | None = None) -> None:
        """Forget cached KVs (all, or one sub-model's prefix and KVs)."""
        if model is None:
            self._kv.clear()
            return
        self._prefix.pop(model, None)
        for key in [k for k in self._kv if k[0] == model]:
            del self._kv[key]

    def prefix(self, model: str, prompt) -> list[int]:
        """The ids every prompt of ``model`` starts with (``prompt``: its ``LabelPrompt``)."""
        p = self._prefix.get(model)
        if p is None:
            from zimo.infer.label import common_prefix

            probe = [prompt.prompt_ids(t) for t in ("a", "b c", "1")]
            prompt.truncated = 0
            p = probe[0][: common_prefix(probe)]
            self._prefix[model] = p
        return p

    def first_token_scores(self, backend, model: str, aid: str, jobs: list, prompt) -> Any | None:
        """Scores of the labels' first tokens after each job's prompt, ``[len(jobs), labels]``
        (log-probabilities up to a per-row constant, which a softmax over the labels cancels),
        running only the tokens after the cached prefix and only the labels' rows of the output
        head (``zimo.infer.label.head_rows``); None when some prompt does not start with the
        prefix (the caller runs whole prompts then)."""
        import torch

        from zimo.infer.label import expand_cache, head_rows

        p = self.prefix(model, prompt)
        n = len(p)
        if not n or not all(len(j.prompt_ids) > n and j.prompt_ids[:n] == p for j in jobs):
            return None
        kv = self._kv.get((model, aid))
        if kv is None:
            ids = torch.tensor([p], device=backend.device)
            ones = torch.ones_like(ids)
            pos = torch.arange(n, device=backend.device)[None, :]
            kv = backend.new_cache()
            backend._forward(ids, ones, pos, [aid], past=kv, keep=1, label=True)
            self._kv[(model, aid)] = kv
        ids, mask, pos = backend._pad([j.prompt_ids[n:] for j in jobs])
        full_mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, n), mask], dim=1)
        cache = expand_cache(kv, len(jobs))
        first = [a[0] for a in prompt.label_ids]
        # The model that runs this batch (the merged copy of its adapter, if any) owns the head.
        lm = backend._label_model([aid]) or backend.model
        with head_rows(lm, first) as rows_only:
            out = backend._forward(ids, full_mask, pos + n, [aid] * len(jobs), past=cache, keep=1,
                                   label=True)  # fmt: skip
        z = out.logits[:, -1, :].float()
        return z if rows_only else torch.log_softmax(z, dim=-1)[:, first]
