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


def section_error(section: str, e, model) -> ConfigError:
    """One-line error for a ``zimo.yaml`` section validated by its own pydantic model: names
    the key, suggests the closest allowed key for a typo."""
    import difflib

    err = e.errors(include_url=False)[0]
    key = ".".join([section, *(str(x) for x in err["loc"])])
    if err["type"] == "extra_forbidden":
        guess = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=1)
        if guess:
            return ConfigError(f"unknown key '{key}' in zimo.yaml; did you mean '{guess[0]}'?")
        return ConfigError(
            f"unknown key '{key}' in zimo.yaml",
            f"allowed keys in {section}: {', '.join(model.model_fields)}",
        )
    return ConfigError(f"'{key}' in zimo.yaml: {err['msg'].lower()}", "fix the value")
