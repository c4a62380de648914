"""Teacher answers for unlabeled prompts (records with ``text`` or a chat ``messages`` list)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zimo.records import make_record
from zimo.synth import templates
from zimo.synth.config import AnswerOptions
from zimo.synth.output import SynthResult, write_output
from zimo.synth.teacher import ChatRequest, Teacher


def prompt_messages(rec: dict[str, Any], text_field: str = "text") -> list[dict[str, Any]] | None:
    """The conversation to answer: ``messages`` up to the last user turn, else the text."""
    msgs = rec.get("messages")
    if msgs:
        msgs = list(msgs)
        while msgs and msgs[-1].get("role") == "assistant":
            msgs.pop()  # answer the prompt, not the old reply
        if msgs and any(m.get("role") == "user" and m.get("content") for m in msgs):
            return [{"role": m["role"], "content": m.get("content") or ""} for m in msgs]
        return None
    text = rec.get(text_field)
    if isinstance(text, str) and text.strip():
        return [{"role": "user", "content": text.strip()}]
    return None


def answer(
    records: list[dict[str, Any]],
    out_dir: str | Path,
    teacher: Teacher,
    opts: AnswerOptions | None = None,
) -> dict[str, Any]:
    """Ask the teacher to answer every prompt; write chat records + summary to ``out_dir``.

    Prompts are deduplicated first. The user turns stored in the output are the ones the
    teacher saw (PII-redacted when the teacher is remote), so answers match their prompts.
    """
    opts = opts or AnswerOptions()
    result = SynthResult("answer")
    model = teacher.config.model
    todo: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    seen: set[str] = set()
    for rec in records:
        msgs = prompt_messages(rec, opts.text_field)
        if msgs is None:
            result.reject({"id": rec.get("id")}, "empty_prompt")
            continue
        key = json.dumps(msgs, ensure_ascii=False, sort_keys=True)
        if key in seen:
            result.reject({"id": rec.get("id")}, "duplicate_prompt")
            continue
        seen.add(key)
        todo.append((rec, msgs))
    requests = []
    for _, msgs in todo:
        if opts.system_prompt and msgs[0].get("role") != "system":
            msgs = [{"role": "system", "content": opts.system_prompt}, *msgs]
        requests.append(ChatRequest(msgs, template=templates.ANSWER))
    with teacher.progress(len(requests), "answer"):
        results = teacher.run(requests)
    for (rec, _), res in zip(todo, results, strict=True):
        src = {"id": rec.get("id")}
        if not res.ok:
            result.reject(src, "budget" if res.error == "budget" else "teacher_error")
            continue
        content = (res.content or "").strip()
        if not content:
            result.reject(src, "empty_answer")
            continue
        if res.finish_reason == "length" and not opts.keep_truncated:
            result.reject({**src, "answer": content[:2000]}, "truncated")
            continue
        sent = [m for m in res.sent_messages if m.get("role") != "system" or not opts.system_prompt]
        messages = [*sent, {"role": "assistant", "content": content}]
        meta = rec.get("meta") or {}
        result.records.append(
            make_record(
                None,
                source=str(meta.get("source") or "answer"),
                offset=meta.get("offset") if isinstance(meta.get("offset"), int) else None,
                messages=messages,
                origin="teacher",
                generator=model,
                license=meta.get("license"),
                extra_meta={
                    "prompt_template": templates.ANSWER,
                    "request_key": res.key[:16],
                    "prompt_id": rec.get("id"),
                    "prompt_origin": meta.get("origin"),
                },
            )
        )
    result.stopped = teacher.stopped
    result.counts = {"inputs": len(records), "requests": len(requests)}
    result.extra["prompt_templates"] = [templates.ANSWER]
    return write_output(out_dir, result, teacher)
