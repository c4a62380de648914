"""Helpers for the serving tests and the load benchmark: LoRA test adapters and a live server.

Adapters are made with ``peft.get_peft_model`` + ``save_pretrained`` on gecko with random
(non-zero) LoRA B matrices, so each adapter really changes the model's outputs, beside a
``zimo_model.json`` in the layout the train stage writes (``zimo.stages.train``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AdapterSpec:
    name: str
    seed: int
    task: str = "chat"
    labels: list[str] | None = None
    instruction: str | None = None
    rank: int = 4
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


def make_adapters(root: Path, specs: list[AdapterSpec], base: str = "gecko") -> dict[str, Path]:
    """Write ``root/<name>/adapter`` + ``zimo_model.json`` for each spec (base loaded once)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from zimo.models import load_causal_lm

    root = Path(root)
    out = {s.name: root / s.name for s in specs}
    todo = [s for s in specs if not (out[s.name] / "adapter" / "adapter_config.json").is_file()]
    if not todo:
        return out
    model, _ = load_causal_lm(base)
    for spec in todo:
        torch.manual_seed(spec.seed)
        cfg = LoraConfig(
            r=spec.rank,
            lora_alpha=spec.rank * 2,
            target_modules=spec.targets,
            init_lora_weights=False,  # random A and B: the adapter changes outputs
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, cfg)
        peft_model.save_pretrained(str(out[spec.name] / "adapter"))
        meta = {
            "name": spec.name,
            "task": spec.task,
            "base": base,
            "method": "lora",
            "labels": spec.labels,
            "positive_label": None,
            "instruction": spec.instruction,
            "adapter": "adapter",
        }
        (out[spec.name] / "zimo_model.json").write_text(json.dumps(meta, indent=1), "utf-8")
        model = peft_model.unload()  # back to the plain base for the next adapter
    return out


def submodel_entry(folder: Path) -> dict[str, Any]:
    """A ``ServeConfig.models`` entry for a folder made by :func:`make_adapters`."""
    meta = json.loads((folder / "zimo_model.json").read_text("utf-8"))
    return {"name": meta["name"], "adapter_dir": str(folder / "adapter"), "metadata": meta}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server for an app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=5,
            )  # fmt: skip
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 300
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server failed to start")
            if time.time() > deadline:
                raise TimeoutError("the server did not start in 300 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
