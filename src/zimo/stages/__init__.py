"""Stage functions of the build DAG: each takes a :class:`zimo.build.StageContext` and writes
its outputs into ``ctx.work`` (which becomes the artifact folder when the stage succeeds)."""
