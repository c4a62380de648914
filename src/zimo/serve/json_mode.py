"""``response_format: {"type": "json_object"}``: decode only tokens that keep valid JSON.

A character-level pushdown automaton checks that the text so far is a prefix of one JSON
object; at each step the engine tries the model's candidates best-first and keeps the first
whose text the automaton accepts, and stops when the object closes. Hand-written (≈150 lines)
instead of adding a grammar engine (outlines, xgrammar, lm-format-enforcer): JSON is the only
grammar needed here and those pull large dependencies or compiled extensions.
"""

from __future__ import annotations

import re

_WS = " \t\n\r"
_NUM_PREFIX = re.compile(r"-?(0|[1-9][0-9]*)?(\.[0-9]*)?([eE][+-]?[0-9]*)?")
_NUM_FULL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
MAX_WS_RUN = 8  # a small model can loop on newlines inside JSON; forbid long blank runs


class JsonPrefix:
    """State of a JSON-object prefix. ``feed(text)`` -> False when ``text`` cannot continue it."""

    __slots__ = ("stack", "mode", "key", "buf", "ws_run", "started")

    def __init__(self) -> None:
        self.stack: list[str] = []  # '{' or '['
        self.mode = "start"
        self.key = False  # the current string is an object key
        self.buf = ""  # number digits, literal remainder, or \u hex digits left
        self.ws_run = 0
        self.started = False

    def clone(self) -> JsonPrefix:
        c = JsonPrefix.__new__(JsonPrefix)
        c.stack, c.mode, c.key, c.buf = list(self.stack), self.mode, self.key, self.buf
        c.ws_run, c.started = self.ws_run, self.started
        return c

    @property
    def done(self) -> bool:
        return self.mode == "done"

    def feed(self, text: str) -> bool:
        for ch in text:
            if not self._char(ch):
                return False
        return True

    def _after_value(self) -> None:
        self.mode = "after" if self.stack else "done"

    def _value(self, ch: str) -> bool:
        if ch == "{":
            self.stack.append("{")
            self.mode = "key_or_end"
        elif ch == "[":
            self.stack.append("[")
            self.mode = "value_or_end"
        elif ch == '"':
            self.mode, self.key = "string", False
        elif ch == "-" or ch.isdigit():
            self.mode, self.buf = "number", ch
        elif ch in "tfn":
            self.mode = "literal"
            self.buf = {"t": "rue", "f": "alse", "n": "ull"}[ch]
        else:
            return False
        return True

    def _char(self, ch: str) -> bool:  # noqa: C901 - one branch per automaton state
        mode = self.mode
        if mode in ("string", "escape", "unicode"):
            return self._string_char(ch)
        if mode == "number":
            if _NUM_PREFIX.fullmatch(self.buf + ch) and (ch.isdigit() or ch in ".eE+-"):
                self.buf += ch
                return True
            if not _NUM_FULL.fullmatch(self.buf):
                return False
            self._after_value()
            return self._char(ch)
        if mode == "literal":
            if not self.buf or ch != self.buf[0]:
                return False
            self.buf = self.buf[1:]
            if not self.buf:
                self._after_value()
            return True
        if ch in _WS:
            if mode == "done" or self.ws_run >= MAX_WS_RUN:
                return False
            self.ws_run += 1
            return True
        self.ws_run = 0
        if mode == "start":
            if ch != "{":  # json_object: the top level must be an object
                return False
            self.started = True
            return self._value(ch)
        if mode == "value":
            return self._value(ch)
        if mode == "value_or_end":
            if ch == "]":
                self.stack.pop()
                self._after_value()
                return True
            return self._value(ch)
        if mode in ("key_or_end", "key"):
            if ch == "}" and mode == "key_or_end":
                self.stack.pop()
                self._after_value()
                return True
            if ch == '"':
                self.mode, self.key = "string", True
                return True
            return False
        if mode == "colon":
            if ch == ":":
                self.mode = "value"
                return True
            return False
        if mode == "after":
            top = self.stack[-1]
            if ch == ",":
                self.mode = "key" if top == "{" else "value"
                return True
            if (ch == "}" and top == "{") or (ch == "]" and top == "["):
                self.stack.pop()
                self._after_value()
                return True
            return False
        return False  # done: nothing may follow the closed object

    def _string_char(self, ch: str) -> bool:
        if self.mode == "escape":
            if ch in '"\\/bfnrt':
                self.mode = "string"
                return True
            if ch == "u":
                self.mode, self.buf = "unicode", ""
                return True
            return False
        if self.mode == "unicode":
            if ch not in "0123456789abcdefABCDEF":
                return False
            self.buf += ch
            if len(self.buf) == 4:
                self.mode = "string"
            return True
        if ch == "\\":
            self.mode = "escape"
        elif ch == '"':
            if self.key:
                self.mode = "colon"
            else:
                self._after_value()
        elif ord(ch) < 0x20:
            return False
        return True
