"""Pick the serving engine a ``serve.backend.kind`` names.

Apart from :mod:`zimo.serve.backends.base` so the engines import the protocol and this module
imports the engines, never both ways; optional engines are imported only when chosen.
"""

from __future__ import annotations

from zimo.serve.backends.base import Backend, BackendConfig


def make_backend(config: BackendConfig) -> Backend:
    """The engine named by ``config.kind`` (optional engines fail with an install hint)."""
    if config.kind == "transformers":
        from zimo.serve.backends.transformers_peft import PeftBackend

        return PeftBackend(config)
    if config.kind == "llamacpp":
        from zimo.serve.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(config)
    if config.kind == "vllm":
        from zimo.serve.backends.vllm import VllmBackend

        return VllmBackend(config)
    raise ValueError(f"unknown backend kind {config.kind!r}")
