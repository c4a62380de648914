"""`zimo init` templates: a commented zimo.yaml to start a project from."""

from __future__ import annotations

from pathlib import Path

from zimo.errors import ConfigError

CLASSIFY = """\
# Zimo project: a label (classification) sub-model.
name: {name}
task: label
labels: [ham, spam]          # the label set; rows with other labels are quarantined
positive_label: spam         # its F1 is the headline number
instruction: Is this SMS message spam or ham (legitimate)? Answer with one word.
data:
  path: data/data.tsv        # tsv, csv, jsonl, json or parquet
  text_field: SMS
  label_field: Label
  origin: human
curate:
  steps: [fix_unicode, normalize, {{step: length, min_chars: 2, max_chars: 2000}}, exact_dedup]
split: {{dev: 0.05, test: 0.1, seed: 13}}
train:
  base: gecko                # embedded SmolLM2-135M-Instruct; `zimo models` lists others
  method: lora
eval:
  systems: [finetuned, base_zero_shot, tfidf_logreg]
"""

INSTRUCT = """\
# Zimo project: an instruction-following (chat) sub-model.
name: {name}
task: chat
data:
  path: data/instructions.json   # alpaca style: instruction / input / output
  instruction_field: instruction
  input_field: input
  output_field: output
  origin: teacher                # written by a big model: counts as synthetic data
curate:
  steps: [fix_unicode, normalize, exact_dedup]
split: {{dev: 0.05, test: 0.1, seed: 13}}
train:
  base: gecko-zh
  method: lora
  task: chat
"""

TEMPLATES = {"classify": CLASSIFY, "instruct": INSTRUCT}


def write_template(directory: Path, template: str) -> Path:
    if template not in TEMPLATES:
        raise ConfigError(
            f"unknown template {template!r}", f"choose one of: {', '.join(TEMPLATES)}"
        )
    directory = Path(directory)
    path = directory / "zimo.yaml"
    if path.exists():
        raise ConfigError(f"{path} already exists", "pick another folder or edit that file")
    (directory / "data").mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATES[template].format(name=directory.resolve().name), encoding="utf-8")
    return path
