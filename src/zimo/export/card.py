"""The model card (README.md) of an export folder.

It says what the model is built on (and that base's licence), what data trained it (with
provenance and the share of synthetic data, which matters for model-collapse risk), how it
scored, what it is for, and every export check with its target, so a reader does not need
the JSON report. The same figures are in ``export_report.json`` for scripts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from zimo.records import SYNTHETIC_ORIGINS

# The embedded presets' upstream models and licences (their GGUF packages say so too).
KNOWN_BASES = {
    "gecko": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    "gecko-zh": ("google/gemma-3-270m", "gemma"),
}


def base_license(base: str | None, base_dir: Path | None) -> str | None:
    """The base model's licence: known preset, the source GGUF's metadata, or the base README."""
    if base in KNOWN_BASES:
        return KNOWN_BASES[base][1]
    if base_dir is None:
        return None
    src = base_dir / "zimo_source.json"
    if src.is_file():
        try:
            from gguf import GGUFReader

            path = json.loads(src.read_text(encoding="utf-8")).get("source_gguf")
            field = GGUFReader(path).fields.get("general.license") if path else None
            if field is not None:
                return str(field.contents())
        except Exception:  # a missing or unreadable source file only loses the licence line
            pass
    readme = base_dir / "README.md"
    if readme.is_file():
        m = re.search(r"^license:\s*(\S+)", readme.read_text(encoding="utf-8"), re.M)
        if m:
            return m.group(1)
    return None


def data_summary(records: list[dict]) -> dict[str, Any]:
    """Counts by origin and source, and the synthetic share, from Zimo records."""
    origins: dict[str, int] = {}
    sources: dict[str, int] = {}
    for r in records:
        meta = r.get("meta") or {}
        o = meta.get("origin") or "unknown"
        origins[o] = origins.get(o, 0) + 1
        s = Path(str(meta.get("source") or "unknown")).name
        sources[s] = sources.get(s, 0) + 1
    n = len(records)
    synth = sum(v for k, v in origins.items() if k in SYNTHETIC_ORIGINS)
    return {
        "records": n,
        "origins": origins,
        "sources": dict(sorted(sources.items(), key=lambda kv: -kv[1])[:10]),
        "synthetic_share": synth / n if n else 0.0,
    }


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f}%" if isinstance(x, int | float) else "—"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _check_rows(report: dict) -> list[str]:
    rows = []
    merge = report.get("merge") or {}
    if "max_abs_logit_diff" in merge:
        rows.append(
            f"| merge: max abs logit diff vs base+adapter | {merge['max_abs_logit_diff']:.2e} "
            f"| ≤ {merge['tolerance']:.0e} | {'yes' if merge['passed'] else 'NO'} |"
        )
        rows.append(
            f"| merge: greedy tokens identical | {merge['greedy_identical']}/{merge['prompts']} "
            f"| all | {'yes' if merge['greedy_identical'] == merge['prompts'] else 'NO'} |"
        )
    hf = report.get("hf_reload") or {}
    if hf:
        rows.append(
            f"| safetensors reload: max abs logit diff | {hf['max_abs_logit_diff']:.2e} "
            f"| ≤ {hf['tolerance']:.0e} | {'yes' if hf['passed'] else 'NO'} |"
        )
    verify = report.get("verify") or {}
    for engine in ("transformers", "llama_cpp"):
        v = verify.get(engine) or {}
        if "skipped" in v:
            rows.append(f"| {engine}: skipped | {v['skipped']} | | |")
            continue
        if not v:
            continue
        rows.append(
            f"| {engine}: tokenizer agreement | {_pct(v['tokenizer_agreement'])} | 100% "
            f"| {'yes' if v['tokenizer_agreement'] == 1.0 else 'NO'} |"
        )
        ok = v["token_agreement"] >= v["target"]
        rows.append(
            f"| {engine}: greedy-token agreement ({v['positions']} answer tokens, "
            f"{v['sequences_identical']}/{v['sequences']} answers identical) "
            f"| {_pct(v['token_agreement'])} | ≥ {_pct(v['target'])} | {'yes' if ok else 'NO'} |"
        )
        if "token_agreement_all_positions" in v:
            rows.append(
                f"| {engine}: same, all {v['positions_all']} positions (past the end of the "
                f"answer too; not gated) | {_pct(v['token_agreement_all_positions'])} | | |"
            )
        if "labels" in v:
            lab = v["labels"]
            ok = lab["agreement"] >= lab["target"]
            rows.append(
                f"| {engine}: label agreement ({lab['n']} texts) | {_pct(lab['agreement'])} "
                f"| ≥ {_pct(lab['target'])} | {'yes' if ok else 'NO'} |"
            )
    return rows


def render_model_card(report: dict, metadata: dict | None = None) -> str:
    """Markdown for README.md in the export folder."""
    meta = metadata or {}
    src = report.get("source", {})
    base = src.get("base") or "unknown"
    upstream = KNOWN_BASES.get(base, (base, None))[0]
    lic = report.get("base_license") or "unknown (check the base model's licence)"
    name = report.get("name") or "zimo-model"
    fmt, quant = report.get("format"), report.get("quant")
    front = [
        "---",
        f"license: {lic if report.get('base_license') else 'other'}",
        f"base_model: {upstream}",
        "tags: [zimo, lora" + (", gguf" if fmt in ("gguf", "ollama") else "") + "]",
        "---",
        "",
    ]
    lines = [f"# {name}", ""]
    if meta.get("description"):
        lines += [str(meta["description"]), ""]
    lines += [
        f"A Zimo sub-model exported as **{fmt}**"
        + (f" ({quant})" if quant else "")
        + f" on {report.get('created', '')}.",
        "",
        "## Base model",
        "",
        f"- base: `{base}`" + (f" ({upstream})" if upstream != base else ""),
        f"- licence of the base model: **{lic}** — it applies to this derived model too",
        f"- adaptation: {'LoRA adapter merged into the base' if src.get('adapter') else 'full weights'}",
        f"- dtype of the merged weights: {report.get('merge', {}).get('dtype', 'unknown')}",
        "",
        "## Intended use",
        "",
    ]
    task = meta.get("task")
    labels = meta.get("labels")
    use = meta.get("intended_use")
    if not use:
        if task == "label" and labels:
            use = (
                f"Classifies a text into one of: {', '.join(map(str, labels))}"
                + (f" ({meta['instruction']})" if meta.get("instruction") else "")
                + ". Use it on text like its training data; check its errors on your own data "
                "before acting on its answers automatically."
            )
        else:
            use = (
                "A small domain assistant for short answers on text like its training data. "
                "It is not a general-purpose model and can be wrong; keep a human or a larger "
                "model in the loop for decisions that matter."
            )
    lines += [use, ""]
    data = meta.get("data")
    lines += ["## Training data", ""]
    if data:
        lines.append(f"- records: {data.get('records', '?')}")
        if "synthetic_share" in data:
            lines.append(
                f"- synthetic share (origins {', '.join(SYNTHETIC_ORIGINS)}): "
                f"{_pct(data['synthetic_share'])}"
            )
        if data.get("origins"):
            lines += ["", "| origin | records |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(data["origins"].items())]
        if data.get("sources"):
            lines += ["", "| source | records |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in data["sources"].items()]
    else:
        lines.append("Not recorded for this export.")
    lines += ["", "## Evaluation", ""]
    ev = meta.get("eval")
    if ev:
        metrics = sorted({m for row in ev.values() if isinstance(row, dict) for m in row})
        lines += ["| system | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for system, row in ev.items():
            if isinstance(row, dict):
                lines.append(
                    f"| {system} | " + " | ".join(_fmt(row.get(m, "—")) for m in metrics) + " |"
                )
    else:
        lines.append("No evaluation was given for this export (run `zimo eval <project>`).")
    lines += [
        "",
        "## Export checks",
        "",
        "Every figure is also in `export_report.json`.",
        "",
        "| check | value | target | passed |",
        "|---|---|---|---|",
        *_check_rows(report),
        "",
        "## How to run",
        "",
        *_how_to_run(report),
        "",
    ]
    return "\n".join(front + lines)


def _how_to_run(report: dict) -> list[str]:
    files = report.get("files", {})
    if report.get("format") == "hf":
        return [
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            'tok = AutoTokenizer.from_pretrained("<this folder>")',
            'model = AutoModelForCausalLM.from_pretrained("<this folder>")',
            "```",
        ]
    out = [
        "```sh",
        f"llama-cli -m {files.get('gguf', 'model.gguf')} -cnv",
    ]
    oll = report.get("ollama")
    if oll:
        out += [oll["create_command"], oll["run_command"]]
    return out + ["```"]
