"""Ctrl-C that a library cannot swallow.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be. When that
is inside third-party code with a blanket ``except BaseException`` (seen while a stage imported
and loaded its model: the build then ran on and committed the stage), the interrupt is lost.
Zimo's handler also records it, and the build checks the record before it commits a stage,
every model load checks it when the load returns and the training loop checks it every step,
so an interrupt always ends the run with nothing half-written kept.
"""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def _handler(signum, frame) -> None:  # noqa: ARG001 (signal handler signature)
    _requested.set()
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT through Zimo's handler (main thread only; elsewhere Python forbids it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


def requested() -> bool:
    """Whether Ctrl-C was pressed since the last :func:`clear`."""
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed, even if the first one was swallowed."""
    if _requested.is_set():
        raise KeyboardInterrupt


def clear() -> None:
    _requested.clear()
