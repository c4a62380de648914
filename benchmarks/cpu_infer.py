"""LM inference on CPUs, with and without bf16: what a user writes vs Zimo's path vs llama.cpp.

One run, the demo's sub-model (examples/sms-fraud, built once or given with ``--project``),
the same test-split messages for every leg:

(a) ``plain``: transformers + peft in fp32, one message per forward (the whole chat prompt),
    labels from the first answer token's logits;
(b) ``zimo``: ``zimo.infer.LabelScorer`` as ``zimo eval`` runs it (frozen weights: the shared
    prompt prefix's KV computed once and reused; base weights as chosen for this CPU kind:
    int8 without fast bf16, else fp32/bf16), ``zimo_fp32`` or ``zimo_int8``: the same on the
    other weights (``ZIMO_INT8=0/1``; int8 with the adapter merged into the base before
    quantising, as ``zimo eval`` does), ``zimo_int8_unmerged``: int8 with the LoRA on top of
    the quantised base, and ``zimo_serve``: the serving engine's own job queue
    (label requests one at a time, then all at once so its micro-batcher groups them);
(c) ``llamacpp``: the merged q8_0 GGUF (``zimo export -f gguf -q q8_0``) through the llama.cpp
    engine, when ``llama-cpp-python`` is importable (else skipped with the reason).

For each: p50/p99 latency at batch 1, messages/s batched, label agreement with (a) (same decision
rule for all: the sub-model's stored threshold). Plus a chat generation leg on gecko-zh: tokens/s
at batch 1 and 8, HF ``generate`` vs the serving engine.

Each CPU kind runs in its own child process: ``native`` and ``avx2`` (``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 ZIMO_BF16=0``:
the AVX2-only kind emulated on this CPU; llama.cpp runs the code its wheel was built with in
both). Run it on a quiet
machine and read the ratios; the JSON records the CPU, the load average and what was forced.

    python benchmarks/cpu_infer.py --quick --project /tmp/sms-built
    python benchmarks/cpu_infer.py --out benchmarks/results/cpu_infer.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))

AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    # fbgemm (Zimo's int8 GEMM where torch has it) reads its own cap; without it the emulated
    # kind would run fbgemm's AVX512-VNNI kernels, 2-5x faster than its AVX2 ones here.
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "ZIMO_BF16": "0",
}


def run_kind(cmd: list[str], kind: str) -> tuple[dict, dict]:
    """(the environment forced for ``kind``, the result) of a benchmark's child process run on
    that CPU kind: ``avx2`` is the AVX2-only kind emulated, anything else the CPU as detected.
    The child prints its result as JSON on its last stdout line; a child that failed gives
    ``{"error": …}`` so that one kind's crash does not lose the others' results."""
    forced = AVX2_ENV if kind == "avx2" else {}
    p = subprocess.run(cmd, env={**os.environ, **forced}, stdout=subprocess.PIPE, text=True)
    try:
        return forced, json.loads(p.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return forced, {"error": f"child exited {p.returncode}"}


def _pcts(times: list[float]) -> dict:
    import numpy as np

    a = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2), "n": len(times)}  # fmt: skip


def _project_rows(project: Path) -> tuple[Path, list[dict], dict]:
    from zimo.stages.dag import artifact_path

    train_dir = artifact_path(project, "train")
    split = artifact_path(project, "split")
    if train_dir is None or split is None:
        raise SystemExit(f"{project} is not built: run `zimo build {project}` first")
    from zimo.dataset_io import read_records

    test = [r for r in read_records(split / "test.parquet") if r.get("text")]
    meta = json.loads((train_dir / "zimo_model.json").read_text(encoding="utf-8"))
    task = train_dir / "label_task.json"
    if task.is_file():
        meta = {**meta, **json.loads(task.read_text(encoding="utf-8"))}
    return train_dir, test, meta


def _tensors(module) -> dict[int, int]:
    """Storage pointer -> bytes of every tensor ``module`` reaches (an Int8Part's stacked
    weights included; fbgemm's packed int8 weights, which are not tensors, by their id)."""
    from zimo.infer.fastpath import Int8Linear, Int8Part

    out = {}
    mods = list(module.modules())
    mods += [m.shared for m in mods if isinstance(m, Int8Part)]
    for m in mods:
        if isinstance(m, Int8Linear) and m.packed is not None:
            out[id(m.packed)] = m.int8_nbytes()
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            if t is not None and t.numel():
                out[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return out


def _own_bytes(model, base) -> int:
    """Bytes of the tensors ``model`` holds that ``base`` does not share."""
    shared = _tensors(base)
    return sum(n for p, n in _tensors(model).items() if p not in shared)


def label_scorer(model, tok, meta: dict):
    """The frozen-weights ``LabelScorer`` ``zimo eval`` builds, with the trained label prompt."""
    from zimo.infer.label import LabelScorer

    return LabelScorer(
        model,
        tok,
        meta["labels"],
        meta.get("instruction"),
        **({"system": meta["system"]} if meta.get("system") else {}),
        max_text_tokens=meta.get("max_text_tokens") or 256,
        frozen=True,
    )


def _decide(scores, labels: list[str], meta: dict) -> list[int]:
    import numpy as np

    from zimo.infer.label import decide

    s = np.asarray(scores, dtype=np.float64)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pos = meta.get("positive_label")
    thr = meta.get("decision_threshold")
    return decide(p, labels.index(pos) if pos in labels and thr is not None else None, thr).tolist()


def leg_plain(train_dir: Path, meta: dict, texts: list[str], lat_n: int) -> tuple[dict, list]:
    """What a user writes: transformers + peft, fp32, the chat prompt, one message a forward."""
    import torch
    from peft import PeftModel

    from zimo.models import load_causal_lm
    from zimo.prompts import LabelPrompt

    model, tok = load_causal_lm(meta["base"])
    model = PeftModel.from_pretrained(model, str(train_dir / meta["adapter"])).eval()
    labels = meta["labels"]
    kw = {"system": meta["system"]} if meta.get("system") else {}
    lp = LabelPrompt(tok, labels, meta.get("instruction"), **kw)
    first = [a[0] for a in lp.label_ids]

    @torch.inference_mode()
    def one(text: str):
        ids = torch.tensor([lp.prompt_ids(text)])
        logits = model(input_ids=ids).logits[0, -1].float()
        return torch.log_softmax(logits, -1)[first].tolist()

    for t in texts[:2]:
        one(t)
    lat = []
    for t in texts[:lat_n]:
        t0 = time.perf_counter()
        one(t)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    scores = [one(t) for t in texts]
    wall = time.perf_counter() - t0
    return {**_pcts(lat), "msgs_per_s": round(len(texts) / wall, 2)}, _decide(scores, labels, meta)


def leg_zimo(train_dir: Path, meta: dict, texts: list[str], lat_n: int, weights: str,
             merge: bool = True):  # fmt: skip
    """Zimo's eval path: LabelScorer with frozen weights (prefix KV reused), batched 16, on the
    base weights ``zimo eval`` picks for this CPU kind (``weights="default"``) or forced
    (``"fp32"``/``"int8"``, as ``ZIMO_INT8=0/1`` does); on int8 the adapter merged into the
    base before quantising as ``zimo eval`` does (``merge=False``: LoRA on the int8 base)."""
    import torch
    from peft import PeftModel

    from zimo.infer import fastpath
    from zimo.models import load_causal_lm

    model, tok = load_causal_lm(meta["base"])
    model = PeftModel.from_pretrained(model, str(train_dir / meta["adapter"])).eval()
    saved = os.environ.pop("ZIMO_INT8", None)
    if weights != "default":
        os.environ["ZIMO_INT8"] = "1" if weights == "int8" else "0"
    try:
        base = model
        model, choice = fastpath.prepare_for_label_scoring(base, tok, merge=merge)
    finally:
        os.environ.pop("ZIMO_INT8", None)
        if saved is not None:
            os.environ["ZIMO_INT8"] = saved
    scorer = label_scorer(model, tok, meta)
    with torch.inference_mode():
        for t in texts[:2]:
            scorer.log_scores([t], batch_size=1)
        lat = []
        for t in texts[:lat_n]:
            t0 = time.perf_counter()
            scorer.log_scores([t], batch_size=1)
            lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scores = scorer.log_scores(texts, batch_size=16)
        wall = time.perf_counter() - t0
    res = {
        **_pcts(lat),
        "msgs_per_s": round(len(texts) / wall, 2),
        "weights": "int8" if choice["int8"] else ("bf16" if scorer.uses_bf16 else "fp32"),
        "adapter_merged": choice["merged"],
        "weights_reason": choice["reason"],
    }
    if choice["merged"]:
        # What the merged copy holds besides the shared base: its int8 layers (bytes of the
        # tensors only it references), the price of keeping the unmerged base for zero-shot.
        # Tensor bytes, not RSS: the weights are memory-mapped, so RSS grows as they are read.
        res["merged_copy_mb"] = round(_own_bytes(model, base) / 2**20, 1)
        res["unmerged_int8_mb"] = round(sum(_tensors(base).values()) / 2**20, 1)
    return res, _decide(scores, meta["labels"], meta)


def _engine_leg(be, sub, texts: list[str], lat_n: int) -> tuple[dict, list]:
    """Label requests through a serving engine's job queue: one at a time (latency), then all
    at once (the transformers engine micro-batches them; llama.cpp runs them one by one)."""
    from zimo.serve.backends.base import Job, SamplingParams

    be.start()
    be.add_model(sub)

    async def one(text: str):
        ids = be.encode_chat(sub.name, [{"role": "user", "content": text}])
        job = be.submit(Job(sub.name, ids, SamplingParams(), kind="label"))
        return await job.future

    async def run() -> tuple[list[float], float, list]:
        for t in texts[:2]:
            await one(t)
        lat = []
        for t in texts[:lat_n]:
            t0 = time.perf_counter()
            await one(t)
            lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        answers = await asyncio.gather(*(one(t) for t in texts))
        return lat, time.perf_counter() - t0, answers

    try:
        lat, wall, answers = asyncio.run(run())
        stats = be.stats()
    finally:
        be.close()
    res = {
        **_pcts(lat),
        "msgs_per_s": round(len(texts) / wall, 2),
        "mean_batch": round(stats["mean_batch"], 2),
        "max_batch": stats["max_batch"],
    }
    if "merged_adapter" in stats:  # the transformers engine: label requests on a merged copy
        res["adapter_merged"] = stats["merged_adapter"] is not None
    return res, [sub.labels.index(a.text) for a in answers]


def leg_serve(train_dir: Path, meta: dict, texts: list[str], lat_n: int, threads: int):
    """The transformers serving engine as ``zimo serve`` runs it (weights chosen per CPU kind)."""
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig
    from zimo.serve.registry import load_submodel

    sub = load_submodel(train_dir, name="sms")
    be = make_backend(BackendConfig(kind="transformers", base=meta["base"], threads=threads))
    res, preds = _engine_leg(be, sub, texts, lat_n)
    return {**res, "threads": threads, "int8": bool(be.weights.get("int8"))}, preds


def export_gguf(project: Path) -> Path:
    """The sub-model's merged q8_0 GGUF (what ``zimo export -f gguf -q q8_0`` writes), once."""
    from zimo.export.project import export_project

    folder = project / ".zimo" / "exports" / "gguf-q8_0"
    if not sorted(folder.glob("*.gguf")):
        export_project(project, formats=["gguf"], quant="q8_0", verify=False)
    return sorted(folder.glob("*.gguf"))[0]


def leg_llamacpp(project: Path, train_dir: Path, meta: dict, texts: list[str], lat_n: int,
                 threads: int):  # fmt: skip
    """(c): the q8_0 GGUF through the llama.cpp serving engine, same prompts and rule."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return {"skipped": "llama-cpp-python is not installed (pip install 'zimo[llamacpp]')"}, None
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig, SubModel
    from zimo.serve.registry import load_submodel

    gguf = export_gguf(project)
    sub = load_submodel(train_dir, name="sms")
    # The merged export (the adapter folded into the q8_0 weights): Zimo writes no LoRA GGUF.
    sub = SubModel(name="sms", metadata={**sub.metadata, "gguf": str(gguf)})
    be = make_backend(BackendConfig(kind="llamacpp", base=meta["base"], threads=threads))
    res, preds = _engine_leg(be, sub, texts, lat_n)
    return {**res, "threads": threads, "gguf": gguf.name}, preds


def leg_generate(quick: bool, threads: int) -> dict:
    """gecko-zh chat generation, tokens/s at batch 1 and 8: HF generate vs the serving engine."""
    import torch

    from zimo.models import load_causal_lm
    from zimo.prompts import ensure_chat_template
    from zimo.serve.backends.base import Job, SamplingParams
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig, SubModel

    new = 16 if quick else 48
    questions = [
        "用一句话介绍一下长城。",
        "What is the capital of Australia?",
        "写一首关于秋天的短诗。",
        "Explain what a hash table is.",
        "明天开会需要准备什么？",
        "Give me three tips for sleeping better.",
        "请解释什么是机器学习。",
        "How do I boil an egg?",
    ]
    out: dict = {"base": "gecko-zh", "max_new_tokens": new}
    model, tok = load_causal_lm("gecko-zh")
    ensure_chat_template(tok)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token

    def prompts(n):
        return [
            tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions[:n]
        ]  # fmt: skip

    plain = {}
    for bs in (1, 8):
        enc = tok(prompts(bs), return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=2, do_sample=False)
            t0 = time.perf_counter()
            model.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False)
            dt = time.perf_counter() - t0
        plain[f"batch{bs}_tok_per_s"] = round(bs * new / dt, 2)
    out["plain"] = plain
    del model
    be = make_backend(BackendConfig(kind="transformers", base="gecko-zh", threads=threads))
    be.start()
    be.add_model(SubModel(name="gecko-zh"))

    async def gen(q: str):
        ids = be.encode_chat("gecko-zh", [{"role": "user", "content": q}])
        params = SamplingParams(max_tokens=new, temperature=0.0, ignore_eos=True)
        return await be.submit(Job("gecko-zh", ids, params)).future

    async def run(bs: int) -> float:
        await gen(questions[0])
        t0 = time.perf_counter()
        res = await asyncio.gather(*(gen(q) for q in questions[:bs]))
        return sum(r.completion_tokens for r in res) / (time.perf_counter() - t0)

    try:
        out["zimo_serve"] = {
            f"batch{bs}_tok_per_s": round(asyncio.run(run(bs)), 2) for bs in (1, 8)
        }
    finally:
        be.close()
    return out


def child(args) -> dict:
    """One CPU kind: every leg, in this process (its env was set by the parent)."""
    import torch

    from zimo.hw import cpu_has_fast_bf16, serving_threads

    # One thread count for every leg (the serving engine's, unless --threads): on a busy 2-core
    # box two OpenMP threads spin-wait on each other and a forward took 15x longer (measured
    # while writing this benchmark), which would swamp the comparison.
    cores = args.threads or serving_threads()
    torch.set_num_threads(cores)
    project = Path(args.project)
    train_dir, test, meta = _project_rows(project)
    rows = test[: args.rows] if args.rows else test
    texts = [r["text"] for r in rows]
    lat_n = min(len(texts), 30 if args.quick else 100)
    res: dict = {
        "rows": len(texts),
        "latency_rows": lat_n,
        "torch_threads": cores,
        "bf16_path": cpu_has_fast_bf16(),
        "capability": torch.backends.cpu.get_cpu_capability(),
    }
    t0 = time.perf_counter()
    legs = {}
    legs["plain"], ref = leg_plain(train_dir, meta, texts, lat_n)
    print(f"  plain {legs['plain']}", file=sys.stderr, flush=True)
    preds = {}
    legs["zimo"], preds["zimo"] = leg_zimo(train_dir, meta, texts, lat_n, "default")
    print(f"  zimo {legs['zimo']}", file=sys.stderr, flush=True)
    # The other weights, side by side: the evidence for the per-kind default.
    alt = "zimo_fp32" if legs["zimo"]["weights"] == "int8" else "zimo_int8"
    if not args.no_alt:
        legs[alt], preds[alt] = leg_zimo(train_dir, meta, texts, lat_n, alt.split("_")[1])
        print(f"  {alt} {legs[alt]}", file=sys.stderr, flush=True)
        # int8 with the LoRA on top of the quantised base instead of merged: the evidence
        # for merging (the serving engine's path whenever several adapters are loaded).
        name = "zimo_int8_unmerged"
        legs[name], preds[name] = leg_zimo(train_dir, meta, texts, lat_n, "int8", merge=False)
        print(f"  {name} {legs[name]}", file=sys.stderr, flush=True)
    legs["zimo_serve"], preds["zimo_serve"] = leg_serve(train_dir, meta, texts, lat_n, cores)
    print(f"  zimo_serve {legs['zimo_serve']}", file=sys.stderr, flush=True)
    torch.set_num_threads(cores)
    if args.no_llamacpp:
        legs["llamacpp"], preds["llamacpp"] = {"skipped": "--no-llamacpp"}, None
    else:
        legs["llamacpp"], preds["llamacpp"] = leg_llamacpp(
            project, train_dir, meta, texts, lat_n, cores
        )
    print(f"  llamacpp {legs['llamacpp']}", file=sys.stderr, flush=True)
    torch.set_num_threads(cores)
    for name, p in preds.items():
        if p is not None:
            legs[name]["agreement_with_plain"] = round(sum(a == b for a, b in zip(p, ref, strict=True)) / len(ref), 4)  # fmt: skip
    if alt in preds:  # the issue's int8 rule: labels agree with fp32's on >= 99.5% of rows
        fp32, int8 = (preds["zimo"], preds[alt]) if alt == "zimo_int8" else (preds[alt], preds["zimo"])  # fmt: skip
        res["int8_agreement_with_fp32"] = round(sum(a == b for a, b in zip(fp32, int8, strict=True)) / len(fp32), 4)  # fmt: skip
    llama = legs["llamacpp"].get("p50_ms")
    for name in ("zimo", alt, "zimo_int8_unmerged", "zimo_serve", "llamacpp"):
        if name in legs and "p50_ms" in legs[name]:
            legs[name]["p50_speedup_vs_plain"] = round(
                legs["plain"]["p50_ms"] / legs[name]["p50_ms"], 2
            )
            legs[name]["batched_speedup_vs_plain"] = round(legs[name]["msgs_per_s"] / legs["plain"]["msgs_per_s"], 2)  # fmt: skip
            if llama and name != "llamacpp":
                legs[name]["p50_vs_llamacpp"] = round(legs[name]["p50_ms"] / llama, 2)
    res["legs"] = legs
    if not args.no_generate:
        torch.set_num_threads(cores)
        res["generate"] = leg_generate(args.quick, cores)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def ensure_project(path: str | None) -> Path:
    if path:
        return Path(path).resolve()
    from zimo.build import build

    tmp = Path(tempfile.mkdtemp(prefix="zimo-cpu-infer-")) / "sms-fraud"
    shutil.copytree(ROOT / "examples" / "sms-fraud", tmp, ignore=shutil.ignore_patterns(".zimo"))
    build(tmp)
    return tmp


def to_markdown(r: dict) -> str:
    lines = [
        "# CPU inference: plain transformers+peft vs Zimo vs llama.cpp",
        "",
        f"CPU: {r['cpu']['model']} ({r['cpu']['cores']} cores; flags: {', '.join(r['cpu']['flags'])}); "
        f"load average at start {r['loadavg_start']}, at end {r['loadavg_end']}. "
        f"{'Quick run. ' if r['quick'] else ''}Sub-model: {r['project']}.",
        "",
    ]
    for kind, res in r["kinds"].items():
        lines += [
            f"## {kind} ({'forced: ' + json.dumps(r['forced'][kind]) if r['forced'][kind] else 'as detected'}; "
            f"torch capability {res.get('capability')}, bf16 path {res.get('bf16_path')})",
            "",
            f"{res.get('rows')} test messages, latency over the first {res.get('latency_rows')}.",
            "",
            "| leg | p50 ms | p99 ms | msgs/s batched | agreement with plain | p50 speed-up | batched speed-up | p50 / llama.cpp's |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, leg in res.get("legs", {}).items():
            if "skipped" in leg:
                lines.append(f"| {name} | skipped: {leg['skipped']} | | | | | | |")
                continue
            lines.append(
                f"| {name} | {leg['p50_ms']} | {leg['p99_ms']} | {leg['msgs_per_s']} | "
                f"{leg.get('agreement_with_plain', '')} | {leg.get('p50_speedup_vs_plain', '')} | "
                f"{leg.get('batched_speedup_vs_plain', '')} | {leg.get('p50_vs_llamacpp', '')} |"
            )
        weights = res.get("legs", {}).get("zimo", {})
        if weights:
            lines += ["", f"`zimo`'s base weights here: {weights.get('weights')} ({weights.get('weights_reason')})."]  # fmt: skip
        for name, leg in res.get("legs", {}).items():
            if leg.get("merged_copy_mb") is not None:
                lines += [f"`{name}`: adapter merged into the int8 base; the merged copy holds {leg['merged_copy_mb']} MB of its own besides the unmerged model's {leg['unmerged_int8_mb']} MB (shared embeddings, head and unadapted layers)."]  # fmt: skip
        if "int8_agreement_with_fp32" in res:
            lines += [f"int8 labels agreeing with fp32's: {res['int8_agreement_with_fp32']} (rule: >= 0.995)."]  # fmt: skip
        g = res.get("generate")
        if g:
            lines += [
                "",
                f"Generation, {g['base']}, {g['max_new_tokens']} new tokens, tokens/s: "
                f"HF generate {g['plain']}, serving engine {g['zimo_serve']}.",
            ]
        if "error" in res:
            lines += ["", f"failed: {res['error']}"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", help="a built sms-fraud project (else one is built in /tmp)")
    ap.add_argument("--quick", action="store_true", help="150 test rows, 30 latency samples")
    ap.add_argument("--rows", type=int, default=None, help="test rows (default: all; quick 150)")
    ap.add_argument("--kinds", default="native,avx2", help="CPU kinds to run: native,avx2")
    ap.add_argument(
        "--no-alt", action="store_true", help="skip the leg on the other weights (int8/fp32)"
    )
    ap.add_argument("--no-generate", action="store_true", help="skip the gecko-zh generation leg")
    ap.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp leg")
    ap.add_argument(
        "--out", default=None, help="JSON path (default results/cpu_infer[.quick].json)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores-1)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick and args.rows is None:
        args.rows = 150
    if args.child:
        print(json.dumps(child(args)))
        return
    from zimo.hw import cpu_info

    project = ensure_project(args.project)
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None and not args.no_llamacpp:
        export_gguf(project)  # once, outside the timed children
    out = Path(args.out or RESULTS / ("cpu_infer.quick.json" if args.quick else "cpu_infer.json"))
    result: dict = {
        "cpu": cpu_info(),
        "quick": args.quick,
        "project": str(project),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "kinds": {},
        "forced": {},
    }
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        cmd = [sys.executable, __file__, "--child", "--project", str(project)]
        cmd += ["--quick"] * args.quick + ["--no-alt"] * args.no_alt
        cmd += ["--no-generate"] * args.no_generate + ["--no-llamacpp"] * args.no_llamacpp
        if args.rows:
            cmd += ["--rows", str(args.rows)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"{kind}: running", file=sys.stderr, flush=True)
        result["forced"][kind], result["kinds"][kind] = run_kind(cmd, kind)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    from zimo.fileio import write_bytes_atomic, write_json_atomic

    write_json_atomic(out, result)
    write_bytes_atomic(out.with_suffix(".md"), to_markdown(result).encode("utf-8"))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
