"""GGUF export agreement by quant type, on a project's real trained adapter.

Merges the adapter once, then writes the GGUF in each quant type side by side in one run and
loads each back with transformers' GGUF loader and with llama.cpp (llama-cpp-python, when
installed), measuring against the merged HF model on the export's fixed prompt set:

- greedy-token agreement up to the end of each answer (what the export report gates on) and
  over all 16 positions (past the end-of-turn token too);
- label agreement on the project's test split (label tasks);
- file size and write time (ratios to f16).

Nothing is hard-coded about the adapter: it is the project's current ``train`` artifact.
Writes ``benchmarks/results/export_quant.{json,md}``.

    nice -n 10 .venv/bin/python benchmarks/export_quant.py examples/sms-fraud --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

from zimo.hw import cpu_info  # noqa: E402


def run(project: Path, quants: list[str], label_texts: int, llamacpp: bool) -> dict:
    from zimo.export.gguf_writer import llamacpp_available, write_gguf
    from zimo.export.merge import merge_adapter
    from zimo.export.project import resolve_project
    from zimo.export.verify import verify_gguf

    pe = resolve_project(project)
    t0 = time.perf_counter()
    merged = merge_adapter(pe.source, pe.base)
    merge_s = time.perf_counter() - t0
    spec = None
    if pe.label_texts and pe.metadata.get("labels") and label_texts:
        spec = {
            "labels": pe.metadata["labels"],
            "instruction": pe.metadata.get("instruction"),
            "texts": pe.label_texts[:label_texts],
        }
    rows = []
    with tempfile.TemporaryDirectory(prefix="zimo-export-bench-") as tmp:
        for quant in quants:
            path = Path(tmp) / f"m-{quant}.gguf"
            t = time.perf_counter()
            res = write_gguf(merged.model, merged.tokenizer, path, quant, base_dir=merged.base_dir)
            write_s = time.perf_counter() - t
            v = verify_gguf(
                merged.model,
                merged.tokenizer,
                path,
                quant,
                label_spec=spec,
                llamacpp=llamacpp and llamacpp_available(),
                reference_=merged.reference,
            )
            row = {
                "quant": quant,
                "size_bytes": res.size_bytes,
                "tensor_types": res.tensor_types,
                "write_seconds": round(write_s, 1),
            }
            for engine in ("transformers", "llama_cpp"):
                e = v[engine]
                if "skipped" in e:
                    row[engine] = {"skipped": e["skipped"]}
                    continue
                row[engine] = {
                    k: e.get(k)
                    for k in (
                        "token_agreement",
                        "positions",
                        "token_agreement_all_positions",
                        "positions_all",
                        "sequences_identical",
                        "sequences",
                        "tokenizer_agreement",
                        "target",
                        "passed",
                    )
                }
                if "labels" in e:
                    row[engine]["label_agreement"] = e["labels"]["agreement"]
                    row[engine]["label_n"] = e["labels"]["n"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    f16 = next((r for r in rows if r["quant"] == "f16"), None)
    for r in rows:
        if f16:
            r["size_vs_f16"] = round(r["size_bytes"] / f16["size_bytes"], 3)
    return {
        "project": str(project),
        "adapter": str(pe.source),
        "base": pe.base,
        "merge": merged.report,
        "merge_seconds": round(merge_s, 1),
        "label_texts": len(spec["texts"]) if spec else 0,
        "rows": rows,
        "cpu": cpu_info(),
    }


def to_markdown(result: dict) -> str:
    lines = [
        f"# GGUF export agreement — {result['project']} (base {result['base']})",
        "",
        f"Adapter `{result['adapter']}`; {result['label_texts']} test-split texts for labels.",
        "Token agreement: teacher-forced top-1 vs the merged HF model, up to the end of each",
        "answer (gated: f16 ≥ 99 %, q8_0 ≥ 95 %) and over all 16 positions.",
        "",
        "| quant | engine | token agr. (answer) | positions | token agr. (all 16) "
        "| labels | size vs f16 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        for engine in ("transformers", "llama_cpp"):
            e = r[engine]
            if "skipped" in e:
                lines.append(f"| {r['quant']} | {engine} | skipped | | | | |")
                continue
            lab = f"{100 * e['label_agreement']:.1f}%" if "label_agreement" in e else "–"
            lines.append(
                f"| {r['quant']} | {engine} | {100 * e['token_agreement']:.1f}% | "
                f"{e['positions']} | {100 * e['token_agreement_all_positions']:.1f}% | {lab} | "
                f"{r.get('size_vs_f16', '–')} |"
            )
    lines += ["", f"CPU: {result['cpu'].get('model', '?')}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--quick", action="store_true", help="q8_0 only, 40 label texts")
    ap.add_argument("--no-llamacpp", action="store_true")
    ap.add_argument("--name", default="export_quant")
    args = ap.parse_args()
    quants = ["q8_0"] if args.quick else ["f16", "q8_0"]
    result = run(args.project, quants, 40 if args.quick else 200, not args.no_llamacpp)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str))
    (RESULTS / f"{args.name}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
