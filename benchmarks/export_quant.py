"""GGUF export agreement by quant type, on a project's real trained adapter.

Merges the adapter once, then writes the GGUF in each quant type side by side in one run and
measures:

1. **Export checks** (what ``export_report.json`` gates on): each GGUF loaded back with
   transformers' GGUF loader and with llama.cpp (llama-cpp-python, when installed) against
   the merged HF model: greedy-token agreement on the export's fixed prompt set (up to the
   end of each answer, and over all 16 positions) and label agreement on test-split texts.
2. **Served agreement** (the issue's "done when", needs llama-cpp-python): the sub-model as
   ``zimo serve`` answers with its default engine (transformers + PEFT adapter, the stored
   decision threshold) against the GGUF served by the llama.cpp engine, on the whole test
   split, through the engines' own job queues; accuracy and F1 of both against the truth.
3. **Scoring-rule ablation** (llama.cpp side): how much agreement each part of the served
   rule is worth: scoring the label's first token (the default engine) or the whole answer
   with its end-of-turn token (what the llama.cpp engine did before), with and without the
   dev-tuned threshold.

Nothing is hard-coded about the adapter: it is the project's current ``train`` artifact.
Writes ``benchmarks/results/export_quant.{json,md}``.

    nice -n 10 .venv/bin/python benchmarks/export_quant.py examples/sms-fraud --quick
    # parts 2-3 on the whole test split, for the GGUF `zimo export` wrote:
    nice -n 10 .venv/bin/python benchmarks/export_quant.py examples/sms-fraud \
        --gguf examples/sms-fraud/.zimo/exports/gguf-q8_0/sms-fraud-q8_0.gguf
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

from zimo.hw import cpu_info  # noqa: E402

ENGINE_KEYS = (
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


def _test_split(project: Path) -> list[dict]:
    from zimo.config import load_project
    from zimo.dataset_io import read_records
    from zimo.stages.dag import artifact_path

    proj = load_project(project)
    split = artifact_path(proj.root, "split")
    return [r for r in read_records(split / "test.parquet") if r.get("text")]


def ablation(gguf: Path, tokenizer, meta: dict, texts: list[str], served: list[str]) -> dict:
    """Label agreement with the served labels under four llama.cpp scoring rules.

    One prompt evaluation per text: the first-token scores are read after the prompt, and
    each label's end-of-turn log-prob after rewinding the KV cache to the prompt's end
    (fine for llama-architecture bases, which this benchmark runs on).
    """
    from llama_cpp import Llama
    from rich.progress import track

    from zimo.export.verify import decide_labels, served_label_prompt
    from zimo.serve.backends.llamacpp import _last_logits

    spec = {**meta, "texts": texts}
    lp = served_label_prompt(tokenizer, spec)
    llm = Llama(model_path=str(gguf), n_ctx=1024, verbose=False)
    first, whole = [], []
    t0 = time.perf_counter()
    budget = BUDGET_S["ablation"]
    for t in track(texts, description="ablation (llama.cpp)", transient=True):
        if budget is not None and time.perf_counter() - t0 > budget:
            break
        p = lp.prompt_ids(t)
        llm.reset()
        llm.eval(p)
        logits = _last_logits(llm)
        norm = np.logaddexp.reduce(logits)
        f = [float(logits[a[0]] - norm) for a in lp.label_ids]
        w = []
        for a, fa in zip(lp.label_ids, f, strict=True):
            total = fa
            for k in range(1, len(a)):
                llm.n_tokens = len(p) + k - 1  # rewind to the prompt (+ answer so far)
                llm.eval([a[k - 1]])
                lg = _last_logits(llm)
                total += float(lg[a[k]] - np.logaddexp.reduce(lg))
            w.append(total)
        first.append(f)
        whole.append(w)
    llm.close()

    def probs(scores):
        s = np.asarray(scores)
        s = np.exp(s - s.max(1, keepdims=True))
        return s / s.sum(1, keepdims=True)

    served_idx = [lp.labels.index(x) for x in served[: len(first)]]
    out: dict = {"n": len(first)}
    for rule, scores in (("first_token", first), ("whole_answer", whole)):
        pr = probs(scores)
        for decision, sp in (("threshold", spec), ("argmax", {"labels": lp.labels})):
            pred = decide_labels(pr, sp)
            agree = float(np.mean([a == b for a, b in zip(pred, served_idx, strict=True)]))
            out[f"{rule}+{decision}"] = agree
    return out


BUDGET_S: dict[str, float | None] = {"served": None, "ablation": None}  # set by --budget-min


def served_rows_check(pe, gguf: Path, tokenizer, test: list[dict]) -> dict:
    """Parts 2 and 3 for one GGUF: served agreement on ``test`` and the scoring ablation."""
    from zimo.export.served_check import served_label_agreement
    from zimo.export.verify import LABEL_RULE_KEYS

    texts = [r["text"] for r in test]
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        print(f"served check: {done[0]}/{len(texts)} rows", flush=True)

    s = served_label_agreement(
        pe.source.parent,
        gguf,
        texts,
        [r["label"] for r in test],
        keep_predictions=True,
        progress=progress,
        time_budget_s=BUDGET_S["served"],
    )
    texts = texts[: s["n"]]
    preds = s.pop("predictions")
    s["disagreements"] = s["disagreements"][:20]
    meta = pe.metadata
    rule = {k: meta[k] for k in ("labels", "instruction", *LABEL_RULE_KEYS) if k in meta}
    return {
        "served": s,
        "ablation": ablation(gguf, tokenizer, rule, texts, preds["served"]["labels"]),
    }


def run_existing(project: Path, gguf: Path, served_rows: int | None) -> dict:
    """Parts 2 and 3 only, for a GGUF that ``zimo export`` already wrote (no merge)."""
    from gguf import GGUFReader

    from zimo.export.project import resolve_project
    from zimo.models import load_tokenizer

    pe = resolve_project(project)
    test = _test_split(project)[: served_rows or None]
    types = {}
    for t in GGUFReader(str(gguf)).tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    quant = max(types, key=types.get).lower()
    row = {"quant": quant, "gguf": str(gguf), "size_bytes": gguf.stat().st_size,
           "tensor_types": types}  # fmt: skip
    row.update(served_rows_check(pe, gguf, load_tokenizer(pe.base or "gecko"), test))
    print(json.dumps(row, default=str)[:2000], flush=True)
    return {
        "project": str(project),
        "adapter": str(pe.source),
        "base": pe.base,
        "decision_threshold": pe.metadata.get("decision_threshold"),
        "label_texts": 0,
        "served_rows": len(test),
        "llama_cpp": True,
        "rows": [row],
        "cpu": cpu_info(),
    }


def run(project: Path, quants: list[str], label_texts: int, served_rows: int | None) -> dict:
    from zimo.export.gguf_writer import llamacpp_available, write_gguf
    from zimo.export.merge import merge_adapter
    from zimo.export.project import resolve_project
    from zimo.export.verify import LABEL_RULE_KEYS, verify_gguf

    pe = resolve_project(project)
    llamacpp = llamacpp_available()
    t0 = time.perf_counter()
    merged = merge_adapter(pe.source, pe.base)
    merge_s = time.perf_counter() - t0
    meta = pe.metadata
    spec = None
    if pe.label_texts and meta.get("labels") and label_texts:
        spec = {
            "labels": meta["labels"],
            "instruction": meta.get("instruction"),
            "texts": pe.label_texts[:label_texts],
            **{k: meta[k] for k in LABEL_RULE_KEYS if k in meta},
        }
    test = _test_split(project) if meta.get("task") == "label" else []
    if served_rows:
        test = test[:served_rows]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zimo-export-bench-") as tmp:
        for quant in quants:
            path = Path(tmp) / f"m-{quant}.gguf"
            t = time.perf_counter()
            res = write_gguf(merged.model, merged.tokenizer, path, quant, base_dir=merged.base_dir)
            write_s = time.perf_counter() - t
            t = time.perf_counter()
            v = verify_gguf(
                merged.model,
                merged.tokenizer,
                path,
                quant,
                label_spec=spec,
                llamacpp=llamacpp,
                reference_=merged.reference,
            )
            row = {
                "quant": quant,
                "size_bytes": res.size_bytes,
                "tensor_types": res.tensor_types,
                "write_seconds": round(write_s, 1),
                "verify_seconds": round(time.perf_counter() - t, 1),
            }
            for engine in ("transformers", "llama_cpp"):
                e = v[engine]
                if "skipped" in e:
                    row[engine] = {"skipped": e["skipped"]}
                    continue
                row[engine] = {k: e.get(k) for k in ENGINE_KEYS}
                if "labels" in e:
                    row[engine]["label_agreement"] = e["labels"]["agreement"]
                    row[engine]["label_n"] = e["labels"]["n"]
            if llamacpp and test:
                row.update(served_rows_check(pe, path, merged.tokenizer, test))
            rows.append(row)
            print(json.dumps(row, default=str)[:2000], flush=True)
    f16 = next((r for r in rows if r["quant"] == "f16"), None)
    for r in rows:
        if f16:
            r["size_vs_f16"] = round(r["size_bytes"] / f16["size_bytes"], 3)
    return {
        "project": str(project),
        "adapter": str(pe.source),
        "base": pe.base,
        "decision_threshold": meta.get("decision_threshold"),
        "merge": merged.report,
        "merge_seconds": round(merge_s, 1),
        "label_texts": len(spec["texts"]) if spec else 0,
        "served_rows": len(test),
        "llama_cpp": llamacpp,
        "rows": rows,
        "cpu": cpu_info(),
    }


def to_markdown(result: dict) -> str:
    lines = [
        f"# GGUF export agreement — {result['project']} (base {result['base']})",
        "",
        f"Adapter `{result['adapter']}`; decision threshold {result['decision_threshold']}.",
        f"Command: `benchmarks/export_quant.py {result.get('command', '')}`",
        "",
        "## Export checks (export_report.json)",
        "",
        "Token agreement: teacher-forced top-1 vs the merged HF model, up to the end of each",
        "answer (gated: f16 ≥ 99 %, q8_0 ≥ 95 %) and over all 16 positions. Labels: served",
        f"rule on the merged model vs each engine on the GGUF, {result['label_texts']} "
        "test-split texts.",
        "",
        "| quant | engine | token agr. (answer) | positions | token agr. (all 16) "
        "| labels | size vs f16 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    if result.get("note"):
        lines[2:2] = [result["note"], ""]
    for r in result["rows"]:
        for engine in ("transformers", "llama_cpp"):
            if engine not in r:  # --gguf: an existing export, checked only as served
                lines.append(f"| {r['quant']} | {engine} | not run (--gguf) | | | | |")
                continue
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
    served = [r for r in result["rows"] if "served" in r]
    if served:
        pos = next(iter(served))["served"].get("positive_label") or "pos"
        lines += [
            "",
            f"## Served sub-model vs GGUF on llama.cpp ({served[0]['served']['n']} of "
            f"{result['served_rows']} test rows)",
            "",
            "Served = `zimo serve` default engine (transformers + PEFT adapter); GGUF = the",
            "llama.cpp engine serving the exported file. Same prompt and decision threshold.",
            "",
            f"| quant | agreement | served acc. | GGUF acc. | served {pos} F1 | GGUF {pos} F1 "
            f"| max abs ΔP({pos}) | served s | GGUF s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in served:
            s = r["served"]
            sm, gm = s.get("served_metrics", {}), s.get("gguf_metrics", {})
            sec = s["seconds"]
            lines.append(
                f"| {r['quant']} | {100 * s['agreement']:.2f}% | {sm.get('accuracy', 0):.4f} | "
                f"{gm.get('accuracy', 0):.4f} | {sm.get(f'{pos}_f1', 0):.4f} | "
                f"{gm.get(f'{pos}_f1', 0):.4f} | {s[f'max_abs_p_{pos}_diff']:.4f} | "
                f"{sec['served_score']} | {sec['gguf_score']} |"
            )
        lines += [
            "",
            f"## Scoring-rule ablation (llama.cpp on the GGUF vs the served labels, "
            f"{served[0]['ablation']['n']} rows)",
            "",
            "| quant | first token + threshold (served rule) | first token, argmax "
            "| whole answer + threshold | whole answer, argmax |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in served:
            a = r["ablation"]
            lines.append(
                f"| {r['quant']} | {100 * a['first_token+threshold']:.2f}% | "
                f"{100 * a['first_token+argmax']:.2f}% | {100 * a['whole_answer+threshold']:.2f}% "
                f"| {100 * a['whole_answer+argmax']:.2f}% |"
            )
    elif not result["llama_cpp"]:
        lines += ["", "Served agreement: skipped (llama-cpp-python not installed)."]
    lines += ["", f"CPU: {result['cpu'].get('model', '?')}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--quick", action="store_true", help="q8_0 only, 40 + 100 label texts")
    ap.add_argument(
        "--served-rows", type=int, default=None, help="test rows for the served check (0 = all)"
    )
    ap.add_argument(
        "--gguf", type=Path, default=None, help="check this existing export (parts 2-3 only)"
    )
    ap.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="stop the served check after this many minutes (and the ablation after half)",
    )
    ap.add_argument("--note", default=None, help="a line for the report (provenance, load)")
    ap.add_argument("--from-json", action="store_true", help="only re-render the markdown")
    ap.add_argument("--name", default="export_quant")
    args = ap.parse_args()
    if args.from_json:
        result = json.loads((RESULTS / f"{args.name}.json").read_text())
        if args.note:
            result["note"] = args.note
            (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str))
        (RESULTS / f"{args.name}.md").write_text(to_markdown(result))
        print(to_markdown(result))
        return
    if args.budget_min:
        BUDGET_S.update(served=60 * args.budget_min, ablation=30 * args.budget_min)
    served_rows = args.served_rows if args.served_rows is not None else (100 if args.quick else 0)
    if args.gguf:
        result = run_existing(args.project, args.gguf, served_rows or None)
    else:
        quants = ["q8_0"] if args.quick else ["f16", "q8_0"]
        result = run(args.project, quants, 40 if args.quick else 200, served_rows or None)
    result["command"] = " ".join(sys.argv[1:])
    if args.note:
        result["note"] = args.note
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str))
    (RESULTS / f"{args.name}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
