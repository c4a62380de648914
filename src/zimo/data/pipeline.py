"""Curation steps and the runner that chains them (in the style of datatrove).

A step is one small class. A :class:`Formatter` changes text (``format(text) -> text``) and
the base class counts how many records it changed; a :class:`Filter` keeps or drops a record
(``filter(rec) -> bool | (bool, reason)``) and the base class counts drops per reason and keeps
a few examples. Dedup steps keep state across records. Steps act on ``rec["text"]`` or, for
chat records, on every message's ``content``.

``run_steps(records, steps)`` streams records through the steps and returns a
:class:`CurateResult` with the kept records, the rejected ones (each with ``reject_step`` and
``reject_reason``) and per-step statistics. The engines in :mod:`zimo.data.curate` run the same
steps over many files and processes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "DOC_FORMATS",
    "CurateResult",
    "Filter",
    "Formatter",
    "Step",
    "StepStats",
    "record_text",
    "run_steps",
]

EXAMPLES_PER_REASON = 3
# Document formats: pages and files. Records from JSONL/CSV/Parquet tables (SMS, labelled rows)
# are data, not pages; the page steps leave them untouched.
DOC_FORMATS = ("html", "txt", "md", "pdf")
EXAMPLE_CHARS = 300

Reject = Callable[[dict[str, Any], str], None]


def record_text(rec: dict[str, Any]) -> str:
    """The text a filter judges: ``text``, or the chat messages' contents joined by newlines."""
    text = rec.get("text")
    if text is not None:
        return text
    msgs = rec.get("messages") or []
    return "\n".join(str(m.get("content") or "") for m in msgs)


def _clip(text: str, n: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= n else text[:n] + "…"


@dataclass
class StepStats:
    """What one step did: records in/out, changed (formatters), dropped per reason, examples."""

    name: str
    kind: str
    seen: int = 0
    kept: int = 0
    changed: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    extra: Counter = field(default_factory=Counter)  # step-specific counters (e.g. PII types)

    def add_example(self, key: str, example: dict[str, str]) -> None:
        bucket = self.examples.setdefault(key, [])
        if len(bucket) < EXAMPLES_PER_REASON:
            bucket.append(example)

    def merge(self, other: StepStats) -> None:
        """Add another shard's counts (used by the multi-process engines)."""
        self.seen += other.seen
        self.kept += other.kept
        self.changed += other.changed
        self.dropped.update(other.dropped)
        self.extra.update(other.extra)
        for key, exs in other.examples.items():
            for ex in exs:
                self.add_example(key, ex)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "seen": self.seen,
            "kept": self.kept,
            "changed": self.changed,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped.most_common()),
            "extra": dict(self.extra.most_common()),
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepStats:
        return cls(
            name=d["name"],
            kind=d["kind"],
            seen=d["seen"],
            kept=d["kept"],
            changed=d["changed"],
            dropped=Counter(d.get("dropped_by_reason", {})),
            examples={k: list(v) for k, v in d.get("examples", {}).items()},
            extra=Counter(d.get("extra", {})),
        )


class Step:
    """One curation step. Subclasses implement :meth:`run` (or ``format`` / ``filter``)."""

    name: ClassVar[str] = "step"
    kind: ClassVar[str] = "step"
    # True when the step needs to see every record of the corpus (dedup); the engines run
    # such steps in one place after the per-record steps ran in parallel.
    is_global: ClassVar[bool] = False

    def __init__(self) -> None:
        self.stats = StepStats(self.name, self.kind)

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        """Yield the records that go on; call ``reject(rec, reason)`` for each dropped one."""
        raise NotImplementedError

    def drop(self, rec: dict[str, Any], reason: str, reject: Reject) -> None:
        """Count a drop with its reason, keep an example, hand the record to ``reject``."""
        self.stats.dropped[reason] += 1
        self.stats.add_example(reason, {"id": str(rec.get("id")), "text": _clip(record_text(rec))})
        reject(rec, reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Formatter(Step):
    """Changes text. Implement ``format(text) -> text``; the base counts changed records."""

    kind = "formatter"

    def format(self, text: str) -> str:
        raise NotImplementedError

    def apply(self, rec: dict[str, Any]) -> bool:
        """Format the record in place; return whether anything changed."""
        changed = False
        text = rec.get("text")
        if text is not None:
            new = self.format(text)
            if new != text:
                rec["text"] = new
                changed = True
                if len(self.stats.examples.get("changed", ())) < EXAMPLES_PER_REASON:
                    self.stats.add_example(
                        "changed",
                        {"id": str(rec.get("id")), "before": _clip(text), "after": _clip(new)},
                    )
        msgs = rec.get("messages")
        if msgs:
            new_msgs = []
            for m in msgs:
                content = m.get("content")
                if isinstance(content, str):
                    new = self.format(content)
                    if new != content:
                        m = {**m, "content": new}
                        changed = True
                new_msgs.append(m)
            rec["messages"] = new_msgs
        return changed

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        for rec in records:
            self.stats.seen += 1
            if self.apply(rec):
                self.stats.changed += 1
            self.stats.kept += 1
            yield rec


class Filter(Step):
    """Keeps or drops records. Implement ``filter(rec) -> bool | (bool, reason)``."""

    kind = "filter"
    default_reason: ClassVar[str] = "filtered"

    def filter(self, rec: dict[str, Any]) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        for rec in records:
            self.stats.seen += 1
            verdict = self.filter(rec)
            if isinstance(verdict, tuple):
                keep, reason = verdict
            else:
                keep, reason = verdict, self.default_reason
            if keep:
                self.stats.kept += 1
                yield rec
            else:
                self.drop(rec, reason, reject)


@dataclass
class CurateResult:
    """Output of :func:`run_steps`."""

    kept: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    stats: list[StepStats]

    @property
    def rejects(self) -> list[dict[str, Any]]:
        """Alias of :attr:`rejected`."""
        return self.rejected

    def stats_dict(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.stats]


def _private_copy(rec: dict[str, Any]) -> dict[str, Any]:
    # Steps edit records in place for speed; copy once here so callers' dicts stay untouched.
    out = dict(rec)
    if isinstance(out.get("meta"), dict):
        out["meta"] = dict(out["meta"])
    if out.get("messages"):
        out["messages"] = [dict(m) for m in out["messages"]]
    return out


def run_steps(
    records: Iterable[dict[str, Any]],
    steps: list[Step],
    *,
    on_record: Callable[[], None] | None = None,
) -> CurateResult:
    """Stream ``records`` through ``steps``; return kept, rejected and per-step stats.

    ``on_record`` is called once per input record (for a progress bar).
    """
    rejected: list[dict[str, Any]] = []

    def make_reject(step_name: str) -> Reject:
        def reject(rec: dict[str, Any], reason: str) -> None:
            rejected.append({**rec, "reject_step": step_name, "reject_reason": reason})

        return reject

    def source() -> Iterator[dict[str, Any]]:
        for rec in records:
            if on_record is not None:
                on_record()
            yield _private_copy(rec)

    stream: Iterable[dict[str, Any]] = source()
    for step in steps:
        stream = step.run(stream, make_reject(step.name))
    kept = list(stream)
    return CurateResult(kept=kept, rejected=rejected, stats=[s.stats for s in steps])


_CJK_RE = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]"
)


def count_cjk(text: str) -> int:
    """Number of CJK ideographs / kana / hangul in ``text``."""
    return len(_CJK_RE.findall(text))


def is_cjk_char(ch: str) -> bool:
    return bool(_CJK_RE.match(ch))


class GlobalStep(Step):
    """A step that must see the whole corpus (dedup).

    It splits into ``signature(rec)`` — computed per record, in parallel, picklable — and
    ``select(items)`` over ``(index, id, signature)`` in corpus order, which returns the
    records to drop as ``{index: (reason, kept_id)}``. The first occurrence is kept, so the
    result is the same whatever engine computed the signatures.
    """

    kind = "dedup"
    is_global = True

    def signature(self, rec: dict[str, Any]) -> Any:
        raise NotImplementedError

    def select(self, items: list[tuple[int, str, Any]]) -> dict[int, tuple[str, str]]:
        raise NotImplementedError

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        # Serial path: buffer, select, then yield in order (fine for in-memory use).
        buf = list(records)
        self.stats.seen += len(buf)
        items = [(i, str(r.get("id")), self.signature(r)) for i, r in enumerate(buf)]
        drops = self.select(items)
        for i, rec in enumerate(buf):
            if i in drops:
                reason, kept_id = drops[i]
                rec.setdefault("meta", {})["duplicate_of"] = kept_id
                self.drop(rec, reason, reject)
            else:
                self.stats.kept += 1
                yield rec
