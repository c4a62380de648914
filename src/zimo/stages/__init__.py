"""The build's stages: :mod:`~zimo.stages.base` is the protocol (each stage takes a
:class:`~zimo.stages.base.StageContext` and writes its outputs into ``ctx.work``, which becomes
the artifact folder when the stage succeeds), :mod:`~zimo.stages.dag` the DAG per task, and one
module per stage."""
