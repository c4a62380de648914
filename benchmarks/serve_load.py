"""Load test of `zimo serve`: one adapter vs 8 adapters mixed, on the same server, side by side.

    python benchmarks/serve_load.py [--quick] [--clients 32] [--duration 60] [--max-tokens 32]

Starts a real server (a subprocess, so the load generator does not share its GIL) on a free
127.0.0.1 port with gecko + 8 random LoRA adapters, then runs, in one process and one run:

1. overhead: sequential requests for a ``max_tokens``-token answer; server overhead = client
   latency − engine compute time (the ``zimo.compute_s`` field), i.e. HTTP + parsing + routing
   + tokenisation + queueing, as a share of the compute time (target ≤ 10%);
2. single: N concurrent clients, all on adapter ``a0``, for ``duration`` seconds;
3. mixed: N concurrent clients round-robin over ``a0``…``a7`` (target: ≥ 0.8× single's
   throughput; zero 5xx);
0. scaling (first): 1, 4, 16 and 32 clients on ``a0`` (target: 4 clients get at least the
   throughput of 1). ``--scaling-only`` runs just this.

Writes ``benchmarks/results/serve_load.json`` and ``.md``. Only 127.0.0.1; client count and
duration are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache" / "serve_adapters"
sys.path.insert(0, str(ROOT / "tests"))  # the adapter maker is shared with the tests

MAX_CLIENTS, MAX_DURATION = 64, 300
SCALING_CLIENTS = (1, 4, 16, 32)
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]

SERVER = """
import json, sys, uvicorn
from zimo.serve.app import create_app
from zimo.serve.config import ServeConfig
cfg = ServeConfig.model_validate(json.load(open(sys.argv[1])))
uvicorn.run(create_app(cfg), host="127.0.0.1", port=cfg.port, log_level="warning")
"""


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def one(client: httpx.AsyncClient, model: str, max_tokens: int) -> dict:
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True}  # fmt: skip
    t0 = time.perf_counter()
    try:
        r = await client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError as e:
        return {"status": type(e).__name__, "latency": time.perf_counter() - t0}
    out = {"status": r.status_code, "latency": time.perf_counter() - t0}
    if r.status_code == 200:
        d = r.json()
        out.update(tokens=d["usage"]["completion_tokens"], compute=d["zimo"]["compute_s"],
                   queue=d["zimo"]["queue_s"], batch=d["zimo"]["batch_size"])  # fmt: skip
    return out


async def load(url: str, models: list[str], clients: int, duration: float, max_tokens: int,
               max_requests: int) -> dict:  # fmt: skip
    """``clients`` workers send requests back to back until ``duration`` or ``max_requests``."""
    results: list[dict] = []
    start = time.perf_counter()
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while time.perf_counter() - start < duration:
                i = next(counter)
                if i >= max_requests:
                    return
                results.append(await one(client, models[i % len(models)], max_tokens))

        await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - start
    ok = [r for r in results if r["status"] == 200]
    lat = [r["latency"] for r in ok]
    errors: dict[str, int] = {}
    for r in results:
        if r["status"] != 200:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    toks = sum(r["tokens"] for r in ok)
    return {
        "clients": clients,
        "models": len(models),
        "wall_s": round(wall, 2),
        "requests": len(results),
        "ok": len(ok),
        "errors": errors,
        "errors_5xx": sum(v for k, v in errors.items() if k.isdigit() and int(k) >= 500),
        "throughput_req_s": round(len(ok) / wall, 3),
        "throughput_tok_s": round(toks / wall, 2),
        "latency_p50_s": round(percentile(lat, 0.5), 3),
        "latency_p99_s": round(percentile(lat, 0.99), 3),
        "mean_batch": round(statistics.mean([r["batch"] for r in ok]), 2) if ok else 0,
    }


async def overhead(url: str, model: str, n: int, max_tokens: int) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await one(client, model, max_tokens)  # warm-up (adapter load)
        rows = [await one(client, model, max_tokens) for _ in range(n)]
    ok = [r for r in rows if r["status"] == 200]
    over = [r["latency"] - r["compute"] for r in ok]
    comp = [r["compute"] for r in ok]
    return {
        "requests": len(ok),
        "completion_tokens": ok[0]["tokens"] if ok else 0,
        "compute_s_median": round(statistics.median(comp), 4),
        "latency_s_median": round(statistics.median([r["latency"] for r in ok]), 4),
        "overhead_s_median": round(statistics.median(over), 4),
        "overhead_ratio": round(statistics.median(over) / statistics.median(comp), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 clients, 20 s, 16 tokens")
    ap.add_argument("--clients", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the server")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--base", default="gecko")
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    ap.add_argument(
        "--scaling-duration",
        type=float,
        default=None,
        help="seconds per client count in the scaling run (1, 4, 16, 32 clients)",
    )
    ap.add_argument(
        "--scaling-only",
        action="store_true",
        help="only the scaling run (no overhead, single and mixed runs)",
    )
    a = ap.parse_args()
    clients = min(a.clients or (8 if a.quick else 32), MAX_CLIENTS)
    duration = min(a.duration or (20.0 if a.quick else 60.0), MAX_DURATION)
    max_tokens = a.max_tokens or (16 if a.quick else 32)
    overhead_n = 3 if a.quick else 8

    from rich.console import Console

    from serve_fixtures import AdapterSpec, free_port, make_adapters
    from zimo.hw import cpu_info

    con = Console(stderr=True)
    with con.status("making 8 test adapters (cached)…"):
        ads = make_adapters(CACHE / a.base, [AdapterSpec(f"a{i}", seed=100 + i, rank=8)
                                             for i in range(8)], base=a.base)  # fmt: skip
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="zimo-bench-"))
    cfg = {
        "port": port,
        "models": [
            {
                "name": n,
                "adapter_dir": str(p / "adapter"),
                "metadata": json.loads((p / "zimo_model.json").read_text()),
            }
            for n, p in ads.items()
        ],  # fmt: skip
        "backend": {
            "base": a.base,
            "device": a.device,
            "threads": a.threads,
            "batching": {"max_batch_size": 32, "max_wait_ms": 5},
        },  # fmt: skip
        "limits": {"max_queue": 4096, "request_timeout_s": 600},
        "keys_db": str(tmp / "keys.sqlite"),
        "log": {"path": str(tmp / "requests.sqlite")},
        "watch_s": None,
        "embeddings": False,
    }
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp / "cfg.json")], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with con.status("starting the server…"):
            deadline = time.time() + 600
            while True:
                if proc.poll() is not None:
                    raise SystemExit("the server exited during startup")
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise SystemExit("the server did not start in 600 s")
                time.sleep(0.5)
        names = sorted(ads)
        scale_s = min(a.scaling_duration or (15.0 if a.quick else 30.0), MAX_DURATION)
        scaling = []
        asyncio.run(load(url, names[:1], 4, 5, max_tokens, 8))  # warm-up (adapter load)
        for n in SCALING_CLIENTS:
            with con.status(f"scaling: {n} client(s) × {scale_s:.0f}s…"):
                scaling.append(asyncio.run(load(url, names[:1], n, scale_s, max_tokens, 100_000)))
            con.print(f"scaling {scaling[-1]}")
        if a.scaling_only:
            _write_scaling(a, scaling, max_tokens, scale_s)
            return
        with con.status("overhead: sequential requests…"):
            ov = asyncio.run(overhead(url, names[0], overhead_n, max_tokens))
        con.print(f"overhead {ov}")
        runs = {}
        for label, models in (("single", names[:1]), ("mixed", names)):
            with con.status(f"{label}: {clients} clients × {duration:.0f}s…"):
                asyncio.run(load(url, models, min(clients, 4), 5, max_tokens, 8))  # warm-up
                runs[label] = asyncio.run(
                    load(url, models, clients, duration, max_tokens, max_requests=100_000)
                )
            con.print(f"{label} {runs[label]}")
        stats = httpx.get(url + "/healthz").json()
        device = stats.get("backend")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ratio = runs["mixed"]["throughput_tok_s"] / max(runs["single"]["throughput_tok_s"], 1e-9)
    out = {
        "benchmark": "serve_load",
        "quick": a.quick,
        "cpu": cpu_info(),
        "device": a.device,
        "threads": a.threads,
        "load_average": os.getloadavg(),
        "backend": device,
        "base": a.base,
        "clients": clients,
        "duration_s": duration,
        "max_tokens": max_tokens,
        "overhead": ov,
        "single": runs["single"],
        "mixed": runs["mixed"],
        "mixed_over_single_throughput": round(ratio, 3),
        "scaling": scaling,
        "scaling_4_over_1_throughput": _ratio(scaling, 4, 1),
        "targets": {
            "throughput_4_clients_ge_1_client": _ratio(scaling, 4, 1) >= 1.0,
            "mixed_throughput_ge_0.8x_single": ratio >= 0.8,
            "zero_5xx": runs["single"]["errors_5xx"] + runs["mixed"]["errors_5xx"] == 0,
            "zero_5xx_condition": f"{clients} clients for {duration:.0f}s"
            + ("" if clients >= 32 and duration >= 60 else " (not the full 32 × 60 s target)"),
            "overhead_le_10pct": ov["overhead_ratio"] <= 0.10,
        },
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    md = [
        f"# serve_load ({'quick' if a.quick else 'full'}; {out['cpu']['model']}, "
        f"{out['cpu']['cores']} cores, device {a.device})",
        "",
        f"{clients} concurrent clients, {duration:.0f} s each, {max_tokens}-token answers, "
        f"base {a.base}; torch threads {a.threads or 'all'}; load average at the end "
        f"{os.getloadavg()[0]:.1f} (other jobs share this machine).",
        "",
        "| scenario | ok | 5xx | req/s | tok/s | p50 s | p99 s | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in ("single", "mixed"):
        r = runs[k]
        md.append(f"| {k} ({r['models']} adapter{'s' if r['models'] > 1 else ''}) | {r['ok']} | "
                  f"{r['errors_5xx']} | {r['throughput_req_s']} | {r['throughput_tok_s']} | "
                  f"{r['latency_p50_s']} | {r['latency_p99_s']} | {r['mean_batch']} |")  # fmt: skip
    md += [
        "",
        f"- mixed / single throughput: **{ratio:.2f}×** (target ≥ 0.8×)",
        f"- server overhead for a {ov['completion_tokens']}-token answer: "
        f"{ov['overhead_s_median'] * 1000:.1f} ms = **{ov['overhead_ratio'] * 100:.1f}%** of "
        f"{ov['compute_s_median'] * 1000:.0f} ms compute (target ≤ 10%)",
        f"- 5xx errors: {out['single']['errors_5xx'] + out['mixed']['errors_5xx']} "
        f"({out['targets']['zero_5xx_condition']})",
    ]
    md += ["", *_scaling_md(scaling, scale_s)]
    Path(a.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _ratio(scaling: list[dict], a: int, b: int) -> float:
    by = {r["clients"]: r["throughput_req_s"] for r in scaling}
    return round(by.get(a, 0.0) / max(by.get(b, 0.0), 1e-9), 3)


def _scaling_md(scaling: list[dict], seconds: float) -> list[str]:
    md = [
        f"Scaling: one adapter, {seconds:.0f} s per client count (target: 4 clients get at least "
        "the throughput of 1 — batching makes concurrency cheaper).",
        "",
        "| clients | ok | 5xx | req/s | tok/s | p50 s | p99 s | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in scaling:
        md.append(f"| {r['clients']} | {r['ok']} | {r['errors_5xx']} | {r['throughput_req_s']} | "
                  f"{r['throughput_tok_s']} | {r['latency_p50_s']} | {r['latency_p99_s']} | "
                  f"{r['mean_batch']} |")  # fmt: skip
    md += ["", f"- 4 clients / 1 client throughput: **{_ratio(scaling, 4, 1):.2f}×**"]
    return md


def _write_scaling(a, scaling: list[dict], max_tokens: int, seconds: float) -> None:
    from zimo.hw import cpu_info

    out = {
        "benchmark": "serve_load (scaling only)",
        "cpu": cpu_info(),
        "device": a.device,
        "threads": a.threads,
        "load_average": os.getloadavg(),
        "base": a.base,
        "max_tokens": max_tokens,
        "scaling": scaling,
        "scaling_4_over_1_throughput": _ratio(scaling, 4, 1),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    md = [
        f"# serve_load scaling ({out['cpu']['model']}, {out['cpu']['cores']} cores, device "
        f"{a.device}; {max_tokens}-token answers; load average at the end "
        f"{os.getloadavg()[0]:.1f}, other jobs share this machine)",
        "",
        *_scaling_md(scaling, seconds),
    ]
    Path(a.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
