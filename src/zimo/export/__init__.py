"""Export a trained sub-model: merged safetensors, GGUF (f16 / q8_0 / q4_k_m) or an Ollama folder.

Library entry points (imported lazily so ``zimo --help`` stays fast)::

    from zimo.export import export_model, export_project, ExportConfig
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportConfig", "export_model", "export_project", "write_gguf"]


def __getattr__(name: str) -> Any:
    if name in ("ExportConfig", "export_model"):
        from zimo.export import api

        return getattr(api, name)
    if name == "export_project":
        from zimo.export.project import export_project

        return export_project
    if name == "write_gguf":
        from zimo.export.gguf_writer import write_gguf

        return write_gguf
    raise AttributeError(name)
