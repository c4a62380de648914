"""Test helpers: tiny projects on real data, and running the real `zimo` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SMS = ROOT / "examples" / "sms-fraud" / "data" / "sms_spam_collection.tsv"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_zimo(
    *args: str, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run the installed `zimo` entry point as a user would."""
    exe = Path(sys.executable).parent / "zimo"
    return subprocess.run(
        [str(exe), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sms_subset(n_ham: int, n_spam: int) -> str:
    """The first rows of each class of the real SMS data, as TSV text with its header."""
    lines = SMS.read_text(encoding="utf-8").splitlines()
    ham = [x for x in lines[1:] if x.startswith("ham\t")][:n_ham]
    spam = [x for x in lines[1:] if x.startswith("spam\t")][:n_spam]
    return "\n".join([lines[0], *ham, *spam]) + "\n"


SMALL_YAML = """\
name: tiny-sms
task: label
labels: [ham, spam]
positive_label: spam
instruction: Is this SMS message spam or ham (legitimate)? Answer with one word.
data:
  path: data/sms.tsv
  text_field: SMS
  label_field: Label
curate:
  steps: [fix_unicode, normalize, {step: length, min_chars: 2, max_chars: 1000}, exact_dedup]
split: {dev: 0.1, test: 0.2, seed: 7}
train:
  base: gecko
  method: lora
  task: label
  max_steps: 3
  batch_size: 4
eval:
  systems: [finetuned, base_zero_shot, tfidf_logreg]
  latency_samples: 2
"""


def make_tiny_project(
    root: Path, n_ham: int = 60, n_spam: int = 30, yaml_text: str = SMALL_YAML
) -> Path:
    """A small labelled project on real SMS rows."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "sms.tsv").write_text(sms_subset(n_ham, n_spam), encoding="utf-8")
    (root / "zimo.yaml").write_text(yaml_text, encoding="utf-8")
    return root
