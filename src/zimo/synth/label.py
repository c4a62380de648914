"""Labelling records with a teacher, with the label set enforced.

Each record is asked once with a JSON schema (``{"label": enum}``) where the server supports
structured output; a server that rejects the schema (400) switches the run to constrained
parsing (JSON first, then an exact / unique whole-word label match in the text). An answer
outside the set is re-asked with a corrective turn up to ``max_label_retries`` times, then the
record is quarantined with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from zimo.errors import ConfigError
from zimo.synth import templates
from zimo.synth.config import LabelOptions
from zimo.synth.output import SynthResult, write_output
from zimo.synth.teacher import ChatRequest, Teacher


def label_schema(labels: list[str]) -> dict[str, Any]:
    """OpenAI ``response_format`` asking for ``{"label": <one of labels>}``."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "label",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": list(labels)}},
                "required": ["label"],
                "additionalProperties": False,
            },
        },
    }


def parse_label(text: str, labels: list[str]) -> tuple[str | None, str]:
    """Map a teacher answer to a label. Returns ``(label, "")`` or ``(None, reason)`` with
    reason ``malformed_json`` (no JSON, no label found) or ``off_label_set``."""
    by_norm = {lab.strip().lower(): lab for lab in labels}
    s = re.sub(r"^```(?:json)?\s*|\s*```$", "", (text or "").strip())
    candidate = None
    m = re.search(r"\{.*\}", s, re.DOTALL)
    if m:
        try:
            obj = json.loads(m.group())
            if isinstance(obj, dict) and obj.get("label") is not None:
                candidate = str(obj["label"])
        except json.JSONDecodeError:
            pass
    if candidate is not None:
        lab = by_norm.get(candidate.strip().lower())
        return (lab, "") if lab else (None, "off_label_set")
    bare = s.strip().strip("\"'`.。 ").lower()
    if bare in by_norm:
        return by_norm[bare], ""
    # A unique whole-word (or, for CJK labels, substring) mention of one label.
    found = set()
    for lab in labels:
        pat = re.escape(lab.lower())
        if re.search(rf"(?<!\w){pat}(?!\w)", s.lower()) if lab.isascii() else lab in s:
            found.add(lab)
    if len(found) == 1:
        return found.pop(), ""
    if len(found) > 1:
        return None, "ambiguous_label"
    return None, ("malformed_json" if s.startswith(("{", "[")) else "off_label_set")


def label(
    records: list[dict[str, Any]],
    out_dir: str | Path,
    teacher: Teacher,
    opts: LabelOptions | None = None,
    labels: list[str] | None = None,
    text_field: str = "text",
) -> dict[str, Any]:
    """Label ``records``; write the labelled ones (+ quarantined rejects) to ``out_dir``."""
    opts = opts or LabelOptions()
    labels = list(opts.labels or labels or [])
    if len(labels) < 2:
        raise ConfigError(
            "label mode needs a label set", "set `labels:` in zimo.yaml or synth.label.labels"
        )
    result = SynthResult("label")
    model = teacher.config.model
    use_schema = opts.structured_output in ("auto", "json_schema")
    schema = label_schema(labels)
    # Per record: the conversation so far.
    pending: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for rec in records:
        text = rec.get(text_field)
        if not isinstance(text, str) or not text.strip():
            result.reject({"id": rec.get("id")}, "empty_text")
            continue
        if rec.get("label") not in (None, "") and not opts.overwrite:
            result.dropped["skipped_already_labelled"] += 1
            continue
        prompt = templates.label_prompt(text, labels, opts.instruction, opts.label_descriptions)
        pending.append((rec, [{"role": "user", "content": prompt}]))
    n_inputs = len(pending)
    retries = fallbacks = 0
    last_reason: dict[int, str] = {}
    attempt = 0
    with teacher.progress(n_inputs, "label", count_calls=False) as bar:
        while pending:
            fmt = schema if use_schema else None
            tmpl = templates.LABEL if attempt == 0 else templates.LABEL_RETRY
            reqs = [ChatRequest(c, template=tmpl, response_format=fmt) for _, c in pending]
            results = teacher.run(reqs)
            bad = [r.error or "" for r in results if (r.error or "").startswith("bad_request")]
            schema_refused = bad and (
                len(bad) == len(results)
                or any(w in e.lower() for e in bad for w in ("response_format", "schema", "json"))
            )
            if use_schema and opts.structured_output == "auto" and schema_refused:
                # The server does not take JSON schemas: constrained parsing from now on.
                use_schema = False
                fallbacks += 1
                continue
            still: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
            for (rec, conv), res in zip(pending, results, strict=True):
                rid = id(rec)
                if not res.ok:
                    result.reject(
                        {"id": rec.get("id"), "error": res.error},
                        "budget" if res.error == "budget" else "teacher_error",
                    )
                    bar.refresh(advance=1)
                    continue
                lab, reason = parse_label(res.content or "", labels)
                if lab is not None:
                    meta = dict(rec.get("meta") or {})
                    meta.update(
                        origin="teacher",
                        generator=model,
                        prompt_template=tmpl,
                        label_source="teacher",
                        text_origin=(rec.get("meta") or {}).get("origin"),
                        request_key=res.key[:16],
                    )
                    result.records.append({**rec, "label": lab, "meta": meta})
                    bar.refresh(advance=1)
                    continue
                last_reason[rid] = reason
                if attempt < opts.max_label_retries:
                    retries += 1
                    follow = templates.label_retry_prompt(res.content or "", labels)
                    still.append(
                        (
                            rec,
                            [
                                *conv,
                                {"role": "assistant", "content": res.content or ""},
                                {"role": "user", "content": follow},
                            ],
                        )
                    )
                else:
                    result.reject(
                        {"id": rec.get("id"), "answer": (res.content or "")[:500]}, reason
                    )
                    bar.refresh(advance=1)
            pending = still
            attempt += 1
            if teacher.stopped:
                for rec, _ in pending:
                    result.reject({"id": rec.get("id")}, "budget")
                break
    result.stopped = teacher.stopped
    result.counts = {
        "inputs": len(records),
        "asked": n_inputs,
        "labelled": len(result.records),
        "label_retries": retries,
        "schema_fallbacks": fallbacks,
    }
    result.extra["labels"] = labels
    result.extra["structured_output"] = "json_schema" if use_schema else "constrained_parsing"
    result.extra["label_counts"] = {
        lab: sum(1 for r in result.records if r["label"] == lab) for lab in labels
    }
    result.extra["prompt_templates"] = [templates.LABEL, templates.LABEL_RETRY]
    return write_output(out_dir, result, teacher)
