"""Teacher synthesis (self-instruct, answers, labels) and distillation of gateway logs.

Public API::

    from zimo.synth import TeacherConfig, SynthConfig, Teacher, run_synth
    run_synth(SynthConfig(mode="answer"), TeacherConfig(...), out_dir=..., inputs=records)

Modes as functions: :func:`zimo.synth.self_instruct.self_instruct`,
:func:`zimo.synth.answer.answer`, :func:`zimo.synth.label.label`,
:func:`zimo.synth.distill.distill`.
"""

from zimo.synth.config import SynthConfig, TeacherConfig
from zimo.synth.run import run_synth
from zimo.synth.teacher import ChatRequest, Teacher, TeacherFatal, TeacherResult

__all__ = [
    "ChatRequest",
    "SynthConfig",
    "Teacher",
    "TeacherConfig",
    "TeacherFatal",
    "TeacherResult",
    "run_synth",
]
