"""AI-written-text detection on HC3 Chinese (dev): quality per score, robustness, and speed.

    .venv/bin/python benchmarks/detect.py [--quick] [--model gecko-zh] [--budget 256]

Writes ``benchmarks/results/detect.json`` and ``detect.md`` (``--quick``: into the git-ignored
``benchmarks/results/cache/``), with:

- AUROC and TPR at 1% / 5% FPR for every zero-shot score, and for the ``combined`` logistic
  score reported OUT-OF-FOLD (5-fold CV; never in-sample), on all documents and on those with
  at least ``min_tokens`` tokens; AUROC by length bucket.
- Robustness probes the detector was never fitted on: (a) human HC3 answers paraphrased by the
  embedded gecko-zh (labelled machine) against their human originals; (b) GPT-4 answers from
  alpaca_zh (another generator and domain) against HC3 human answers, taken from the answers
  the machine-style adapter was not trained on.
- The scorer carries the shipped machine-style adapter (``--style-adapter``, see
  :mod:`zimo.guard.style`); every set is also scored by the plain model, side by side.
- Speed, side by side in one run on the same documents: a plain transformers fp32
  implementation, one document at a time (full log_softmax; rank by argsort as in the
  Fast-DetectGPT reference code) against Zimo's batched one-pass scorer; docs/s, the ratio and
  the AUROC of both on those documents.
- Rewritten text (``--si N``, :mod:`detect_si`): every HC3-Plus SI text of >= 80 characters
  and N shorter ones, every score by length band, the shipped combined score (fitted on QA dev
  only), the hidden-state head, and combined models cross-fitted on the SI file; the speed
  section then also times this version's scorer against the previous one in the same rounds.
- English (``--english N``, :mod:`detect_en`): an English calibration of the shipped form
  fitted on licensed human text and the embedded models' rewrites (:mod:`detect_en_dev`),
  measured on N GPT-4 answers and N held-out news paragraphs plus the Self-Instruct seed
  outputs; ``--write-en-calibration`` ships it only if it passes ``ship_decision`` (it did
  not: it did not transfer to GPT-4 text). The English verdict that ships is a zero-shot score
  calibrated on human text only: ``benchmarks/detect_en.py`` (its ``main``).
- The calibration shipped with Zimo (``src/zimo/guard/calibrations/<model>.json``) is written
  from the full run (not ``--quick``, not ``--qa-sample``, unless ``--write-calibration``).

Per-document token statistics are cached in ``benchmarks/results/cache/`` so a rerun is fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache"
sys.path.insert(0, str(ROOT / "src"))

from zimo.guard.lm_stats import (  # noqa: E402
    ALL_STATS,
    TokenStats,
    compute_token_stats,
    reference_token_stats,
    tokenize,
)
from zimo.guard.scores import (  # noqa: E402
    FEATURES,
    LEGACY_FEATURES,
    SIMPLE_SCORES,
    combined_from_stats,
    feature_matrix,
    fit_combined,
    out_of_fold_combined,
    simple_score,
    uses_hidden,
)

if "--precompute" not in sys.argv:  # the device mode needs no pydantic / sklearn
    from zimo.guard.calibrate import calibrate_from_stats  # noqa: E402
    from zimo.guard.calibration import (  # noqa: E402
        load_calibration,
        save_calibration,
        shipped_path,
        tpr_at_fpr,
    )
    from zimo.guard.config import GuardConfig  # noqa: E402
    from zimo.guard.detect import (  # noqa: E402
        Detector,
        load_scorer,
        pick_threads,
        torch_threads,
    )
    from zimo.guard.style import adapter_id, resolve_adapter, split_alpaca  # noqa: E402

BUCKETS = [(1, 32), (32, 64), (64, 128), (128, 256), (256, 10**9)]


def auroc(scores, labels) -> float:
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, float), np.asarray(labels)
    ok = ~np.isnan(s)
    if len(set(y[ok])) < 2:
        return math.nan
    return float(roc_auc_score(y[ok], s[ok]))


def metrics(scores, labels) -> dict:
    return {
        "auroc": auroc(scores, labels),
        "tpr_at_1fpr": tpr_at_fpr(scores, labels, 0.01),
        "tpr_at_5fpr": tpr_at_fpr(scores, labels, 0.05),
        "n": int(len(labels)),
    }


# ------------------------------------------------------------------------- cached statistics


def stats_tag(model: str, budget: int, style: str | None) -> str:
    """Cache folder name of fp32 statistics: the scorer (with its adapter id) and the budget."""
    return f"{model}{'+' + style if style else ''}-{budget}-fp32"


def _key(text: str, tag: str) -> str:
    return hashlib.sha1(f"{tag}\0{text}".encode()).hexdigest()


def cached_stats(
    det: Detector, texts: list[str], model: str, tag: str, console
) -> list[TokenStats]:
    """Token stats per text, computed in chunks (so an interrupted run resumes) and cached."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    folder = CACHE / "detect" / tag
    folder.mkdir(parents=True, exist_ok=True)
    out: list[TokenStats | None] = [None] * len(texts)
    todo = []
    for i, t in enumerate(texts):
        f = folder / f"{_key(t, tag)}.npz"
        z = np.load(f) if f.is_file() else None
        if z is not None and "hidden" in z.files:
            out[i] = TokenStats(
                n_tokens=int(z["n_tokens"]), hidden=z["hidden"], **{k: z[k] for k in ALL_STATS}
            )
        else:
            todo.append(i)
    if todo:
        console.print(
            f"  computing stats for {len(todo)} documents ({len(texts) - len(todo)} cached)"
        )
        with Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(f"  {tag}", total=len(todo))
            for s in range(0, len(todo), 32):
                chunk = todo[s : s + 32]
                m, tok = load_scorer(model, "fp32", det.style(model))
                with torch_threads(det.threads()):
                    stats = compute_token_stats(
                        m,
                        tokenize([texts[i] for i in chunk], tok, det.config.token_budget),
                        need=ALL_STATS,
                        batch_size=det.config.batch_size,
                        pool_hidden=True,
                    )
                for i, st in zip(chunk, stats, strict=True):
                    np.savez(
                        folder / f"{_key(texts[i], tag)}.npz",
                        n_tokens=st.n_tokens,
                        hidden=st.hidden,
                        **st.to_dict(),
                    )
                    out[i] = st
                bar.advance(task, len(chunk))
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------- probes


PARA_SHOTS = (
    "原文：这个问题要看具体情况，一般来说多喝水、多休息就可以慢慢恢复，不用太担心。\n"
    "改写：这要视情况而定。通常只要多补充水分、注意休息，身体就会逐渐好转，无需过度担忧。\n\n"
    "原文：我觉得还是先去医院做个检查比较好，确定原因以后再对症治疗。\n"
    "改写：建议先到医院检查一下，查明病因后再进行针对性的治疗。\n\n"
)


def paraphrase_pool(seed: int = 0) -> list[str]:
    """Human HC3 dev answers of 80-300 characters, shuffled: the texts to paraphrase."""
    rows = [json.loads(x) for x in (DATA / "hc3_zh_qa_dev.jsonl").read_text("utf-8").splitlines()]
    human = [r["text"] for r in rows if r["label"] == 0 and 80 <= len(r["text"]) <= 300]
    random.Random(seed).shuffle(human)
    return human


# Decoding of each paraphrase probe: (temperature, top_p, top_k, repetition_penalty); top_k
# None = the model's generation_config. Plain sampling (T=1, no top-p/top-k) was tried as a
# "less typical for the scorer" variant: Gemma 3 270M then writes fluent-looking text unrelated
# to the original (difflib ratio 0.05-0.10 to it), i.e. not a paraphrase, so it is not a probe.
PARA_DECODING = {"default": (0.8, 0.95, None, 1.05)}


def generate_paraphrases(
    model,
    tok,
    pool: list[str],
    n: int,
    seed: int,
    batch: int = 8,
    progress=None,
    variant: str = "default",
) -> list[dict]:
    """Human answers rewritten by gecko-zh (sampled; ``PARA_DECODING[variant]``).

    Gemma 3 270M is a base model, so the prompt is a two-shot "原文 / 改写" pattern. Outputs that
    copy the original (difflib ratio >= 0.8) or are shorter than 40 characters are dropped.
    """
    from difflib import SequenceMatcher

    import torch

    device = next(model.parameters()).device
    out: list[dict] = []
    tok.padding_side = "left"
    try:
        for s in range(0, len(pool), batch):
            chunk = pool[s : s + batch]
            enc = tok(
                [PARA_SHOTS + f"原文：{t}\n改写：" for t in chunk],
                return_tensors="pt",
                padding=True,
            ).to(device)
            torch.manual_seed(seed + s)
            with torch.inference_mode():
                temperature, top_p, top_k, rep = PARA_DECODING[variant]
                gen = model.generate(
                    **enc,
                    stop_strings=["\n"],
                    tokenizer=tok,
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    **({} if top_k is None else {"top_k": top_k}),
                    max_new_tokens=200,
                    repetition_penalty=rep,
                    pad_token_id=tok.pad_token_id,
                )
            for orig, ids in zip(chunk, gen[:, enc["input_ids"].shape[1] :], strict=True):
                text = tok.decode(ids, skip_special_tokens=True).split("\n")[0].strip()
                copy = SequenceMatcher(None, orig, text).ratio()
                if len(text) >= 40 and copy < 0.8:
                    out.append({"original": orig, "paraphrase": text, "copy_ratio": copy})
            if progress:
                progress(len(chunk))
            if len(out) >= n:
                break
    finally:
        tok.padding_side = "right"
    return out[:n]


def paraphrase_probe(n: int, seed: int, console, variant: str = "default") -> list[dict]:
    """The paraphrase probe set, generated once on this machine (or by --precompute on a
    device machine) and cached in benchmarks/results/cache/."""
    suffix = "" if variant == "default" else f"_{variant}"
    path = CACHE / f"paraphrase_gecko-zh{suffix}_{n}_{seed}.jsonl"
    if path.is_file():
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    import torch
    from rich.progress import Progress

    from zimo.hw import cpu_has_fast_bf16

    # Generation only writes the probe texts (scored later in fp32): the bf16 copy is faster.
    bf16 = cpu_has_fast_bf16()
    model, tok = load_scorer("gecko-zh", "bf16" if bf16 else "fp32")
    pool = paraphrase_pool(seed)[: int(n * 1.6)]
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    with Progress(console=console) as bar, torch_threads(pick_threads()), amp:
        task = bar.add_task(f"  paraphrasing with gecko-zh ({variant})", total=len(pool))
        out = generate_paraphrases(
            model, tok, pool, n, seed, progress=lambda k: bar.advance(task, k), variant=variant
        )
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in out), encoding="utf-8")
    return out


def probe_texts(texts: list[str], y: np.ndarray, n_alpaca: int) -> tuple[list[str], list[str]]:
    """(HC3 human, alpaca_zh GPT-4) texts of the unseen-generator probe."""
    # The answers the machine-style adapter was not trained on (zimo.guard.style.split_alpaca).
    _, held = split_alpaca(json.loads((DATA / "alpaca_zh_1k.json").read_text("utf-8")))
    mt = held[:n_alpaca]
    ht = [t for t, lab in zip(texts, y, strict=True) if lab == 0 and len(t) >= 60][:n_alpaca]
    return ht, mt


def precompute(
    folder: Path, out: Path, device: str, budget: int, n_para: int, n_alpaca: int
) -> None:
    """Device mode: fp32 token statistics (and the paraphrase probe) on an accelerator.

    ``folder`` holds the gecko-zh GGUF in parts (``gguf.part*``), ``tokenizer.json.xz`` and
    ``tokenizer_config.json`` (Zimo's converted tokenizer) and ``texts.json``; writes
    ``stats.npz`` (one entry per text key) and the paraphrases into ``out``. The statistics are
    the same fp32 computation as on the CPU; only speed is measured on the CPU.
    """
    import lzma
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    mdir = folder / "model"
    mdir.mkdir(exist_ok=True)
    extra = folder / "extra" if (folder / "extra").is_dir() else folder
    gguf = mdir / "gecko-zh.gguf"
    if not gguf.is_file():
        with open(gguf, "wb") as f:
            for part in sorted(folder.glob("gguf.part*")):
                with open(part, "rb") as p:
                    shutil.copyfileobj(p, f)
    (mdir / "tokenizer.json").write_bytes(
        lzma.decompress((extra / "tokenizer.json.xz").read_bytes())
    )
    shutil.copy(extra / "tokenizer_config.json", mdir / "tokenizer_config.json")
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(str(mdir))
    model = AutoModelForCausalLM.from_pretrained(
        str(mdir), gguf_file=gguf.name, dtype=torch.float32
    )
    model = model.to(device).eval()
    print(f"loaded in {time.time() - t0:.1f}s", flush=True)
    job = json.loads((extra / "texts.json").read_text("utf-8"))
    para = generate_paraphrases(model, tok, job["para_pool"], n_para, 0, batch=64)
    (out / f"paraphrase_gecko-zh_{n_para}_0.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in para), encoding="utf-8"
    )
    print(f"paraphrases {len(para)} in {time.time() - t0:.1f}s", flush=True)
    texts = job["texts"] + [p["paraphrase"] for p in para]
    tag = job["tag"]
    stats = compute_token_stats(
        model, tokenize(texts, tok, budget), batch_size=64, max_batch_tokens=64 * 260
    )
    arrays = {}
    for t, st in zip(texts, stats, strict=True):
        k = _key(t, tag)
        arrays[f"{k}.n_tokens"] = np.array(st.n_tokens)
        for name, v in st.to_dict().items():
            arrays[f"{k}.{name}"] = v
    np.savez_compressed(out / "stats.npz", **arrays)
    print(f"stats for {len(texts)} texts in {time.time() - t0:.1f}s", flush=True)


def import_precomputed(path: Path, tag: str) -> int:
    """Unpack ``stats.npz`` from --precompute into the per-document cache."""
    z = np.load(path)
    folder = CACHE / "detect" / tag
    folder.mkdir(parents=True, exist_ok=True)
    keys = {k.split(".")[0] for k in z.files}
    for k in keys:
        np.savez(
            folder / f"{k}.npz",
            n_tokens=z[f"{k}.n_tokens"],
            **{n: z[f"{k}.{n}"] for n in ALL_STATS},
        )
    return len(keys)


# ------------------------------------------------------------------------- speed


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def thread_probe(model, ids: list[int], cores: int) -> dict:
    """Why more threads can be slower here: one forward pass, 1 thread vs every core."""
    import torch

    from zimo.guard.detect import torch_threads

    x = torch.tensor([ids])
    out = {"loadavg_before": list(os.getloadavg())}
    with torch.inference_mode():
        for n in sorted({1, cores}) * 2:
            with torch_threads(n):
                _, w, c = _timed(lambda: model(input_ids=x).logits)
            out.setdefault(f"threads_{n}", []).append({"wall_s": w, "cpu_s": c})
    out["tokens"] = len(ids)
    return out


def speed(
    det: Detector,
    texts: list[str],
    labels: list[int],
    model_name: str,
    console,
    old_model: dict,
    new_model: dict,
) -> dict:
    """Reference (plain transformers fp32, one document at a time: full logits, log_softmax,
    rank by argsort) vs Zimo's detector (batched, bf16 where it measures faster, only the
    statistics the score needs), interleaved in 4 rounds on the same documents and the same
    thread count. Wall and CPU time are both kept: on a shared machine wall time depends on the
    neighbours, CPU time much less. In the same rounds: the previous release's scorer
    (``old_model``: five features) against this one's (``new_model``: the current calibration's
    combined model)."""

    from zimo.guard.detect import torch_threads
    from zimo.guard.scores import FEATURE_NEEDS

    model, tok = load_scorer(model_name, "fp32", det.style(model_name))
    ids = tokenize(texts, tok, det.config.token_budget)
    threads = det.threads()
    use_bf16 = det.uses_bf16(model_name)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    probe = thread_probe(model, ids[0], cores or 1)
    groups = [list(range(i, len(texts), 4)) for i in range(4)]
    t = {"ref": [0.0, 0.0], "zimo": [0.0, 0.0], "zimo_fp32": [0.0, 0.0], "zimo_new": [0.0, 0.0]}
    ref: list[TokenStats | None] = [None] * len(texts)
    fast: list[TokenStats | None] = [None] * len(texts)
    new: list[TokenStats | None] = [None] * len(texts)
    load = [list(os.getloadavg())]

    def add(key, w, c):
        t[key][0] += w
        t[key][1] += c

    with torch_threads(threads):
        for gi, g in enumerate(groups):
            console.print(f"  speed round {gi + 1}/4 ({len(g)} docs, {threads} threads)")
            # The previous release's scorer (its combined score: five features) and this one's
            # (the current calibration's features; the pass keeps the pooled hidden state only
            # if the combined model reads it), in alternating order so neither always runs on
            # a warm cache.
            pair = [("zimo", old_model, fast), ("zimo_new", new_model, new)]
            for key, comb, into in pair if gi % 2 == 0 else pair[::-1]:
                res, w, c = _timed(
                    lambda g=g, comb=comb: _score_with(
                        model, [ids[i] for i in g], det, use_bf16, comb, FEATURE_NEEDS
                    )
                )
                add(key, w, c)
                for i, r in zip(g, res, strict=True):
                    into[i] = r
            for i in g:
                ref[i], w, c = _timed(lambda i=i: reference_token_stats(model, ids[i]))
                add("ref", w, c)
            if use_bf16:  # Zimo's batched path in fp32 too, to separate batching from bf16
                _, w, c = _timed(
                    lambda g=g: compute_token_stats(
                        model,
                        [ids[i] for i in g],
                        need=FEATURE_NEEDS,
                        batch_size=det.config.batch_size,
                    )
                )
                add("zimo_fp32", w, c)
            load.append(list(os.getloadavg()))
    n = len(texts)
    n_tok = sum(len(x) - 1 for x in ids)

    def entry(key):
        w, c = t[key]
        return {"wall_s": w, "cpu_s": c, "docs_per_s": n / w, "docs_per_cpu_s": n / c}

    out = {
        "docs": n,
        "tokens": n_tok,
        "threads": threads,
        "loadavg": load,
        "thread_probe": probe,
        "reference_fp32_one_at_a_time": entry("ref"),
        "zimo": entry("zimo") | {"bf16": use_bf16, "batch_size": det.config.batch_size},
        "speedup": t["ref"][0] / t["zimo"][0],
        "new_scorer": entry("zimo_new")
        | {
            "what": "this version's combined score (features of the current calibration)",
            "ratio_wall_vs_old": t["zimo"][0] / t["zimo_new"][0],
            "ratio_cpu_vs_old": t["zimo"][1] / t["zimo_new"][1],
        },
        "speedup_cpu_time": t["ref"][1] / t["zimo"][1],
        "scores": {},
    }
    if use_bf16:
        out["zimo_fp32_batched"] = entry("zimo_fp32") | {
            "speedup_vs_reference": t["ref"][0] / t["zimo_fp32"][0],
            "speedup_cpu_time_vs_reference": t["ref"][1] / t["zimo_fp32"][1],
        }
    for name in [*SIMPLE_SCORES, "combined"]:
        if name == "combined":
            # The old scorer's combined score (its five features) on both implementations.
            a = combined_from_stats(ref, old_model)
            b = combined_from_stats(fast, old_model)
        else:
            a = np.array([simple_score(name, s) for s in ref])
            b = np.array([simple_score(name, s) for s in fast])
        out["scores"][name] = {
            "auroc_reference": auroc(a, labels),
            "auroc_zimo": auroc(b, labels),
            "auroc_abs_diff": abs(auroc(a, labels) - auroc(b, labels)),
            "pearson": float(np.corrcoef(a, b)[0, 1]),
            "max_abs_score_diff": float(np.nanmax(np.abs(a - b))),
        }
    return out


# ------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="AI-text detection benchmark (HC3 Chinese dev)")
    ap.add_argument("--quick", action="store_true", help="subsample; < ~2 minutes when cached")
    ap.add_argument("--model", default="gecko-zh")
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--min-tokens", type=int, default=None)
    ap.add_argument("--speed-docs", type=int, default=None)
    ap.add_argument("--paraphrase", type=int, default=None, help="paraphrase probe size (0=off)")
    ap.add_argument(
        "--cross", type=int, default=None, help="pairs scored by gecko (other model), 0=off"
    )
    ap.add_argument("--alpaca", type=int, default=None, help="GPT-4 alpaca_zh probe size (0=off)")
    ap.add_argument("--make-job", type=Path, help="write texts.json for --precompute and exit")
    ap.add_argument("--precompute", type=Path, help="device mode: folder from --make-job + model")
    ap.add_argument("--out", type=Path, help="--precompute: where to write stats.npz")
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--style-adapter", default="auto", help="guard.style_adapter: auto (shipped), off, folder"
    )
    ap.add_argument("--import-stats", type=Path, help="stats.npz from --precompute into the cache")
    ap.add_argument(
        "--si", type=int, default=None, help="SI texts shorter than 80 chars to add (0 = no SI)"
    )
    ap.add_argument(
        "--english", type=int, default=None, help="English human texts (and as many GPT-4 ones)"
    )
    ap.add_argument(
        "--en-dev-human", type=int, default=450, help="English fit-split human paragraphs"
    )
    ap.add_argument(
        "--write-en-calibration",
        action="store_true",
        help="write the English (gecko) calibration, if it passes the held-out checks",
    )
    ap.add_argument("--qa-sample", type=int, default=0, help="score only N QA dev docs (0 = all)")
    ap.add_argument(
        "--qa-cached",
        action="store_true",
        help="only the QA dev docs already in the stats cache (a loaded machine's partial run)",
    )
    ap.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument(
        "--write-calibration",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write the shipped calibration (default: full runs only)",
    )
    ap.add_argument("--name", default="detect", help="results file stem")
    args = ap.parse_args(argv)
    quick = args.quick
    speed_docs = args.speed_docs if args.speed_docs is not None else (8 if quick else 32)
    n_para = args.paraphrase if args.paraphrase is not None else (0 if quick else 150)
    n_cross = args.cross if args.cross is not None else (0 if quick else 100)
    n_alpaca = args.alpaca if args.alpaca is not None else (40 if quick else 200)
    # Quality statistics are always fp32 (what a plain implementation computes); the speed
    # comparison measures Zimo's runtime choice (bf16 where faster) against it.
    style = None
    if not args.precompute:
        style = adapter_id(resolve_adapter(args.style_adapter, args.model))
    tag = stats_tag(args.model, args.budget, style)
    if style and (args.make_job or args.import_stats):
        ap.error("the device mode scores the base model only: add --style-adapter off")
    if args.precompute:
        precompute(args.precompute, args.out, args.device, args.budget, n_para, n_alpaca)
        return {}
    if args.make_job or args.import_stats:
        if args.import_stats:
            print(f"imported {import_precomputed(args.import_stats, tag)} documents")
            return {}
        rows = [
            json.loads(x) for x in (DATA / "hc3_zh_qa_dev.jsonl").read_text("utf-8").splitlines()
        ]
        texts = [r["text"] for r in rows]
        ht, mt = probe_texts(texts, np.array([r["label"] for r in rows]), n_alpaca)
        job = {"tag": tag, "texts": texts + mt, "para_pool": paraphrase_pool(0)[: int(n_para * 2)]}
        args.make_job.mkdir(parents=True, exist_ok=True)
        (args.make_job / "texts.json").write_text(json.dumps(job, ensure_ascii=False), "utf-8")
        print(f"job: {len(job['texts'])} texts, {len(job['para_pool'])} to paraphrase")
        return {}

    from rich.console import Console

    from zimo.hw import cpu_info, set_threads

    threads = set_threads()
    console = Console(stderr=True)
    rows = [json.loads(x) for x in (DATA / "hc3_zh_qa_dev.jsonl").read_text("utf-8").splitlines()]
    if quick:
        rng = random.Random(0)
        rows = rng.sample(rows, 160)
    elif args.qa_sample:
        # The same shuffled prefix every run, so the cache of a smaller run is reused.
        random.Random(0).shuffle(rows)
        rows = rows[: args.qa_sample]
    elif args.qa_cached:
        # The answers whose statistics earlier (interrupted) runs cached. Those runs score the
        # file in --qa-sample's shuffled order, so what they reached is a random subset, not
        # an easy or a hard one.
        folder = CACHE / "detect" / tag
        rows = [r for r in rows if (folder / f"{_key(r['text'], tag)}.npz").is_file()]
        args.qa_sample = len(rows)
    n_si = args.si if args.si is not None else (200 if quick else 800)
    write_cal = args.write_calibration
    if write_cal is None:
        write_cal = not (quick or args.qa_sample)
    texts = [r["text"] for r in rows]
    y = np.array([int(r["label"]) for r in rows])
    cfg = GuardConfig(
        model=args.model,
        token_budget=args.budget,
        score="logrank",
        style_adapter=args.style_adapter,
    )
    det = Detector(cfg)
    t0 = time.perf_counter()
    load_scorer(args.model, "fp32", det.style(args.model))
    load_s = time.perf_counter() - t0
    bf16 = det.uses_bf16(args.model)
    console.print(
        f"[bold]detect[/bold]: {len(texts)} docs, model {args.model}, bf16={bf16}, "
        f"{threads} threads"
    )

    stats = cached_stats(det, texts, args.model, tag, console)
    n_tok = np.array([s.n_tokens for s in stats])
    min_tokens = args.min_tokens or cfg.min_tokens
    scores = {name: np.array([simple_score(name, s) for s in stats]) for name in SIMPLE_SCORES}
    X = feature_matrix(stats)
    X_old = feature_matrix(stats, LEGACY_FEATURES)
    scores["combined, previous release (out-of-fold)"] = out_of_fold_combined(
        X_old, y, names=LEGACY_FEATURES
    )
    Xh = feature_matrix(stats, FEATURES, True)
    scores["combined, seven features only (out-of-fold)"] = out_of_fold_combined(X, y)
    scores["combined + hidden head, one joint model (out-of-fold)"] = out_of_fold_combined(
        Xh, y, hidden=True
    )
    # This version's combined score: the features model plus a hidden-state head.
    scores["combined (out-of-fold)"] = out_of_fold_combined(Xh, y, head=True)
    long = n_tok >= min_tokens
    quality = {
        name: {"all": metrics(s, y), f"tokens>={min_tokens}": metrics(s[long], y[long])}
        for name, s in scores.items()
    }
    by_len = {}
    for lo, hi in BUCKETS:
        m = (n_tok >= lo) & (n_tok < hi)
        key = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
        by_len[key] = {
            "n": int(m.sum()),
            "machine_share": float(y[m].mean()) if m.any() else None,
            **{name: auroc(s[m], y[m]) for name, s in scores.items()},
        }

    # What abstaining below a length buys: metrics on the documents kept, and what is left out.
    abstain = {}
    for lo in (1, 32, 48, 64, 96, 128):
        keep = n_tok >= lo
        abstain[str(lo)] = {
            "kept": int(keep.sum()),
            "excluded": int((~keep).sum()),
            "excluded_machine": int((~keep & (y == 1)).sum()),
            **{
                name: metrics(scores[name][keep], y[keep])
                for name in ("logrank", "combined (out-of-fold)")
            },
        }

    # Fit the shipped combined model on the whole dev file (documents >= min_tokens).
    old_comb = fit_combined(X_old[long], y[long], names=LEGACY_FEATURES)
    cal = calibrate_from_stats(
        stats,
        y,
        model=args.model,
        token_budget=args.budget,
        min_tokens=min_tokens,
        target_fpr=0.01,
        source={"dev": "hc3_zh_qa_dev.jsonl", "n": len(texts), "stats_dtype": "fp32"},
        style_adapter=style,
        hidden_head=True,
    )
    comb = cal["scores"]["combined"]["model"]
    if write_cal:
        save_calibration(cal, shipped_path(args.model))
    si = None
    if n_si:
        from detect_si import si_rows, si_section

        si_r = si_rows(DATA, n_si)
        si_stats = cached_stats(det, [r["text"] for r in si_r], args.model, tag, console)
        # "Shipped" = what `zimo guard score` uses: this run's model only if it was just
        # written as the shipped calibration, else the shipped file's (a refit on a QA sample
        # is a candidate, reported under its own name).
        shipped = comb
        if not write_cal:
            now = load_calibration(args.model)
            if now.get("style_adapter") == style:
                shipped = now["scores"]["combined"]["model"]
        si = si_section(si_r, si_stats, stats, y, shipped, min_tokens)
    en = None
    n_en = args.english if args.english is not None else (40 if quick else 200)
    if n_en:
        from detect_en import en_dev_rows, en_section, en_test_rows

        en_det = Detector(GuardConfig(model="gecko", style_adapter="off"))
        en_tag = stats_tag("gecko", args.budget, None)
        dev_r = en_dev_rows(args.en_dev_human)
        test_r = en_test_rows(n_en)
        dev_s = cached_stats(en_det, [r["text"] for r in dev_r], "gecko", en_tag, console)
        test_s = cached_stats(en_det, [r["text"] for r in test_r], "gecko", en_tag, console)
        source = {"dev": "benchmarks/detect_en_dev.py", "n": len(dev_r), "stats_dtype": "fp32"}
        en, en_cal = en_section(dev_r, dev_s, test_r, test_s, min_tokens, source)
        if args.write_en_calibration and en["decision"]["ship"]:
            save_calibration(en_cal, shipped_path("gecko"))
            en["calibration"] = str(shipped_path("gecko").relative_to(ROOT))
    # Speed first, on fresh (uncached) work, side by side.
    rng = random.Random(1)
    sp_idx = sorted(rng.sample(range(len(texts)), min(speed_docs, len(texts))))
    speed_file = CACHE / f"detect_speed_{tag}.json"
    if sp_idx:
        sp = speed(
            det,
            [texts[i] for i in sp_idx],
            [int(y[i]) for i in sp_idx],
            args.model,
            console,
            old_comb,
            comb,
        )
        speed_file.write_text(json.dumps(sp, indent=1))
        console.print(
            f"  speed: zimo {sp['zimo']['docs_per_s']:.2f} docs/s vs reference "
            f"{sp['reference_fp32_one_at_a_time']['docs_per_s']:.2f} ({sp['speedup']:.2f}x)"
        )
    elif speed_file.is_file():  # --speed-docs 0: reuse the last measured speed
        sp = json.loads(speed_file.read_text())
        sp["reused_from_cache"] = True
    else:
        sp = None

    probes = {}
    probe_sets: dict[str, tuple[list[str], np.ndarray]] = {}  # for the no-adapter comparison
    if n_para:
        para = paraphrase_probe(n_para, 0, console)
        ptexts = [p["original"] for p in para] + [p["paraphrase"] for p in para]
        py = np.array([0] * len(para) + [1] * len(para))
        pstats = cached_stats(det, ptexts, args.model, tag, console)
        probes["paraphrase_gecko_zh"] = _probe_metrics(pstats, py, comb, min_tokens)
        probe_sets["paraphrase_gecko_zh"] = (ptexts, py)
        probes["paraphrase_gecko_zh"]["examples"] = para[:3]
        probes["paraphrase_gecko_zh"]["caveat"] = (
            "paraphrases written by gecko-zh itself, the scorer model: easier than text from "
            "an unseen paraphraser; originals are dev-file human answers"
        )
    if n_cross:
        probes.update(cross_scorer_probes(det, texts, y, n_cross, console))
    if n_alpaca:
        if quick:  # the probe texts come from the full file, not the subsample
            allrows = [
                json.loads(x)
                for x in (DATA / "hc3_zh_qa_dev.jsonl").read_text("utf-8").splitlines()
            ]
            ht, mt = probe_texts(
                [r["text"] for r in allrows], np.array([r["label"] for r in allrows]), n_alpaca
            )
        else:
            ht, mt = probe_texts(texts, y, n_alpaca)
        astats = cached_stats(det, ht + mt, args.model, tag, console)
        ay = np.array([0] * len(ht) + [1] * len(mt))
        probes["alpaca_zh_gpt4_vs_hc3_human"] = _probe_metrics(astats, ay, comb, min_tokens)
        probe_sets["alpaca_zh_gpt4_vs_hc3_human"] = (ht + mt, ay)
        probes["alpaca_zh_gpt4_vs_hc3_human"]["caveat"] = (
            "machine = GPT-4 answers to other questions (generator and domain differ from HC3); "
            "human = HC3 dev answers"
        )

    ablation = None
    if style and (args.ablation if args.ablation is not None else not args.qa_sample):
        ablation = without_style_adapter(
            cfg, texts, y, probe_sets, args.model, stats_tag(args.model, args.budget, None), console
        )
    mean_tokens = float(n_tok.mean())
    result = {
        "benchmark": "detect",
        "quick": quick,
        "data": {
            "file": "hc3_zh_qa_dev.jsonl",
            "docs": len(texts),
            "machine": int(y.sum()),
            "mean_tokens": mean_tokens,
            "token_budget": args.budget,
        },
        "model": args.model,
        "style_adapter": style,
        "bf16": bf16,
        "model_load_s": load_s,
        "threads": threads,
        "cpu": cpu_info(),
        "min_tokens": min_tokens,
        "quality": quality,
        "auroc_by_length_tokens": by_len,
        "abstain_below_tokens": abstain,
        "probes": probes,
        "without_style_adapter": ablation,
        "speed": sp,
        "projection": None if sp is None else projection(sp),
        "combined_features": comb["features"],
        "combined_hidden_dims": comb.get("hidden", 0),
        "combined_coef": dict(zip(comb["features"], comb["coef"], strict=False)),
        "qa_sample": args.qa_sample or None,
        "si": si,
        "english": en,
    }
    if write_cal:
        result["calibration"] = str(shipped_path(args.model).relative_to(ROOT))
    out_dir = CACHE if quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    (out_dir / f"{args.name}.md").write_text(markdown(result))
    console.print(markdown(result))
    return result


def projection(sp: dict) -> dict:
    """docs/s on 2 idle cores and hours per million documents, from CPU time (two single-thread
    workers, one per core; CPU time per document hardly depends on the neighbours), next to
    what was measured wall-clock on the shared machine."""
    z = sp["zimo"]
    per_core = z["docs_per_cpu_s"]
    return {
        "docs_per_s_measured_wall": z["docs_per_s"],
        "loadavg_during": sp["loadavg"],
        "docs_per_s_2_idle_cores": 2 * per_core,
        "tokens_per_s_2_idle_cores": 2 * per_core * sp["tokens"] / sp["docs"],
        "hours_per_million_docs_2_idle_cores": 1e6 / (2 * per_core) / 3600,
        "machines_for_million_docs_in_1h": math.ceil(1e6 / (2 * per_core) / 3600 / 1.0),
        "note": "at the speed subset's mean length (time scales with tokens per document); "
        "2 idle cores = two single-thread workers; a million-document corpus is sharded over "
        "machines (Ray) at this rate per 2-core machine",
    }


def _score_with(model, ids, det, use_bf16, comb, need):
    """Token statistics and the combined score under ``comb``, as the detector computes them."""
    import torch

    stats = compute_token_stats(
        model,
        ids,
        need=need,
        batch_size=det.config.batch_size,
        dtype=torch.bfloat16 if use_bf16 else None,
        pool_hidden=uses_hidden(comb),
    )
    combined_from_stats(stats, comb)
    return stats


def cross_scorer_probes(det, texts: list[str], y: np.ndarray, n: int, console) -> dict:
    """The unseen-generator case, by swapping the scorer: gecko-zh's paraphrases (and, for the
    scorer's baseline, HC3 dev human vs ChatGPT answers) scored by gecko (SmolLM2-135M, a
    different model family and tokenizer that never generated any of it). No embedded model
    other than gecko-zh writes Chinese, so this is the only way to measure, offline, how the
    zero-shot scores behave when scorer != generator; it measures the method with a weaker
    (English-centric) scorer, not the shipped gecko-zh configuration."""
    para = paraphrase_probe(150, 0, console)[:n]
    ptexts = [p["original"] for p in para] + [p["paraphrase"] for p in para]
    py = np.array([0] * len(para) + [1] * len(para))
    rng = random.Random(2)
    hum = [i for i in range(len(texts)) if y[i] == 0 and len(texts[i]) >= 60]
    mac = [i for i in range(len(texts)) if y[i] == 1 and len(texts[i]) >= 60]
    base = rng.sample(hum, n // 2) + rng.sample(mac, n // 2)
    btexts = [texts[i] for i in base]
    by = np.array([int(y[i]) for i in base])
    tag = stats_tag("gecko", det.config.token_budget, None)
    out = {}
    for name, tx, yy, caveat in (
        (
            "paraphrase_gecko_zh_scored_by_gecko",
            ptexts,
            py,
            "generator gecko-zh, scorer gecko (SmolLM2-135M): scorer != generator",
        ),
        (
            "hc3_dev_scored_by_gecko",
            btexts,
            by,
            "baseline of that scorer on HC3 dev (human vs ChatGPT), same length filter",
        ),
    ):
        stats = cached_stats(det, tx, "gecko", tag, console)
        out[name] = _probe_metrics(stats, yy, None, det.config.min_tokens) | {"caveat": caveat}
    return out


def without_style_adapter(
    cfg: GuardConfig,
    texts: list[str],
    y: np.ndarray,
    probe_sets: dict[str, tuple[list[str], np.ndarray]],
    model: str,
    tag: str,
    console,
) -> dict:
    """The same documents scored by the plain model (``style_adapter: off``), side by side: what
    the machine-style adapter buys, on the dev file and on every probe."""
    det = Detector(cfg.model_copy(update={"style_adapter": "off"}))
    stats = cached_stats(det, texts, model, tag, console)
    n_tok = np.array([s.n_tokens for s in stats])
    X = feature_matrix(stats, FEATURES, True)  # the same combined score: features + head
    keep = n_tok >= cfg.min_tokens
    out = {
        "dev": {
            "logrank": metrics(np.array([simple_score("logrank", s) for s in stats]), y),
            "combined (out-of-fold)": metrics(out_of_fold_combined(X, y, head=True), y),
        }
    }
    comb = fit_combined(X[keep], y[keep], head=True)
    for name, (ptexts, py) in probe_sets.items():
        pm = _probe_metrics(cached_stats(det, ptexts, model, tag, console), py, comb, 0)
        out[name] = {k: pm[k] for k in ("logrank", "combined")}
    return out


def _probe_metrics(stats, y, comb, min_tokens) -> dict:
    n_tok = np.array([s.n_tokens for s in stats])
    out = {"n": int(len(y)), "mean_tokens": float(n_tok.mean())}
    for name in SIMPLE_SCORES:
        out[name] = metrics(np.array([simple_score(name, s) for s in stats]), y)
    if comb is not None:  # the combined model belongs to gecko-zh's statistics
        out["combined"] = metrics(combined_from_stats(stats, comb), y)
    return out


def _scope(r: dict) -> str:
    if r["quick"]:
        return "quick subsample"
    return f"random {r['qa_sample']} of 1780" if r.get("qa_sample") else "full"


def _si_lines(r: dict) -> list[str]:
    """The rewritten-text and English sections (each only if that run measured it)."""
    lines: list[str] = []
    if r.get("si"):
        from detect_si import si_markdown

        lines += si_markdown(r["si"])
    if r.get("english"):
        from detect_en import en_markdown

        lines += en_markdown(r["english"])
    return lines


def markdown(r: dict) -> str:
    mt = r["min_tokens"]
    lines = [
        f"# Detection on HC3 Chinese dev ({_scope(r)}), "
        f"{r['model']}, {r['data']['token_budget']}-token budget, "
        f"{'bf16' if r['bf16'] else 'fp32'}",
        "",
        f"{r['data']['docs']} docs ({r['data']['machine']} machine), mean {r['data']['mean_tokens']:.0f}"
        f" tokens. CPU: {r['cpu']['model']}, {r['threads']} threads (shared machine).",
        "",
        f"Scorer: {r['model']} with machine-style adapter `{r['style_adapter']}` merged in "
        "(zimo.guard.style; trained on alpaca_zh GPT-4 answers, never on this file)."
        if r.get("style_adapter")
        else f"Scorer: {r['model']}, no style adapter.",
        "",
        f"| score | AUROC | TPR@1%FPR | TPR@5%FPR | AUROC (>= {mt} tok) | TPR@1% (>= {mt} tok) |",
        "|---|---|---|---|---|---|",
    ]
    for name, q in r["quality"].items():
        a, b = q["all"], q[f"tokens>={mt}"]
        lines.append(
            f"| {name} | {a['auroc']:.3f} | {a['tpr_at_1fpr']:.3f} | {a['tpr_at_5fpr']:.3f}"
            f" | {b['auroc']:.3f} | {b['tpr_at_1fpr']:.3f} |"
        )
    lines += [
        "",
        "AUROC by length (scored tokens):",
        "",
        "| tokens | n | machine share | " + " | ".join(r["quality"]) + " |",
        "|---" * (3 + len(r["quality"])) + "|",
    ]
    for k, v in r["auroc_by_length_tokens"].items():
        ms = "-" if v["machine_share"] is None else f"{v['machine_share']:.2f}"
        lines.append(
            f"| {k} | {v['n']} | {ms} | "
            + " | ".join(
                "-" if v[n] is None or math.isnan(v[n]) else f"{v[n]:.3f}" for n in r["quality"]
            )
            + " |"
        )
    lines += [
        "",
        "If the guard abstains below L scored tokens (untrusted: scored, never flagged), on the "
        "documents it keeps:",
        "",
        "| L | kept | excluded (machine) | logrank AUROC | logrank TPR@1% | combined AUROC "
        "| combined TPR@1% |",
        "|---|---|---|---|---|---|---|",
    ]
    for lo, a in r.get("abstain_below_tokens", {}).items():
        lr, cb = a["logrank"], a["combined (out-of-fold)"]
        lines.append(
            f"| {lo} | {a['kept']} | {a['excluded']} ({a['excluded_machine']}) | "
            f"{lr['auroc']:.3f} | {lr['tpr_at_1fpr']:.3f} | {cb['auroc']:.3f} | "
            f"{cb['tpr_at_1fpr']:.3f} |"
        )
    for pname, p in r["probes"].items():
        lines += [
            "",
            f"Probe `{pname}` ({p['n']} docs; {p.get('caveat', '')}):",
            "",
            "| score | AUROC | TPR@1%FPR | TPR@5%FPR |",
            "|---|---|---|---|",
        ]
        for name in [k for k in [*SIMPLE_SCORES, "combined"] if k in p]:
            m = p[name]
            lines.append(
                f"| {name} | {m['auroc']:.3f} | {m['tpr_at_1fpr']:.3f} | {m['tpr_at_5fpr']:.3f} |"
            )
    ab = r.get("without_style_adapter")
    if ab:
        lines += [
            "",
            "The machine-style adapter, side by side (same documents, scorer without it):",
            "",
            "| set | score | AUROC without | AUROC with | TPR@1% without | TPR@1% with |",
            "|---|---|---|---|---|---|",
        ]
        for set_name, per in ab.items():
            with_ = r["quality"] if set_name == "dev" else r["probes"][set_name]
            for name, m in per.items():
                w = with_[name]["all"] if set_name == "dev" else with_[name]
                lines.append(
                    f"| {set_name} | {name} | {m['auroc']:.3f} | {w['auroc']:.3f} | "
                    f"{m['tpr_at_1fpr']:.3f} | {w['tpr_at_1fpr']:.3f} |"
                )
    lines += _si_lines(r)
    sp = r["speed"]
    if sp is None:
        return "\n".join(lines) + "\n\n(speed not measured in this run)\n"
    ref = sp["reference_fp32_one_at_a_time"]
    if sp.get("reused_from_cache"):  # --speed-docs 0: say that this run did not time anything
        lines += ["", "(Speed not measured in this run: the last measured speed, reused.)"]
    lines += [
        "",
        f"Speed, side by side on the same {sp['docs']} docs ({sp['tokens']} tokens), the four "
        f"statistics every score needs, {sp['threads']} thread(s) for both (load average "
        f"{sp['loadavg'][0][0]:.1f} -> {sp['loadavg'][-1][0]:.1f} on {r['cpu']['cores']} cores):",
        "",
        "| implementation | docs/s (wall) | docs per CPU-s | ratio (wall) | ratio (CPU time) |",
        "|---|---|---|---|---|",
        f"| plain transformers fp32, one doc at a time (argsort rank) | {ref['docs_per_s']:.3f} | "
        f"{ref['docs_per_cpu_s']:.3f} | 1.00 | 1.00 |",
    ]
    if "zimo_fp32_batched" in sp:
        z = sp["zimo_fp32_batched"]
        lines.append(
            f"| Zimo batched, fp32 | {z['docs_per_s']:.3f} | {z['docs_per_cpu_s']:.3f} | "
            f"{z['speedup_vs_reference']:.2f} | {z['speedup_cpu_time_vs_reference']:.2f} |"
        )
    z = sp["zimo"]
    lines += [
        f"| Zimo detector{' (bf16)' if z['bf16'] else ''} | {z['docs_per_s']:.3f} | "
        f"{z['docs_per_cpu_s']:.3f} | {sp['speedup']:.2f} | {sp['speedup_cpu_time']:.2f} |",
    ]
    if "new_scorer" in sp:
        nz = sp["new_scorer"]
        lines.append(
            f"| Zimo detector, this version's combined score | "
            f"{nz['docs_per_s']:.3f} | {nz['docs_per_cpu_s']:.3f} | "
            f"{ref['wall_s'] / nz['wall_s']:.2f} | {ref['cpu_s'] / nz['cpu_s']:.2f} |"
        )
        lines += [
            "",
            f"This version against the previous scorer, same rounds: "
            f"{nz['ratio_wall_vs_old']:.3f}x docs/s (wall), {nz['ratio_cpu_vs_old']:.3f}x docs "
            "per CPU-second (above 1 = faster).",
        ]
    lines += [
        "",
        "| score | AUROC reference | AUROC Zimo | abs diff | Pearson |",
        "|---|---|---|---|---|",
    ]
    for name, v in sp["scores"].items():
        lines.append(
            f"| {name} | {v['auroc_reference']:.4f} | {v['auroc_zimo']:.4f} | "
            f"{v['auroc_abs_diff']:.4f} | {v['pearson']:.4f} |"
        )
    tp = sp.get("thread_probe") or {}
    if len([k for k in tp if k.startswith("threads_")]) > 1:
        cells = ", ".join(
            f"{k.split('_')[1]} thread(s): {min(x['wall_s'] for x in v):.2f} s wall / "
            f"{min(x['cpu_s'] for x in v):.2f} s CPU"
            for k, v in tp.items()
            if k.startswith("threads_")
        )
        lines += ["", f"One forward pass over {tp['tokens']} tokens, by thread count: {cells}."]
    pr = r["projection"]
    lines += [
        "",
        f"Measured here: {pr['docs_per_s_measured_wall']:.3f} docs/s wall on the shared machine. "
        f"On 2 idle cores (from CPU time): {pr['docs_per_s_2_idle_cores']:.2f} docs/s "
        f"({pr['tokens_per_s_2_idle_cores']:.0f} tokens/s), so one million documents of this "
        f"length need {pr['hours_per_million_docs_2_idle_cores']:.0f} h on one 2-core machine, "
        f"or {pr['machines_for_million_docs_in_1h']} such machines for one hour (Ray).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
