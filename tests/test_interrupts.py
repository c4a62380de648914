"""Ctrl-C is never lost, even when a library swallows the KeyboardInterrupt."""

from __future__ import annotations

import os
import signal

import pytest

from zimo import interrupts


def _ctrl_c_swallowed() -> None:
    """Press Ctrl-C and swallow the KeyboardInterrupt, as a library with a blanket except does."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # the handler runs at the next bytecode boundary
            pass
    except BaseException:  # noqa: BLE001, S110
        pass


@pytest.fixture
def handler():
    old = signal.getsignal(signal.SIGINT)
    interrupts.install()
    yield
    signal.signal(signal.SIGINT, old)
    interrupts.clear()


def test_a_swallowed_ctrl_c_is_still_seen(handler):
    assert not interrupts.requested()
    interrupts.check()  # nothing pressed: no-op
    _ctrl_c_swallowed()
    assert interrupts.requested()
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()


def test_a_swallowed_ctrl_c_stops_the_build_before_it_commits(handler, tiny_project, monkeypatch):
    from rich.console import Console

    from zimo.build import build
    from zimo.stages import split as split_stage
    from zimo.workspace import Workspace

    # Fault injection: Ctrl-C is pressed while the split stage runs, something in it catches
    # the KeyboardInterrupt, and the stage returns normally. The build must not commit it.
    real = split_stage.run

    def swallowing(ctx):
        _ctrl_c_swallowed()
        return real(ctx)

    monkeypatch.setattr(split_stage, "run", swallowing)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_project, target="split", console=Console(quiet=True))
    ws = Workspace(tiny_project)
    assert ws.artifacts("split") == []
    assert ws.artifacts("ingest")  # stages before it were committed


def test_a_ctrl_c_swallowed_during_a_model_load_stops_right_after_it(handler, monkeypatch):
    from transformers import AutoModelForCausalLM

    from zimo.models import load_causal_lm

    # Fault injection: Ctrl-C arrives while the weights load and the loader swallows it.
    real = AutoModelForCausalLM.from_pretrained

    def swallowing(*args, **kwargs):
        _ctrl_c_swallowed()
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", swallowing)
    with pytest.raises(KeyboardInterrupt):
        load_causal_lm("gecko")
