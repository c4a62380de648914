"""Per-key rate limits: a token bucket per key id (requests per minute, bursts up to the rate).

In memory, per server process: a limit protects this machine's compute, so it needs no shared
store. Hand-written because it is a dozen lines; libraries (slowapi, limits) add storage
backends and decorators we do not need.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """``check(key, rate_per_minute)`` -> seconds to wait (0.0 = allowed, token taken)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def check(self, key: str, rate_per_minute: int | None) -> float:
        if not rate_per_minute:
            return 0.0
        cap = float(rate_per_minute)
        refill = cap / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (cap, now))
            tokens = min(cap, tokens + (now - last) * refill)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / refill

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
