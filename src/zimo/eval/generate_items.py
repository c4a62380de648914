"""What a generate/chat evaluation compares: test items (prompt, reference), each system's
generations, and which test items overlap the training data (so a report can set them apart)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zimo.eval.cost import CostModel, Measurement

Messages = list[dict[str, str]]


@dataclass
class GenerateItem:
    """One test item: the chat messages that ask (no final answer) and the reference answer."""

    id: str
    messages: Messages
    reference: str

    @property
    def prompt(self) -> str:
        """The last user turn: what the report shows and what overlap detection compares."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return str(m.get("content") or "")
        return ""


@dataclass
class Generation:
    """One answer with its token counts (``text=None``: the system gave no answer)."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass
class SystemRun:
    """A system's answers to the test items (aligned with them) and how long they took."""

    name: str
    answers: list[str | None]
    measurements: list[Measurement] | None = None
    cost_model: CostModel | None = None
    description: str = ""
    errors: list[str | None] = field(default_factory=list)


def items_from_records(records: Sequence[dict[str, Any]]) -> list[GenerateItem]:
    """Test items from Zimo records: ``messages`` ending in the assistant's reference answer.

    Records with ``text`` + ``label`` (a prompt and its answer) are accepted too. Records
    without a reference answer are skipped (they cannot be scored by reference metrics).
    """
    items = []
    for r in records:
        msgs = r.get("messages")
        if msgs is not None and not isinstance(msgs, list):
            msgs = list(msgs)  # Parquet round-trips give numpy arrays of dicts
        if msgs:
            msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]
            if msgs[-1]["role"] == "assistant" and len(msgs) >= 2:
                items.append(GenerateItem(str(r["id"]), msgs[:-1], msgs[-1]["content"]))
                continue
        if r.get("text") and r.get("label"):
            items.append(
                GenerateItem(
                    str(r["id"]), [{"role": "user", "content": str(r["text"])}], str(r["label"])
                )
            )
    return items


_KEEP = re.compile(r"[\W_]+", re.UNICODE)


def normalise_for_overlap(text: str) -> str:
    """Case-, width-, space- and punctuation-insensitive form of a prompt."""
    return _KEEP.sub("", unicodedata.normalize("NFKC", text).casefold())


def detect_overlap(
    train_prompts: Sequence[str],
    test_prompts: Sequence[str],
    test_ids: Sequence[str] | None = None,
    *,
    near_threshold: float = 0.8,
    shingle: int = 5,
    num_perm: int = 64,
) -> dict[str, Any]:
    """Test prompts that also occur in the training data, exactly or nearly.

    Exact = same normalised text. Near = MinHash-estimated Jaccard similarity of character
    ``shingle``-grams ≥ ``near_threshold`` (character n-grams work for Chinese without a
    segmenter), confirmed by the exact Jaccard of the two shingle sets.
    """
    ids = list(test_ids) if test_ids is not None else [str(i) for i in range(len(test_prompts))]
    train_norm = [normalise_for_overlap(t) for t in train_prompts]
    exact_set = set(train_norm)
    exact = [i for i, t in enumerate(test_prompts) if normalise_for_overlap(t) in exact_set]
    near: list[int] = []
    if train_prompts and test_prompts:
        from datasketch import MinHash, MinHashLSH

        def shingles(s: str) -> set[str]:
            return {s[i : i + shingle] for i in range(max(1, len(s) - shingle + 1))} if s else set()

        def sketch(sh: set[str]) -> MinHash:
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch([x.encode("utf-8") for x in sh])
            return m

        lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm)
        train_sh = []
        for j, t in enumerate(train_norm):
            sh = shingles(t)
            train_sh.append(sh)
            if sh:
                lsh.insert(str(j), sketch(sh))
        exact_idx = set(exact)
        for i, t in enumerate(test_prompts):
            if i in exact_idx:
                continue
            sh = shingles(normalise_for_overlap(t))
            if not sh:
                continue
            for j in lsh.query(sketch(sh)):
                other = train_sh[int(j)]
                if len(sh & other) / max(1, len(sh | other)) >= near_threshold:
                    near.append(i)
                    break
    count = len(exact) + len(near)
    return {
        "count": count,
        "exact": len(exact),
        "near": len(near),
        "share": count / len(test_prompts) if test_prompts else 0.0,
        "ids": [ids[i] for i in sorted(exact + near)][:50],
        "method": f"normalised exact match, or MinHash near-duplicates (character {shingle}-grams, "
        f"Jaccard ≥ {near_threshold}) of test prompts against training prompts",
    }


def cap_items(items: Sequence[GenerateItem], max_rows: int | None) -> list[GenerateItem]:
    """The first ``max_rows`` items (the split is already shuffled, so this is a random subset)."""
    return list(items if max_rows is None else items[:max_rows])
