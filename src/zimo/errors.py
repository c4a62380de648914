"""User-facing errors: one line saying what is wrong and how to fix it.

The CLI catches :class:`ZimoError`, prints ``error: <message>`` (plus ``hint``) on one line and
exits with ``exit_code``; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations


class ZimoError(Exception):
    """An error the user can fix. ``exit_code`` 1 = runtime problem, 2 = bad config/usage."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())


class ConfigError(ZimoError):
    """Bad project config or command-line usage (exit code 2)."""

    exit_code = 2


class DataError(ZimoError):
    """Input data that cannot be used at all (single bad records are quarantined instead)."""

    exit_code = 1
