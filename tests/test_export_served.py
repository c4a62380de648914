"""An exported GGUF, served by the llama.cpp engine, labels texts like the served sub-model.

Real weights end to end: the embedded gecko base with a LoRA adapter laid out as a train
artifact (``zimo_model.json`` + ``label_task.json`` with a decision threshold), exported to
GGUF (f16 by default; q8_0 in the slow run), then labelled through both serving engines' own
job queues. Skips when llama-cpp-python (the optional ``zimo[llamacpp]`` extra) is absent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import make_lora_adapter

pytest.importorskip("llama_cpp", reason="optional extra zimo[llamacpp] not installed")

ROOT = Path(__file__).resolve().parents[1]
SMS = ROOT / "examples" / "sms-fraud" / "data" / "sms_spam_collection.tsv"
LABELS = ["ham", "spam"]
INSTRUCTION = "Is this SMS message spam or ham (legitimate)? Answer with one word."


def _sms_texts(n_per_label: int = 10) -> list[str]:
    """Real SMS texts, both classes (the demo's data file)."""
    picked: dict[str, list[str]] = {lab: [] for lab in LABELS}
    with SMS.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            bucket = picked.get(row["Label"])
            if bucket is not None and len(bucket) < n_per_label:
                bucket.append(row["SMS"])
    return [t for pair in zip(*picked.values(), strict=True) for t in pair]


def _threshold_in_widest_gap(p: np.ndarray) -> float:
    """A threshold between the served P(spam) values, in the widest gap of the middle half,
    so both labels occur and f16 rounding (~0.0003) cannot move a text across it."""
    s = np.sort(p)
    lo, hi = len(s) // 4, 3 * len(s) // 4
    gaps = s[lo + 1 : hi + 1] - s[lo:hi]
    i = lo + int(np.argmax(gaps))
    return float((s[i] + s[i + 1]) / 2)


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> Path:
    """A label sub-model laid out as ``zimo train`` writes it (without the threshold yet)."""
    folder = tmp_path_factory.mktemp("train")
    make_lora_adapter(folder / "adapter", std=0.02)
    meta = {"name": "sms-served", "task": "label", "labels": LABELS, "base": "gecko",
            "instruction": INSTRUCTION, "adapter": "adapter", "method": "lora"}  # fmt: skip
    (folder / "zimo_model.json").write_text(json.dumps(meta))
    task = {"labels": LABELS, "instruction": INSTRUCTION, "max_text_tokens": 76,
            "system": "You are a precise classifier. Reply with the label only."}  # fmt: skip
    (folder / "label_task.json").write_text(json.dumps(task))
    return folder


# Largest |P(spam) difference| allowed between the engines: f16 only rounds the weights
# (measured 0.0003 on this adapter); q8_0 quantises them (0.019 on this deliberately noisy
# random adapter; 0.058 max, 0.0008 mean on the SMS demo adapter's 769 test rows).
P_TOLERANCE = {"f16": 0.005, "q8_0": 0.05}


@pytest.mark.parametrize(
    "quant", ["f16", pytest.param("q8_0", marks=pytest.mark.slow)], ids=["f16", "q8_0"]
)
def test_gguf_on_llamacpp_labels_like_served_submodel(train_dir, tmp_path, quant):
    from zimo.export.gguf_writer import write_gguf
    from zimo.export.merge import merge_adapter
    from zimo.export.served_check import label_with_engine, served_label_agreement
    from zimo.serve.registry import load_submodel

    texts = _sms_texts()
    tol = P_TOLERANCE[quant]
    # 1. The served engine's P(spam) without a threshold; store a threshold that decides.
    task_file = train_dir / "label_task.json"
    task = json.loads(task_file.read_text())
    task.pop("decision_threshold", None)
    task_file.write_text(json.dumps(task))
    first = label_with_engine("transformers", load_submodel(train_dir), texts, base="gecko")
    p_spam = np.array([p["spam"] for p in first["probs"]])
    thr = _threshold_in_widest_gap(p_spam)
    task.update(positive_label="spam", decision_threshold=thr)
    task_file.write_text(json.dumps(task))
    # the threshold must change answers, else ignoring it would go unnoticed
    argmax = np.where(p_spam >= 0.5, "spam", "ham")
    thresholded = np.where(p_spam >= thr, "spam", "ham")
    assert (argmax != thresholded).any(), (thr, sorted(p_spam))

    # 2. Export (merge check on one short prompt: the export tests cover the rest).
    merged = merge_adapter(train_dir / "adapter", prompts=["Hi"], new_tokens=2)
    assert merged.report["passed"], merged.report
    gguf = tmp_path / f"m-{quant}.gguf"
    write_gguf(merged.model, merged.tokenizer, gguf, quant, progress=False)
    del merged

    # 3. Both engines, through their job queues, with the stored threshold.
    r = served_label_agreement(train_dir, gguf, texts, keep_predictions=True)
    served = r["predictions"]["served"]["labels"]
    gguf_labels = r["predictions"]["gguf"]["labels"]
    assert served == list(thresholded)  # the default engine applies the stored threshold
    assert r["decision_threshold"] == pytest.approx(thr)
    # llama.cpp scores the same answer token as the default engine, so P(spam) differs only
    # by the weights' rounding; every text farther than that from the threshold must agree.
    assert r["max_abs_p_spam_diff"] < tol, r["max_abs_p_spam_diff"]
    clear = np.abs(p_spam - thr) > tol
    assert [g for g, c in zip(gguf_labels, clear, strict=True) if c] == [
        s for s, c in zip(served, clear, strict=True) if c
    ]
    if quant == "f16":
        assert clear.sum() >= len(texts) // 2
        assert r["agreement"] == 1.0, r["disagreements"]
        assert min(r["label_counts"]["gguf"].values()) >= 1
