"""What a synth run writes: ``data.parquet``, ``rejects.parquet`` and ``summary.json``."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zimo.dataset_io import write_records
from zimo.fileio import write_json_atomic

DATA_FILE = "data.parquet"
REJECTS_FILE = "rejects.parquet"
SUMMARY_FILE = "summary.json"


@dataclass
class SynthResult:
    """Records produced by a mode, the rejected candidates with reasons, and the counts."""

    mode: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None  # budget | stalled | max_rounds | None (finished)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def reject(self, candidate: dict[str, Any], reason: str) -> None:
        """Count a dropped candidate and keep it (with the reason) for the rejects file."""
        self.dropped[reason] += 1
        self.rejects.append(
            {**candidate, "reject_step": f"synth.{self.mode}", "reject_reason": reason}
        )

    def summary(self, teacher: Any | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "produced": len(self.records),
            "rejected": sum(self.dropped.values()),
            "filtered_by_reason": dict(sorted(self.dropped.items())),
            "counts": self.counts,
            "stopped": self.stopped,
            "elapsed_s": round(time.time() - self.started, 3),
            **self.extra,
        }
        if teacher is not None:
            cfg = teacher.config
            out["teacher"] = {
                "model": cfg.model,
                "base_url": cfg.base_url,
                "local": cfg.local,
                "price_in_per_1m": cfg.price_in_per_1m,
                "price_out_per_1m": cfg.price_out_per_1m,
                "max_cost": cfg.max_cost,
            }
            out["usage"] = teacher.usage.to_dict()
            out["cost"] = round(teacher.usage.cost, 6)  # spent by this run
            # What the whole dataset cost, cached answers at the price they were bought for.
            out["total_cost"] = round(teacher.usage.cost + teacher.usage.cached_cost, 6)
            out["tokens"] = teacher.usage.prompt_tokens + teacher.usage.completion_tokens
            out["redaction"] = (
                {"backend": teacher.redactor.backend, "texts_changed": teacher.redactor.changed}
                if teacher.redactor is not None
                else {"backend": None, "reason": "teacher.local is true"}
            )
        return out


def write_output(out_dir: str | Path, result: SynthResult, teacher: Any | None = None) -> dict:
    """Write the three files atomically (``summary.json`` last) and return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / DATA_FILE, result.records)
    write_records(out / REJECTS_FILE, _json_safe(result.rejects))
    summary = result.summary(teacher)
    summary["files"] = {"data": DATA_FILE, "rejects": REJECTS_FILE}
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Rejects mix shapes (raw parsed tasks, records, log rows); keep it one flat schema.
    import json

    safe = []
    for r in rows:
        safe.append(
            {
                "reject_step": r.get("reject_step"),
                "reject_reason": r.get("reject_reason"),
                "candidate": json.dumps(
                    {k: v for k, v in r.items() if k not in ("reject_step", "reject_reason")},
                    ensure_ascii=False,
                    default=str,
                ),
            }
        )
    return safe
