"""Teacher synthesis (self-instruct, answers, labels) and distillation of gateway logs.

Public API::

    from zimo.synth import TeacherConfig, SynthConfig, Teacher, run_synth
    run_synth(SynthConfig(mode="answer"), TeacherConfig(...), out_dir=..., inputs=records)

Modes as functions: :func:`zimo.synth.self_instruct.self_instruct`,
:func:`zimo.synth.answer.answer`, :func:`zimo.synth.label.label`,
:func:`zimo.synth.distill.distill`.
"""

from typing import Any

from zimo.synth.config import SynthConfig, TeacherConfig

_LAZY = {
    "run_synth": "zimo.synth.run",
    "ChatRequest": "zimo.synth.teacher",
    "Teacher": "zimo.synth.teacher",
    "TeacherFatal": "zimo.synth.teacher",
    "TeacherResult": "zimo.synth.teacher",
}


def __getattr__(name: str) -> Any:
    # Lazy, so reading zimo.yaml (which imports the config models) never imports openai.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "ChatRequest",
    "SynthConfig",
    "Teacher",
    "TeacherConfig",
    "TeacherFatal",
    "TeacherResult",
    "run_synth",
]
