"""Exact dedup on a hash of the normalised text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from zimo.data.pipeline import GlobalStep, Reject, Step, record_text
from zimo.data.step_spec import StepSpec

_NOT_WORD = re.compile(r"[\W_]+")


def dedup_key(text: str) -> str:
    """Casefolded text without whitespace, punctuation or symbols ("Hello, World!" = "hello world")."""
    return _NOT_WORD.sub("", text.casefold())


class ExactDedup(GlobalStep):
    """Keep the first record of each normalised text; drop the rest as ``exact_duplicate``.

    Chat records are keyed on roles and contents. ``key="text+label"`` keeps identical texts
    that carry different labels (so a label conflict is visible instead of silently resolved).
    """

    name = "exact_dedup"

    def __init__(self, key: str = "text") -> None:
        super().__init__()
        self.key = key

    def signature(self, rec: dict[str, Any]) -> bytes:
        if rec.get("text") is None and rec.get("messages"):
            norm = "\x1e".join(
                f"{m.get('role')}\x1f{dedup_key(str(m.get('content') or ''))}"
                for m in rec["messages"]
            )
        else:
            norm = dedup_key(record_text(rec))
        if self.key == "text+label":
            norm += f"\x00{rec.get('label')}"
        return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def select(self, items: list[tuple[int, str, Any]]) -> dict[int, tuple[str, str]]:
        first: dict[bytes, str] = {}
        drops: dict[int, tuple[str, str]] = {}
        for idx, rid, sig in items:
            if sig in first:
                drops[idx] = ("exact_duplicate", first[sig])
            else:
                first[sig] = rid
        return drops

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        # Streaming: only the hashes stay in memory.
        first: dict[bytes, str] = {}
        for rec in records:
            self.stats.seen += 1
            sig = self.signature(rec)
            if sig in first:
                rec.setdefault("meta", {})["duplicate_of"] = first[sig]
                self.drop(rec, "exact_duplicate", reject)
            else:
                first[sig] = str(rec.get("id"))
                self.stats.kept += 1
                yield rec


class ExactDedupSpec(StepSpec):
    """Drop records whose normalised text (casefolded, no whitespace/punctuation) was seen."""

    step: Literal["exact_dedup"] = "exact_dedup"
    key: Literal["text", "text+label"] = "text"

    def build(self) -> Step:
        return ExactDedup(key=self.key)
