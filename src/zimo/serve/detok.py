"""Incremental detokenisation with stop strings, for streaming.

A token can end in the middle of a UTF-8 character (Chinese text often does with byte-level
BPE) and the end of the text so far can be the start of a stop string; neither may reach the
client early. :class:`TextStream` decodes the whole token list each step (cheap for answers of a
few hundred tokens, and exact, unlike decoding tokens one by one) and releases only the text
that can no longer change.
"""

from __future__ import annotations

from collections.abc import Callable


class TextStream:
    """Track one answer's text; :meth:`push` returns the newly releasable text."""

    def __init__(self, decode: Callable[[list[int]], str], stop: list[str] | None = None):
        self.decode = decode
        self.stop = [s for s in (stop or []) if s]
        self.ids: list[int] = []
        self.text = ""  # full decoded text (may end mid-character)
        self.sent = 0  # characters already released
        self.stopped = False

    def _holdback(self, text: str) -> int:
        """How many trailing characters might still become a stop string or a character."""
        hold = 0
        if text.endswith("\ufffd"):
            hold = len(text) - len(text.rstrip("\ufffd"))
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return hold

    def push(self, token_id: int) -> str:
        """Add a token; return text safe to send now ('' if none). Sets ``stopped``."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        self.text = self.decode(self.ids)
        if self.stop:
            # A stop string can straddle the boundary of what was already released.
            start = max(0, self.sent - max(len(s) for s in self.stop))
            hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
            if hits:
                cut = min(hits)
                self.text = self.text[:cut]
                self.stopped = True
                out = self.text[self.sent :]
                self.sent = len(self.text)
                return out
        safe = len(self.text) - self._holdback(self.text)
        if safe <= self.sent:
            return ""
        out = self.text[self.sent : safe]
        self.sent = safe
        return out

    def flush(self) -> str:
        """At the end: release what was held back (minus a dangling replacement character)."""
        text = self.text.rstrip("\ufffd") if not self.stopped else self.text
        out = text[self.sent :]
        self.sent = len(text)
        self.text = text
        return out
