"""`zimo init` templates: a commented zimo.yaml to start a project from."""

from __future__ import annotations

import shutil
from pathlib import Path

from zimo.errors import ConfigError
from zimo.fileio import write_text_atomic

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

TABULAR = """\
# Zimo project: a table sub-model (LightGBM) predicting one column from the others.
name: {name}
task: tabular
data:
  path: data/{data}
tabular:
  target: {target}
  objective: auto             # inferred: {objective}; or regression | binary | multiclass
  columns: {{}}                 # override an inferred kind, e.g. {{City: categorical}}
  exclude: []                 # columns never to use (the report lists what was inferred)
  tolerance: 5                # regression: report the share within ±tolerance of the truth
  interval: 0.8               # regression: an 80% prediction interval
split: {{dev: 0.1, test: 0.2, seed: 13}}   # or by: <time column>, or group: <id column>
train:
  method: lightgbm            # engine: dask for LightGBM's own Dask interface
{plan}"""

IMAGE = """\
# Zimo project: an image-text sub-model that labels images and finds them by words.
# Default: a small image encoder trained on your images into the embedded MiniLM text space
# (no pretrained image model installs offline). With a CLIP checkpoint on this machine, use
# `train: {{method: clip, checkpoint: /path/to/clip}}` instead (see docs/images.md).
name: {name}
task: image
data:
  path: {data}   # a folder with one sub-folder per label, a .csv/.jsonl of path,label (or
                 # path,caption), or a .zip of either
{found}image:
  image_size: auto            # the encoder's input side; auto: median short side, 32-96 px
  flip: true                  # mirrored images keep their label (turn off for scans, text)
split: {{dev: 0.05, test: 0.15, seed: 13}}
train:
  method: image
  budget_cpu_s: 600           # CPU-seconds of training: 5 minutes on 2 cores
"""

TEMPLATES = {"classify": CLASSIFY, "instruct": INSTRUCT, "tabular": TABULAR, "image": IMAGE}


def write_template(
    directory: Path, template: str, data: Path | None = None, target: str | None = None
) -> Path:
    if template not in TEMPLATES:
        raise ConfigError(
            f"unknown template {template!r}", f"choose one of: {', '.join(TEMPLATES)}"
        )
    directory = Path(directory)
    path = directory / "zimo.yaml"
    if path.exists():
        raise ConfigError(f"{path} already exists", "pick another folder or edit that file")
    if template == "tabular":
        text = _tabular_yaml(directory, data, target)
    elif template == "image":
        if target is not None:
            raise ConfigError("--target goes with --template tabular", "labels come from folders")
        text = _image_yaml(directory, data)
        data = None  # images are read where they are: a photo archive is not copied
    else:
        if data is not None or target is not None:
            raise ConfigError(
                "--data/--target go with --template tabular", "copy your data into DIR/data/"
            )
        text = TEMPLATES[template].format(name=directory.resolve().name)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    if data is not None:
        shutil.copyfile(data, directory / "data" / Path(data).name)
    write_text_atomic(path, text)
    return path


def _tabular_yaml(directory: Path, data: Path | None, target: str | None) -> str:
    """The tabular template with the column plan inferred from the data, as comments."""
    from zimo.tabular.columns import infer_plan, read_frame

    if data is None or target is None:
        raise ConfigError(
            "--template tabular needs --data FILE and --target COLUMN",
            "e.g. zimo init eta --template tabular --data orders.csv --target minutes",
        )
    if not Path(data).is_file():
        raise ConfigError(f"data file {str(data)!r} does not exist", "check the path")
    df, rejects = read_frame(Path(data))
    plan = infer_plan(df, target)
    lines = [f"# Inferred from {Path(data).name} ({len(df)} rows, {len(rejects)} bad):"]
    for c in plan.columns:
        lines.append(f"#   {c.name}: {c.kind}" + (f" ({c.reason})" if c.reason else ""))
    lines += [f"#   {n}" for n in plan.notes]
    return TABULAR.format(
        name=directory.resolve().name,
        data=Path(data).name,
        target=_yaml_scalar(target),
        objective=plan.objective,
        plan="\n".join(lines) + "\n",
    )


def _yaml_scalar(value: str) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _image_yaml(directory: Path, data: Path | None) -> str:
    """The image template pointing at the user's images (read in place, not copied)."""
    import os

    if data is None:
        return IMAGE.format(name=directory.resolve().name, data="data/", found="")
    if not Path(data).exists():
        raise ConfigError(f"data path {str(data)!r} does not exist", "check the path")
    directory.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(Path(data).resolve(), directory.resolve())
    found = ""
    if Path(data).is_dir():
        subs = sorted(
            p.name for p in Path(data).iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if subs:
            shown = ", ".join(subs[:20]) + (" …" if len(subs) > 20 else "")
            found = (
                f"# labels found (folder names): {shown}\n# labels: [...]  # to keep only some\n"
            )
    return IMAGE.format(name=directory.resolve().name, data=_yaml_scalar(rel), found=found)
