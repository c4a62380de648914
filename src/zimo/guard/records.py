"""What the guard reads from a record: the text to score and the group it is reported under.

Shared by :mod:`zimo.guard.score_file` (scoring) and :mod:`zimo.guard.report` (the HTML
report), so that neither has to import the other.
"""

from __future__ import annotations

import json


def record_text(r: dict, text_field: str = "text") -> str:
    """The text to score: ``text_field``, else the assistant turns of ``messages`` (the part a
    model may have written), else the empty string."""
    t = r.get(text_field)
    if isinstance(t, str) and t.strip():
        return t
    msgs = r.get("messages")
    if isinstance(msgs, str):
        try:
            msgs = json.loads(msgs)
        except json.JSONDecodeError:
            msgs = None
    if isinstance(msgs, list):
        turns = [m.get("content") or "" for m in msgs if isinstance(m, dict)]
        asst = [
            m.get("content") or ""
            for m in msgs
            if isinstance(m, dict) and m.get("role") == "assistant"
        ]
        return "\n".join(asst or turns)
    return ""


def origin_label(r: dict) -> str:
    """Group for the report: ``meta.origin``, else ``label`` (e.g. 0/1 in HC3), else unknown."""
    meta = r.get("meta")
    if isinstance(meta, str) and meta[:1] == "{":
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    if isinstance(meta, dict) and meta.get("origin"):
        return str(meta["origin"])
    if "label" in r and r["label"] is not None:
        return f"label={r['label']}"
    return "unknown"
