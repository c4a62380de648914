"""Warm start for flywheel rounds: continue the previous adapter on what is new.

A flywheel round adds the big tier's answers (teacher rows) to the train split and rebuilds;
trained from scratch, the LoRA tier relearns every row each round (about 4 minutes of a
round's 5 on 2 cores). With ``train: [{..., warm_start: {replay_rows: 300}}]`` the train stage
instead starts from the newest earlier adapter of the same sub-model and trains on the rows
that adapter has not seen plus ``replay_rows`` of those it has (so the new rows do not pull it
away from the rest). It does so only when the earlier run used the same base and LoRA shape
and the train split only grew by teacher rows; otherwise (new human data, rows removed, a
changed recipe) it trains from scratch, and says why in the training summary.

Each label LM artifact records what it was trained on (``warm_start.json``: the recipe and a
key per train-split text), which is how the next round finds the new rows. The artifact id
does not include the earlier adapter, so a warm-started artifact depends on the build history;
the summary names its parent.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from zimo.fileio import read_json_optional
from zimo.train.setup import write_json

STATE_FILE = "warm_start.json"


def text_key(text: str) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:16]


def recipe(tcfg) -> dict[str, Any]:
    """What must match for an adapter to be continued: base, method and LoRA shape."""
    return {"base": tcfg.base, "method": tcfg.method, "lora": tcfg.lora.model_dump(mode="json")}


def record(out_dir: Path, tcfg, train: list[dict]) -> None:
    """Write what this artifact was trained on, for the next round's warm start."""
    write_json(Path(out_dir) / STATE_FILE,
               {"recipe": recipe(tcfg), "seen": sorted({text_key(r.get("text") or "")
                                                        for r in train})})  # fmt: skip


def plan(tcfg, train: list[dict], earlier: list[Path]) -> tuple[Path | None, list[dict], dict]:
    """``(adapter to start from or None, rows to train on, info for the summary)``.

    ``earlier``: artifact folders of this train stage, newest first (the current one excluded).
    """
    from zimo.guard.mix import origin_of
    from zimo.records import SYNTHETIC_ORIGINS

    ws = tcfg.warm_start
    if ws is None:
        return None, train, {}
    if tcfg.method != "lora" or tcfg.task != "label":
        return None, train, {"warm_start": "from scratch: warm start is for LoRA label tasks"}
    parent = next((p for p in earlier if (p / STATE_FILE).is_file()
                   and (p / "adapter").is_dir()), None)  # fmt: skip
    if parent is None:
        return None, train, {"warm_start": "from scratch: no earlier adapter"}
    state = read_json_optional(parent / STATE_FILE)
    if state.get("recipe") != recipe(tcfg):
        return None, train, {"warm_start": f"from scratch: {parent.name} has another recipe"}
    seen = set(state.get("seen") or [])
    keys = [text_key(r.get("text") or "") for r in train]
    if not seen <= set(keys):
        return None, train, {"warm_start": f"from scratch: rows {parent.name} learned are gone"}
    new = [r for r, k in zip(train, keys, strict=True) if k not in seen]
    old = [r for r, k in zip(train, keys, strict=True) if k in seen]
    if not new:
        return None, train, {"warm_start": f"from scratch: no rows new since {parent.name}"}
    if any(origin_of(r) not in SYNTHETIC_ORIGINS for r in new):
        return None, train, {"warm_start": "from scratch: new human rows (not only teacher rows)"}
    rng = np.random.default_rng(tcfg.seed)
    replay = [old[i] for i in sorted(rng.choice(len(old), min(ws.replay_rows, len(old)),
                                                replace=False))]  # fmt: skip
    rows = [*new, *replay]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    return parent / "adapter", rows, {"warm_start": {"parent": parent.name, "new_rows": len(new),
                                                     "replay_rows": len(replay)}}  # fmt: skip


def load_adapter_weights(model, adapter_dir: Path) -> None:
    """Set a PEFT model's LoRA weights from a saved adapter of the same shape."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, state)
    bad = [k for k in [*result.missing_keys, *result.unexpected_keys] if "lora_" in k]
    if bad:  # a LoRA weight left at its fresh init, or one with nowhere to go
        raise RuntimeError(f"the adapter at {adapter_dir} does not fit this model: {bad[:3]}")
