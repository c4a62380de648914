"""One label request at a time, on 1 and on 2 torch threads: which thread count to use.

``zimo eval`` ran on torch's default threads (a thread per core) and the gateway's engine on
``zimo.hw.serving_threads()`` (every core but one, for the HTTP side): on a 2-core machine one
thread. A thread per core doubles the arithmetic available to a lone request; on a busy box
OpenMP teams spin-wait on each other's descheduled threads. This measures the first, side by
side in one process per CPU kind: the demo's sub-model, the eval path (``LabelScorer``, frozen
prefix) and the serving engine, each at batch 1 over the same test messages, with threads
interleaved (1, 2, 1, 2) so load changes hit both; plus a batched pass per thread count.

    python benchmarks/label_threads.py --project /tmp/sms-built
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_infer import _pcts, _project_rows, label_scorer, run_kind  # noqa: E402


def child(args) -> dict:
    import asyncio

    import torch
    from peft import PeftModel

    from zimo.infer import fastpath
    from zimo.models import load_causal_lm
    from zimo.serve.backends.base import Job, SamplingParams
    from zimo.serve.backends.factory import make_backend
    from zimo.serve.config import BackendConfig
    from zimo.serve.registry import load_submodel

    train_dir, test, meta = _project_rows(Path(args.project))
    texts = [r["text"] for r in test[: args.rows]]
    threads = [int(t) for t in args.threads.split(",")]
    model, tok = load_causal_lm(meta["base"])
    model = PeftModel.from_pretrained(model, str(train_dir / meta["adapter"])).eval()
    choice = fastpath.prepare_for_cpu_inference(model, tok)
    scorer = label_scorer(model, tok, meta)
    sub = load_submodel(train_dir, name="sms")

    async def serve_one(be, text: str):
        ids = be.encode_chat(sub.name, [{"role": "user", "content": text}])
        return await be.submit(Job(sub.name, ids, SamplingParams(), kind="label")).future

    # One engine per thread count. torch's thread count is per OS thread once a thread has
    # run its first parallel op, so each engine's worker is warmed up before the next engine
    # is loaded (loading sets the count the next new thread starts with).
    engines = {}
    try:
        for n in threads:
            be = make_backend(BackendConfig(kind="transformers", base=meta["base"], threads=n))
            be.start()
            be.add_model(sub)
            for t in texts[:2]:
                asyncio.run(serve_one(be, t))
            engines[n] = be
        lat: dict = {f"{leg}_t{n}": [] for leg in ("eval", "serve") for n in threads}
        batched: dict = {}
        with torch.inference_mode():
            for n in threads:
                torch.set_num_threads(n)
                for t in texts[:2]:
                    scorer.log_scores([t], batch_size=1)
            for text in texts:  # interleaved, so a change in load hits every setting alike
                for n in threads:
                    torch.set_num_threads(n)
                    t0 = time.perf_counter()
                    scorer.log_scores([text], batch_size=1)
                    lat[f"eval_t{n}"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    asyncio.run(serve_one(engines[n], text))
                    lat[f"serve_t{n}"].append(time.perf_counter() - t0)
            for n in threads:
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                scorer.log_scores(texts, batch_size=16)
                batched[f"eval_t{n}_msgs_per_s"] = round(len(texts) / (time.perf_counter() - t0), 2)  # fmt: skip
    finally:
        for be in engines.values():
            be.close()
    out = {k: _pcts(v) for k, v in lat.items()}
    return {
        "rows": len(texts),
        "weights": "int8" if choice["int8"] else "fp32/bf16",
        "capability": torch.backends.cpu.get_cpu_capability(),
        "latency": out,
        "batched": batched,
        "p50_ratio_1_over_2": {
            leg: round(out[f"{leg}_t1"]["p50_ms"] / out[f"{leg}_t2"]["p50_ms"], 2)
            for leg in ("eval", "serve")
            if 1 in threads and 2 in threads
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", required=True, help="a built sms-fraud project")
    ap.add_argument("--rows", type=int, default=60, help="test messages timed per setting")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    ap.add_argument("--kinds", default="avx2,native", help="CPU kinds: avx2 (emulated), native")
    ap.add_argument("--out", default=str(RESULTS / "label_threads.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    from zimo.fileio import write_json_atomic
    from zimo.hw import cpu_info

    result: dict = {
        "cpu": cpu_info(),
        "project": str(Path(args.project).resolve()),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "forced": {},
        "kinds": {},
    }
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        cmd = [sys.executable, __file__, "--child", "--project", args.project]
        cmd += ["--rows", str(args.rows), "--threads", args.threads]
        result["forced"][kind], result["kinds"][kind] = run_kind(cmd, kind)
        print(kind, json.dumps(result["kinds"][kind], indent=1), file=sys.stderr)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json_atomic(Path(args.out), result)


if __name__ == "__main__":
    main()
