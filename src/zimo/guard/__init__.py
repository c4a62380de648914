"""The pollution guard: AI-written-text detection, provenance caps on training mixes.

- :class:`GuardConfig` is the ``guard:`` section of ``zimo.yaml``.
- :class:`Detector` scores texts (higher = more likely machine-written) with an embedded LM.
- :func:`build_mix` builds a training mix under ``max_synthetic_share`` and reports what it left
  out; :func:`check_mix` refuses a mix over the cap unless overridden.
- :func:`score_file` scores a JSONL/Parquet file and writes rows + HTML/JSON report.
"""

__all__ = ["GuardConfig", "Detector", "build_mix", "check_mix", "score_file", "score_records"]


def __getattr__(name: str):
    # Lazy: importing one module of the package must not import torch or pydantic.
    if name == "GuardConfig":
        from zimo.guard.config import GuardConfig

        return GuardConfig
    if name == "Detector":
        from zimo.guard.detect import Detector

        return Detector
    if name in ("build_mix", "check_mix"):
        from zimo.guard import mix

        return getattr(mix, name)
    if name in ("score_file", "score_records"):
        from zimo.guard import score_file

        return getattr(score_file, name)
    raise AttributeError(name)
