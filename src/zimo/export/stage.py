"""The ``export`` build stage (for ``zimo build`` when ``export:`` is configured).

The DAG (:mod:`zimo.stages.dag`) finds it through the LM kind in :mod:`zimo.kinds`; each
configured format is written to ``<artifact>/<format>-<quant>/``.
"""

from __future__ import annotations

from typing import Any

from zimo.export.project import export_all, from_artifacts
from zimo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    """Export the train artifact in every format of the project's ``export:`` section."""
    pe = from_artifacts(
        ctx.project,
        ctx.input("train"),
        split_dir=ctx.inputs.get("split"),
        eval_dir=ctx.inputs.get("eval"),
    )
    reports = export_all(pe, ctx.work)
    summary: dict[str, Any] = {"passed": all(r["passed"] for r in reports)}
    for r in reports:
        tag = r["format"] if r["format"] == "hf" else f"{r['format']}-{r['quant']}"
        v = (r.get("verify") or {}).get("transformers") or {}
        summary[tag] = {
            "passed": r["passed"],
            "token_agreement": v.get("token_agreement"),
            "label_agreement": (v.get("labels") or {}).get("agreement"),
        }
    return StageResult(rows={"exports": len(reports)}, summary=summary)
