"""A live cascade with the flywheel on a stream of Chinese SMS, over real HTTP.

    python benchmarks/cascade_stream.py [--stream TSV] [--quick] [--rounds 3] [--round-size 5000]
                                        [--seed-rows 1000] [--clients 8] [--out FILE]

1. A project seeded with ``--seed-rows`` labelled messages (``label<TAB>text``; 0 = normal,
   1 = spam) trains a classical sub-model (character n-grams) and is served by ``zimo serve``
   (a subprocess on a free 127.0.0.1 port) through ``route.mode: cascade``: classical tier
   first, the big tier last.
2. The big tier is a STAND-IN: a real OpenAI-compatible HTTP server (``tests/fake_openai.py``)
   that answers each message's gold label, priced as a big model (5 USD per 1M tokens). So
   "accuracy against the all-big answers" equals accuracy against the gold labels here, and
   the cost of sending everything to it is computed with the stand-in's own token count.
3. ``--rounds`` rounds of ``--round-size`` new messages stream through the gateway (``--clients``
   concurrent clients); between rounds ``zimo flywheel`` turns the big tier's logged answers
   into training rows, retrains, recalibrates, and the running gateway reloads.

Per round: accuracy and spam F1 against the all-big answers, share per tier, cost relative to
all-big, p50/p99 latency per answering tier, and whether the LoRA tier answered. By default the
cascade is classical + big (a gecko-zh LoRA tier retrains every round, minutes per round on 2
cores); ``--lora`` adds it between them: classical → gecko-zh LoRA (label task) → big, the LoRA
tier retrained by every flywheel round like the classical one.

Writes ``benchmarks/results/cascade_stream.json`` (``--quick``: ``cascade_stream.quick.json``)
and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STREAM = ROOT.parent / "shared" / "data" / "zh_spam_sms" / "zh_spam_sms.tsv"
sys.path.insert(0, str(ROOT / "tests"))
LABELS = {"0": "normal", "1": "spam"}
PRICE_PER_1M = 5.0  # USD per 1M tokens, a big model's list price
INSTRUCTION = "这条短信是正常短信还是垃圾/诈骗短信？只回答 normal 或 spam。"

YAML = """\
name: zh-sms
task: label
labels: [normal, spam]
positive_label: spam
instruction: {instruction}
data: {{path: data/seed.tsv, text_field: text, label_field: label}}
curate: {{steps: [fix_unicode, normalize, exact_dedup]}}
split: {{dev: 0.2, test: 0.1, seed: 13}}
train:
  - {{method: classical, word_ngrams: null}}
{lora_train}
eval: {{systems: [tfidf_logreg], latency_samples: 4}}
route:
  mode: cascade
  tiers:
    - {{name: classical, model: zh-sms@classical}}
{lora_tier}    - {{name: big, model: big-model, price_per_1m_tokens: {price}}}
  target: {{quality: 0.99}}
serve:
  watch_s: 1.0
  upstream: {{base_url: "{url}", api_key_env: ZIMO_BENCH_UPSTREAM_KEY, timeout_s: 30}}
"""


# The LoRA tier: gecko-zh (Gemma 3 270M, multilingual) on the label task, with the demo's
# recipe sized for 2 cores (a row cap, the top layers, a short schedule): it is asked only what
# the classical tier is unsure of, so it must be good on the hard cases, not fast to train.
LORA_TRAIN = (
    "  - {{name: sub, base: gecko-zh, method: lora, task: label, lr: 2.0e-3, "
    "max_train_rows: 1000, epochs: 1{warm}}}\n"
)
# --warm-start: each flywheel round continues the LoRA tier's adapter on the new teacher rows
# plus this many replayed earlier rows, instead of retraining it from scratch.
REPLAY_ROWS = 300
LORA_TIER = "    - {name: sub, model: zh-sms@sub}\n"
TIERS = ("classical", "sub", "big")


def load_stream(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        label, _, text = line.partition("\t")
        if label in LABELS and text.strip():
            rows.append((LABELS[label], text.strip()))
    return rows


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a running process (Linux /proc), e.g. the server between two rounds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def zimo(*args: str, env=None, timeout: int = 3600, check: bool = True):
    """Run the zimo CLI; the result carries ``cpu_s``, the CPU seconds it used: unlike the wall
    time, this hardly moves when other jobs share the cores."""
    exe = Path(sys.executable).parent / "zimo"
    c0 = children_cpu_s()
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)  # fmt: skip
    r.cpu_s = round(children_cpu_s() - c0, 1)
    if r.returncode and check:
        raise SystemExit(f"zimo {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    return r


def stage_seconds(log: str) -> dict[str, float]:
    """The seconds of each build stage that ran, from `zimo build`'s "✓ <stage> done in Xs"."""
    return {m[1]: float(m[2]) for m in re.finditer(r"✓ (\S+)\s+done\s+in ([\d.]+)s", log)}


async def stream_round(url: str, msgs: list[tuple[str, str]], clients: int) -> list[dict]:
    out: list[dict | None] = [None] * len(msgs)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(msgs)):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            gold, text = msgs[i]
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", json={
                "model": "zh-sms", "messages": [{"role": "user", "content": text}]})  # fmt: skip
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                out[i] = {"status": r.status_code, "gold": gold, "ms": ms, "error": r.text[:200]}
                continue
            body = r.json()
            z = body["zimo"]
            out[i] = {"status": 200, "gold": gold, "ms": ms,
                      "label": body["choices"][0]["message"]["content"],
                      "tier": z["route"]["tier"], "cost": z["cost_usd"],
                      "degraded": z["route"].get("degraded", False)}  # fmt: skip

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return [x for x in out if x is not None]


def round_metrics(res: list[dict], all_big_cost: float) -> dict:
    from sklearn.metrics import f1_score

    ok = [r for r in res if r["status"] == 200]
    y = [r["gold"] for r in ok]
    p = [r["label"] for r in ok]
    tiers = sorted({r["tier"] for r in ok})
    lat = {t: {"p50": float(np.percentile([r["ms"] for r in ok if r["tier"] == t], 50)),
               "p99": float(np.percentile([r["ms"] for r in ok if r["tier"] == t], 99))}
           for t in tiers}  # fmt: skip
    cost = sum(r["cost"] for r in ok)
    return {
        "requests": len(res),
        "errors": len(res) - len(ok),
        "degraded": sum(r["degraded"] for r in ok),
        "accuracy_vs_big": float(np.mean([a == b for a, b in zip(y, p, strict=True)])),
        "spam_f1": float(f1_score(y, p, pos_label="spam")),
        "share": {t: float(np.mean([r["tier"] == t for r in ok])) for t in TIERS},
        "cost_vs_big": cost / all_big_cost if all_big_cost else None,
        "cost_per_1k": cost / max(len(ok), 1) * 1000,
        "all_big_cost_per_1k": all_big_cost / max(len(ok), 1) * 1000,
        "latency_ms": lat,
        "lora_answered": sum(r["tier"] == "sub" for r in ok),
        "accuracy_by_tier": {
            t: float(np.mean([r["gold"] == r["label"] for r in ok if r["tier"] == t]))
            for t in tiers
        },  # fmt: skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", type=Path, default=STREAM)
    ap.add_argument("--quick", action="store_true", help="rounds of 1,500 messages")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-size", type=int, default=None)
    ap.add_argument("--seed-rows", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--lora",
        action="store_true",
        help="add a gecko-zh LoRA tier between the classical and the big tier",
    )
    ap.add_argument("--warm-start", action="store_true",
                    help=f"with --lora: flywheel rounds continue the LoRA adapter on the new "
                    f"teacher rows + {REPLAY_ROWS} replayed rows instead of retraining it")  # fmt: skip
    ap.add_argument("--md-from", type=Path, default=None,
                    help="rewrite the markdown report of a saved JSON result and exit")  # fmt: skip
    args = ap.parse_args()
    if args.md_from:
        result = json.loads(args.md_from.read_text(encoding="utf-8"))
        args.md_from.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
        return
    if not args.stream.is_file():
        raise SystemExit(f"no stream at {args.stream}: pass --stream TSV (label<TAB>text)")
    size = args.round_size or (1500 if args.quick else 5000)
    if args.warm_start and not args.lora:
        raise SystemExit("--warm-start is for the LoRA tier: add --lora")
    if not 1 <= args.clients <= 64 or args.rounds < 1:
        raise SystemExit("--clients must be 1-64 and --rounds at least 1")
    from fake_openai import FakeOpenAI, count_tokens
    from serve_fixtures import free_port
    from zimo.data.formatters.normalize import Normalize
    from zimo.data.formatters.redact import Redactor
    from zimo.data.formatters.unicode_fix import FixUnicode
    from zimo.hw import cpu_info
    from zimo.route.live import label_messages

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    rows = load_stream(args.stream)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    need = args.seed_rows + args.rounds * size
    if need > len(rows):
        raise SystemExit(f"the stream has {len(rows)} messages; {need} are needed")
    seed = [rows[i] for i in order[: args.seed_rows]]
    rounds = [[rows[i] for i in order[args.seed_rows + k * size : args.seed_rows + (k + 1) * size]]
              for k in range(args.rounds)]  # fmt: skip
    red = Redactor()
    # The project's curate steps (fix_unicode, normalize: NFKC, whitespace) rewrite the seed
    # rows, and the calibration asks the big tier about the curated text; a real big model reads
    # both forms alike, so the stand-in knows both. (Keyed by the raw text alone, it answered
    # "normal" to 2% of the calibration rows, and 1% wrongly: the big tier then looked 0.991
    # right, which lowered the quality target the cascade was calibrated to.)
    fix, norm = FixUnicode(), Normalize()
    gold = {}
    for lab, t in rows:
        gold[red(t).strip()] = lab
        gold.setdefault(red(norm.format(fix.format(t))).strip(), lab)

    def answer(body: dict) -> str:
        text = body["messages"][-1]["content"].split("\n\n", 1)[-1].strip()
        return gold.get(text, "normal")

    work = Path(tempfile.mkdtemp(prefix="zimo-cascade-"))
    project = work / "zh-sms"
    (project / "data").mkdir(parents=True)
    with open(project / "data" / "seed.tsv", "w", encoding="utf-8") as f:
        f.write("label\ttext\n" + "".join(f"{lab}\t{t}\n" for lab, t in seed))
    result: dict = {"benchmark": "cascade_stream", "cpu": cpu_info(), "quick": args.quick,
                    "stream": args.stream.name, "seed_rows": args.seed_rows, "round_size": size,
                    "clients": args.clients, "project": str(project), "upstream": "stand-in: answers the gold label at "
                    f"{PRICE_PER_1M} USD per 1M tokens (not a real big model)",
                    "lora_tier": ("gecko-zh LoRA, label task, 1,000 rows, 1 epoch, " + (
                        f"continued each round on the new teacher rows + {REPLAY_ROWS} replayed "
                        "rows (warm start)" if args.warm_start else "retrained each round"))
                    if args.lora else "not configured (run with --lora): the cascade measured "
                    "is classical + big", "warm_start": args.warm_start,
                    "rounds": []}  # fmt: skip
    with FakeOpenAI(answer, models=("big-model",)) as up:
        env = {**os.environ, "ZIMO_BENCH_UPSTREAM_KEY": up.api_key}
        (project / "zimo.yaml").write_text(YAML.format(
            url=up.base_url, price=PRICE_PER_1M, instruction=INSTRUCTION,
            lora_train=LORA_TRAIN.format(warm=f", warm_start: {{replay_rows: {REPLAY_ROWS}}}"
                                         if args.warm_start else "") if args.lora else "",
            lora_tier=LORA_TIER if args.lora else "",
        ), encoding="utf-8")  # fmt: skip
        t0 = time.perf_counter()
        b = zimo("build", project, env=env)
        result["seed_build_stages_s"] = stage_seconds(b.stderr)
        result["seed_build_cpu_s"] = b.cpu_s
        t_fit = time.perf_counter()
        f = zimo("route", "fit", project, env=env)
        result["seed_route_fit_s"] = round(time.perf_counter() - t_fit, 1)
        result["seed_route_fit_cpu_s"] = f.cpu_s
        result["seed_build_s"] = round(time.perf_counter() - t0, 1)
        port = free_port()
        exe = Path(sys.executable).parent / "zimo"
        # The server's log goes to a file: a pipe nobody reads fills up and blocks the server.
        server_log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed after the server
        server = subprocess.Popen([str(exe), "serve", str(project), "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=server_log)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, server, work / "serve.log")
            for k, msgs in enumerate(rounds):
                cost_all_big = sum(
                    count_tokens(" ".join(m["content"] for m in label_messages(
                        ["normal", "spam"], INSTRUCTION, red(t)))) + 1
                    for _, t in msgs) * PRICE_PER_1M / 1_000_000  # fmt: skip
                t1, c1 = time.perf_counter(), process_cpu_s(server.pid)
                res = asyncio.run(stream_round(url, msgs, args.clients))
                m = round_metrics(res, cost_all_big)
                m["round"] = k + 1
                m["seconds"] = round(time.perf_counter() - t1, 1)
                m["server_cpu_s"] = round(process_cpu_s(server.pid) - c1, 1)
                thr = json.loads((project / ".zimo" / "route" / "cascade.json").read_text())
                m["thresholds"] = thr["thresholds"]
                # Each local tier's accuracy on the dev split, as the calibration measured it.
                m["tier_dev_quality"] = thr["meta"].get("tier_quality")
                result["rounds"].append(m)
                print(f"round {k + 1}: accuracy {m['accuracy_vs_big']:.4f}, spam F1 "
                      f"{m['spam_f1']:.4f}, LoRA {m['share']['sub']:.3f}, "
                      f"big {m['share']['big']:.3f}, cost "
                      f"{m['cost_vs_big']:.3f} of all-big, {m['seconds']} s", flush=True)  # fmt: skip
                if k + 1 < len(rounds):
                    t2 = time.perf_counter()
                    fw = zimo("flywheel", project, env=env, check=False)
                    m["flywheel_s"] = round(time.perf_counter() - t2, 1)
                    m["flywheel_stages_s"] = stage_seconds(fw.stderr)
                    m["flywheel_cpu_s"] = fw.cpu_s
                    if fw.returncode and "no new logged answers" in fw.stderr:
                        # The cheap tiers answered the whole round: the flywheel has nothing
                        # to learn from, says so and changes nothing; the stream goes on.
                        m["flywheel"] = "skipped: " + fw.stderr.strip().splitlines()[-1]
                        continue
                    if fw.returncode:
                        raise SystemExit(f"zimo flywheel failed:\n{fw.stderr[-3000:]}")
                    m["flywheel"] = fw.stdout.strip().replace("\n", " ")
                    t3 = time.perf_counter()
                    _wait_reloaded(url, project, msgs[0][1])
                    if args.lora:
                        m["lora_reload"] = _wait_lora_reloaded(url, project, msgs[0][1])
                        m["lora_train"] = _lora_train_summary(project)
                    m["reload_s"] = round(time.perf_counter() - t3, 1)
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
    own = resource.getrusage(resource.RUSAGE_SELF)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["load_avg"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    # CPU seconds, which other jobs on the machine hardly move (the wall time above does): what
    # zimo used (build, route fit, flywheels, the server) and what this process used (the
    # clients and the stand-in upstream).
    result["cpu_s"] = {"zimo": round(children_cpu_s(), 1),
                       "benchmark": round(own.ru_utime + own.ru_stime, 1)}  # fmt: skip
    last = result["rounds"][-1]
    result["targets"] = {
        "accuracy_vs_big>=0.99": last["accuracy_vs_big"] >= 0.99,
        "big_share<=0.10": last["share"]["big"] <= 0.10,
        "cost_vs_big<=0.15": last["cost_vs_big"] <= 0.15,
    }
    name = (
        "cascade_stream"
        + (".lora" if args.lora else "")
        + (".warm" if args.warm_start else "")
        + (".quick" if args.quick else "")
    )
    out = args.out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    md = markdown(result)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)


def markdown(result: dict) -> str:
    """The result as a markdown report (``--md-from JSON`` rewrites one from a saved run)."""
    quick, lora = result["quick"], result["lora_tier"].startswith("gecko")
    md = [f"# cascade_stream ({'quick' if quick else 'full'}) — {result['cpu']['model']}, "
          f"{result['cpu']['cores']} cores, bf16={result['cpu']['bf16']}", "",
          f"Seed: {result['seed_rows']} labelled messages; {len(result['rounds'])} rounds of "
          f"{result['round_size']}; "
          f"{result['clients']} concurrent clients. Big tier: {result['upstream']}. "
          f"LoRA tier: {result['lora_tier']}.", "",
          "| round | accuracy vs all-big | spam F1 | share classical | share LoRA | share big "
          "| cost vs all-big | p50/p99 ms classical | p50/p99 ms LoRA | p50/p99 ms big "
          "| thresholds |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def cell(lat: dict, t: str) -> str:
        return f"{lat[t]['p50']:.1f} / {lat[t]['p99']:.1f}" if t in lat else "—"

    for m in result["rounds"]:
        lat = m["latency_ms"]
        md.append(f"| {m['round']} | {m['accuracy_vs_big']:.4f} | {m['spam_f1']:.4f} | "
                  f"{m['share']['classical']:.3f} | {m['share']['sub']:.3f} | "
                  f"{m['share']['big']:.3f} | {m['cost_vs_big']:.3f} | {cell(lat, 'classical')} | "
                  f"{cell(lat, 'sub')} | {cell(lat, 'big')} | "
                  f"{[round(x, 3) for x in m['thresholds']]} |")  # fmt: skip
    if lora and not any(m["lora_answered"] for m in result["rounds"]):
        md += [
            "",
            "The LoRA tier answered nothing: the calibrated thresholds sent every request "
            "the classical tier was unsure of on to the big tier (see `thresholds`: the "
            "second is the LoRA tier's).",
        ]
    md += [
        "",
        "Per round: requests answered by each tier and how many were right "
        "(accuracy_by_tier), errors, and the flywheel after it:",
        "",
    ]
    for m in result["rounds"]:
        n = m["requests"] - m["errors"]
        by = ", ".join(f"{t} {round(m['share'][t] * n)} ({m['accuracy_by_tier'][t]:.3f} right)"
                       for t in TIERS if t in m["accuracy_by_tier"])  # fmt: skip
        fw = m.get("flywheel", "—")
        extra = ""
        if "flywheel_s" in m:
            extra = (f"; flywheel {m['flywheel_s']} s wall, {m.get('flywheel_cpu_s')} CPU-s "
                     f"(stages {m.get('flywheel_stages_s')})")  # fmt: skip
        if "lora_reload" in m:
            extra += f"; LoRA tier reloaded ({m['lora_reload']['adapter']}) and answering"
        if m.get("lora_train"):
            lt = m["lora_train"]
            extra += (f"; LoRA trained on {lt['train_rows']} rows in {lt['steps']} steps "
                      f"({lt['wall_seconds']} s; warm start: {lt.get('warm_start') or 'off'})")  # fmt: skip
        if m.get("tier_dev_quality"):
            extra += ("; accuracy per tier on the calibration rows of this round's thresholds "
                      "(LoRA: dev; classical: dev + out-of-fold train): "
                      + ", ".join(f"{t} {q:.3f}" for t, q in m["tier_dev_quality"].items()))  # fmt: skip
        md.append(f"- round {m['round']}: {by}; {m['errors']} errors, {m['degraded']} degraded; "
                  f"streamed in {m['seconds']} s. Flywheel: {fw}{extra}")  # fmt: skip
    if "cpu_s" in result:
        md += ["", f"Time: {result['wall_s']} s wall in all (seed build {result['seed_build_s']} "
               f"s, of which route fit {result['seed_route_fit_s']} s; build stages "
               f"{result['seed_build_stages_s']}). CPU seconds: zimo {result['cpu_s']['zimo']}, "
               f"benchmark clients + stand-in {result['cpu_s']['benchmark']}. Load average "
               f"(1 min) at the start and the end: {result['load_avg']}; the wall times and "
               "latencies move with other jobs on the machine, the CPU seconds hardly do."]  # fmt: skip
    if result.get("note"):  # added by hand to a saved run, e.g. which code it measured
        md += ["", f"Note: {result['note']}"]
    md += ["", "Targets after the last round: " + ", ".join(
        f"{k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items())]  # fmt: skip
    return "\n".join(md) + "\n"


def _wait_up(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit("zimo serve exited: " + log_path.read_text(errors="replace")[-1500:])
        try:
            if any(m["id"] == "zh-sms" for m in httpx.get(url + "/v1/models").json()["data"]):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("zimo serve did not start in 300 s")


def _wait_reloaded(url: str, project: Path, text: str) -> None:
    """Until the gateway answers with the thresholds the flywheel just wrote."""
    want = json.loads((project / ".zimo" / "route" / "cascade.json").read_text())["thresholds"][0]
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            r = httpx.post(url + "/v1/chat/completions", timeout=60,
                           json={"model": "zh-sms", "messages": [{"role": "user", "content": text}]})  # fmt: skip
        except httpx.TimeoutException:  # a busy machine while the new tier loads: ask again
            continue
        if r.status_code == 200 and r.json()["zimo"]["cascade"][0]["threshold"] == want:
            return
        time.sleep(1.0)
    raise SystemExit("the gateway did not pick up the flywheel's new thresholds in 300 s")


def _lora_train_summary(project: Path) -> dict:
    """How the flywheel's newest LoRA adapter was trained: rows, steps, seconds, warm start."""
    from zimo.serve.project_models import train_artifacts

    newest = next(p for s, p in train_artifacts(project) if s.endswith("sub"))
    s = json.loads((newest / "train_summary.json").read_text())
    return {k: s.get(k) for k in ("train_rows", "steps", "wall_seconds", "warm_start")}


def _wait_lora_reloaded(url: str, project: Path, text: str) -> dict:
    """Until the gateway serves the LoRA tier from the flywheel's newest adapter, and that
    adapter answers a label request of its own (a reload that breaks the engine shows here,
    not as a round of quiet fall-throughs to the big tier)."""
    from zimo.serve.project_models import train_artifacts

    newest = next(p for s, p in train_artifacts(project) if s.endswith("sub"))
    deadline = time.time() + 300
    while time.time() < deadline:
        served = httpx.get(url + "/admin/models", timeout=60).json()["models"]
        sub = next((m for m in served if m["name"] == "zh-sms@sub"), None)
        if sub and Path(sub["adapter_dir"]).resolve().is_relative_to(newest.resolve()):
            r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": "zh-sms@sub", "messages": [{"role": "user", "content": text}]})  # fmt: skip
            if r.status_code != 200:
                raise SystemExit(f"the reloaded LoRA tier failed: {r.status_code} {r.text[:300]}")
            return {
                "adapter": newest.name,
                "answers": True,
                "label_probs": r.json()["zimo"].get("label_probs"),
            }
        time.sleep(1.0)
    raise SystemExit(f"the gateway did not load the LoRA tier's new adapter {newest.name} in 300 s")


if __name__ == "__main__":
    main()
