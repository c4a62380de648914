"""PII redaction for everything that leaves the machine or is logged: teacher calls (synth),
the gateway's upstream calls and request log (serve), the cascade's big tier.

Uses curation's PII step (``zimo.data.formatters.pii.RedactPii``) so every area redacts the
same things the same way. If that step fails to build, a minimal fallback covers what must
never leave the machine: Chinese mobile numbers, Chinese resident
ID numbers, e-mail addresses and bank card numbers (Luhn-checked), with the same
``<TYPE>`` placeholder style.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Fallback patterns. Digits must not touch other digits, so parts of longer numbers do not match.
_CN_ID = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[0-9Xx](?![0-9A-Za-z])"
)
_CN_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_sub(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group())
    return "<BANK_CARD>" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else m.group()


def fallback_redact(text: str) -> str:
    """Minimal regex redaction (used only when curation's PII step is not available)."""
    # Order matters: an 18-digit ID would otherwise be taken for a card number, and
    # "+86 138-1234-5678" for a (Luhn-valid by chance) card.
    text = _CN_ID.sub("<ID_NUMBER>", text)
    text = _EMAIL.sub("<EMAIL>", text)
    text = _CN_MOBILE.sub("<PHONE>", text)
    text = _CARD.sub(_card_sub, text)
    return text


def _curation_redactor() -> Callable[[str], str] | None:
    # Any failure (missing module, a half-written or changed step) falls back to the minimal
    # patterns rather than stopping the run; the summary names the backend that was used.
    try:
        from zimo.data.formatters.pii import RedactPii

        step = RedactPii()
    except Exception:
        return None
    fmt = getattr(step, "format", None)
    return fmt if callable(fmt) else None


class Redactor:
    """Callable ``text -> redacted text`` that counts how many texts it changed."""

    def __init__(self) -> None:
        curation = _curation_redactor()
        self.backend = (
            "zimo.data.formatters.pii" if curation else "zimo.data.formatters.redact fallback"
        )
        self._curation = curation
        self.changed = 0

    def __call__(self, text: str) -> str:
        if not text:
            return text
        # Belt and braces: the minimal patterns run first, without checksums (an ID with a
        # typo in its check digit is still an ID), then curation's full step. So a regression
        # in either never lets a Chinese ID or mobile number reach a remote teacher.
        out = fallback_redact(text)
        if self._curation:
            out = self._curation(out)
        if out != text:
            self.changed += 1
        return out

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Redact the text content of chat messages (strings and text parts)."""
        out = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str):
                m = {**m, "content": self(content)}
            elif isinstance(content, list):
                parts = [
                    {**p, "text": self(p["text"])}
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                    else p
                    for p in content
                ]
                m = {**m, "content": parts}
            out.append(m)
        return out
