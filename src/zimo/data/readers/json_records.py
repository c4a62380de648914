"""JSONL / JSON / OpenAI chat logs: objects to records.

Recognised shapes: ``{"text": …}`` (or the configured ``text_field``), OpenAI chat
``{"messages": [{"role", "content"}]}`` (content may be a list of parts), gateway logs
``{"request": {"messages"}, "response": {"choices": [{"message"}]}}``, and Alpaca-style
``{"instruction", "input", "output"}`` (turned into a user/assistant exchange).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import bounded_lines, new_record, quarantine
from zimo.records import ORIGINS

TEXT_FALLBACKS = ("text", "content", "body", "document", "article")
MAX_JSON_FILE_CHARS = 64_000_000  # a .json array larger than this should be JSONL


def json_depth_exceeds(obj: Any, limit: int) -> bool:
    """Whether nesting goes deeper than ``limit`` (iterative: deep input cannot overflow us)."""
    stack = [(obj, 1)]
    while stack:
        cur, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(cur, dict):
            stack.extend((v, depth + 1) for v in cur.values() if isinstance(v, dict | list))
        elif isinstance(cur, list):
            stack.extend((v, depth + 1) for v in cur if isinstance(v, dict | list))
    return False


def _content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        parts = [
            p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "\n".join(parts) if parts else None
    return None


def _messages(obj: dict[str, Any]) -> list[dict[str, str]] | None:
    raw = obj.get("messages")
    request = obj.get("request")
    if raw is None and isinstance(request, dict):
        raw = request.get("messages")
    if not isinstance(raw, list):
        return None
    msgs = []
    for m in raw:
        if isinstance(m, dict) and isinstance(m.get("role"), str):
            content = _content(m.get("content"))
            if content is not None:
                msgs.append({"role": m["role"], "content": content})
    response = obj.get("response")
    if isinstance(response, dict):
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            msg = choices[0].get("message")
            if isinstance(msg, dict) and _content(msg.get("content")) is not None:
                msgs.append(
                    {"role": msg.get("role") or "assistant", "content": _content(msg["content"])}
                )
    return msgs or None


def record_from_obj(obj: Any, source: str, offset: int, spec: ReadSpec, fmt: str) -> dict[str, Any]:
    """A record (or a quarantine record with the reason) from one JSON value or table row."""
    if isinstance(obj, str):
        return new_record(obj, source=source, offset=offset, spec=spec, fmt=fmt)
    if not isinstance(obj, dict):
        return quarantine(source, offset, "not_an_object", json.dumps(obj)[:300], format=fmt)
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    origin = obj.get("origin") or meta.get("origin")
    origin = origin if origin in ORIGINS else None
    label = obj.get(spec.label_field) if spec.label_field else obj.get("label")
    text = obj.get(spec.text_field)
    if not isinstance(text, str):
        text = next((obj[k] for k in TEXT_FALLBACKS if isinstance(obj.get(k), str)), None)
    messages = None if isinstance(text, str) else _messages(obj)
    if text is None and messages is None and isinstance(obj.get("instruction"), str):
        prompt = obj["instruction"]
        if isinstance(obj.get("input"), str) and obj["input"].strip():
            prompt += "\n\n" + obj["input"]
        messages = [{"role": "user", "content": prompt}]
        if isinstance(obj.get("output"), str):
            messages.append({"role": "assistant", "content": obj["output"]})
    if text is None and messages is None:
        keys = ", ".join(list(obj)[:8])
        return quarantine(source, offset, "no_text_field", f"keys: {keys}", format=fmt)
    extra = {}
    for key in ("title", "url"):
        if isinstance(obj.get(key), str):
            extra[key] = obj[key]
    return new_record(
        text,
        source=source,
        offset=offset,
        spec=spec,
        fmt=fmt,
        label=label,
        messages=messages,
        origin=origin,
        extra=extra,
    )


def _parse(line: str, source: str, offset: int, spec: ReadSpec, fmt: str) -> Any:
    try:
        obj = json.loads(line)
    except RecursionError:
        return quarantine(source, offset, "json_too_deep", line[:300], format=fmt)
    except json.JSONDecodeError as e:
        return quarantine(source, offset, "invalid_json", f"{e.msg}: {line[:200]}", format=fmt)
    if json_depth_exceeds(obj, spec.max_json_depth):
        return quarantine(source, offset, "json_too_deep", line[:300], format=fmt)
    return obj


def read_jsonl(f: IO[str], source: str, spec: ReadSpec) -> Iterator[dict[str, Any]]:
    for line_no, line in bounded_lines(f, spec.max_record_chars):
        if line is None:
            yield quarantine(source, line_no, "line_too_long", format="jsonl")
            continue
        if not line.strip():
            continue
        obj = _parse(line, source, line_no, spec, "jsonl")
        if isinstance(obj, dict) and "reject_step" in obj:
            yield obj
        else:
            yield record_from_obj(obj, source, line_no, spec, "jsonl")


def read_json(f: IO[str], source: str, spec: ReadSpec) -> Iterator[dict[str, Any]]:
    """A ``.json`` file: an array of objects, or one object (a chat, or ``{"data": [...]}``)."""
    text = f.read(MAX_JSON_FILE_CHARS + 1)
    if len(text) > MAX_JSON_FILE_CHARS:
        yield quarantine(
            source, 0, "json_too_large", "convert it to JSONL (one object per line)", format="json"
        )
        return
    obj = _parse(text, source, 0, spec, "json")
    if isinstance(obj, dict) and "reject_step" in obj:
        yield obj
        return
    if isinstance(obj, dict):
        inner = next(
            (obj[k] for k in ("data", "records", "items") if isinstance(obj.get(k), list)), None
        )
        obj = inner if inner is not None else [obj]
    if not isinstance(obj, list):
        yield quarantine(source, 0, "not_an_object", text[:300], format="json")
        return
    for i, item in enumerate(obj):
        yield record_from_obj(item, source, i, spec, "json")
