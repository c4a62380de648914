"""The guard as a pipeline step: score records, flag or drop machine-written text.

For a build stage (``zimo.stages.guard``) or a script::

    from zimo.guard import GuardConfig
    from zimo.guard.stage import guard_records

    kept, rejected, summary = guard_records(records, GuardConfig(**project.section("guard")))

Every kept record gets ``guard_score`` / ``guard_flag`` at the top level and in ``meta`` (so
:func:`zimo.guard.mix.build_mix` sees them later); with ``action: drop`` flagged records go to
the rejects with ``reject_step="guard"`` and a reason. ``summary`` is what the curate report
shows (flagged share by origin, examples).
"""

from __future__ import annotations

from typing import Any

from zimo.guard.config import GuardConfig


def guard_records(
    records: list[dict], config: GuardConfig | None = None, show_progress: bool = True
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Score ``records``; returns ``(kept, rejected, summary)``."""
    from zimo.guard.score_file import score_records

    cfg = config or GuardConfig()
    rows, summary = score_records(records, cfg, show_progress=show_progress)
    used = summary["detector"].get("scores", {})  # score: auto picks one per scorer model
    kept, rejected = [], []
    for r in rows:
        meta = dict(r.get("meta") or {}) if isinstance(r.get("meta"), dict) else None
        if meta is not None:
            meta.update(guard_score=r["guard_score"], guard_flag=r["guard_flag"])
            r["meta"] = meta
        if r["guard_flag"] and cfg.action == "drop":
            rejected.append(
                r
                | {
                    "reject_step": "guard",
                    "reject_reason": f"machine-written text (guard_score {r['guard_score']:.2f} "
                    f"over the threshold, {used.get(r['guard_model'], cfg.score)})",
                }
            )
        else:
            kept.append(r)
    summary["action"] = cfg.action
    summary["dropped"] = len(rejected)
    return kept, rejected, summary
