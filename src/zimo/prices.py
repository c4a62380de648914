"""Token prices are per 1M tokens everywhere, as providers quote them.

``zimo.yaml`` files written before that used per-1k keys (``price_in_per_1k``,
``price_per_1k_tokens``); they are still read, converted, and mean exactly what they meant.
"""

from __future__ import annotations

from typing import Any

PER_1M = 1_000_000


def read_per_1k_keys(data: Any, keys: dict[str, str]) -> Any:
    """``data`` with each old per-1k key converted to its per-1M key (×1000).

    Both forms of one price is a mistake to report (which one was meant?), not to guess.
    """
    if not isinstance(data, dict) or not any(k in data for k in keys):
        return data
    out = dict(data)
    for old, new in keys.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"give {new} or {old} (per 1k tokens), not both")
        value = out.pop(old)
        out[new] = value * 1000 if isinstance(value, int | float) else value
    return out


def token_cost(tokens: float, per_1m: float | None) -> float:
    return (per_1m or 0.0) * tokens / PER_1M
