"""Training data from the gateway request log (the flywheel): filter, dedup, redact → chat records.

No teacher call is made: the answers are the logged ones (usually the big model's). Filters by
requested model, answering model, time range, feedback and success; one record per distinct
prompt (the best-rated, then newest answer wins); PII redacted in prompts and answers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from zimo.data.formatters.redact import Redactor
from zimo.errors import DataError
from zimo.logs.requests import RequestLog, to_iso
from zimo.records import make_record
from zimo.synth import templates
from zimo.synth.config import DistillOptions
from zimo.synth.output import SynthResult, write_output


def _prompt_messages(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    msgs = row.get("messages")
    if isinstance(msgs, list) and msgs:
        out = []
        for m in msgs:
            if not isinstance(m, dict):
                return None
            content = m.get("content")
            if isinstance(content, list):  # text parts only; images etc. are not training text
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            out.append({"role": str(m.get("role", "user")), "content": str(content or "")})
        return out
    if isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return [{"role": "user", "content": row["prompt"]}]
    return None


def distill(
    log_db: str | Path,
    out_dir: str | Path,
    opts: DistillOptions | None = None,
) -> dict[str, Any]:
    """Turn the request log at ``log_db`` into chat records; write Parquet + summary."""
    opts = opts or DistillOptions()
    path = Path(log_db)
    if not path.exists():
        raise DataError(
            f"request log {path} does not exist",
            "run `zimo serve` with logging on, or set synth.distill.log_db",
        )
    result = SynthResult("distill")
    since, until = to_iso(opts.since), to_iso(opts.until)
    redactor = Redactor() if opts.redact else None
    best: dict[str, tuple[tuple, dict[str, Any], list[dict[str, Any]]]] = {}
    total = 0
    with RequestLog(path) as log:
        for row in log.iter():
            total += 1
            brief = {"id": row["id"], "model": row.get("model"), "time": row.get("time")}
            if opts.models and row.get("model") not in opts.models:
                result.reject(brief, "model")
                continue
            if opts.answered_by and row.get("answered_by") not in opts.answered_by:
                result.reject(brief, "answered_by")
                continue
            if (since and row["time"] < since) or (until and row["time"] >= until):
                result.reject(brief, "time_range")
                continue
            fb = row.get("feedback")
            if (opts.feedback == "positive" and not (fb is not None and fb > 0)) or (
                opts.feedback == "non_negative" and fb is not None and fb < 0
            ):
                result.reject(brief, "feedback")
                continue
            status = row.get("status")
            if opts.only_success and (
                row.get("error") or status is None or not 200 <= int(status) < 300
            ):
                result.reject(brief, "failed_request")
                continue
            response = row.get("response")
            if not isinstance(response, str) or len(response.strip()) < max(
                1, opts.min_response_chars
            ):
                result.reject(brief, "empty_response")
                continue
            prompt = _prompt_messages(row)
            if prompt is None or not any(m["role"] == "user" and m["content"] for m in prompt):
                result.reject(brief, "no_prompt")
                continue
            key = hashlib.sha256(
                json.dumps(prompt, ensure_ascii=False, sort_keys=True).encode()
            ).hexdigest()
            rank = (fb if fb is not None else 0, row["time"], row["id"])
            if not opts.dedup:
                key = row["id"]
            prev = best.get(key)
            if prev is not None:
                loser = prev if prev[0] < rank else (rank, row, prompt)
                result.reject(
                    {"id": loser[1]["id"], "model": loser[1].get("model")}, "duplicate_prompt"
                )
                if prev[0] >= rank:
                    continue
            best[key] = (rank, row, prompt)
    for i, (_, row, prompt) in enumerate(sorted(best.values(), key=lambda t: t[1]["time"])):
        response = row["response"].strip()
        messages = [*prompt, {"role": "assistant", "content": response}]
        if redactor is not None:
            messages = redactor.messages(messages)
        generator = row.get("answered_by") or row.get("model")
        result.records.append(
            make_record(
                None,
                source=f"log:{path.name}",
                offset=i,
                messages=messages,
                origin="log",
                generator=generator,
                extra_meta={
                    "prompt_template": templates.DISTILL,
                    "log_id": row["id"],
                    "log_time": row["time"],
                    "requested_model": row.get("model"),
                    "feedback": row.get("feedback"),
                    "escalated": row.get("escalated"),
                    "redacted": bool(row.get("redacted")) or redactor is not None,
                },
            )
        )
    result.counts = {"log_rows": total, "distinct_prompts": len(best)}
    result.extra["prompt_templates"] = [templates.DISTILL]
    result.extra["redaction"] = (
        {"backend": redactor.backend, "texts_changed": redactor.changed}
        if redactor is not None
        else {"backend": None, "reason": "synth.distill.redact is false"}
    )
    result.extra["log_db"] = str(path)
    return write_output(out_dir, result)
