"""Delivery-time prediction: `zimo build` beside a hand-written LightGBM script, one run.

    python benchmarks/tabular_eta.py [--quick] [--data CSV] [--out FILE]

1. A new project made as a user would: ``zimo init eta --template tabular --data CSV --target
   "Time_taken(min)"`` and ``zimo build`` (no tuning beyond the target column), timed.
2. On the same train/dev/test split (read from the build's split artifact): a hand-written
   LightGBM script (600 trees, learning rate 0.05, otherwise defaults — the reference point in
   the issue), the dev-mean baseline and a ridge regression.
3. Serving: ``zimo serve`` on a free 127.0.0.1 port (a subprocess), one-row requests to
   ``/v1/predict`` and ``/v2/models/eta/infer`` (p50/p99 over keep-alive HTTP), and 1,000-row
   batches (rows/s).

Writes ``benchmarks/results/tabular_eta.json`` (or ``--out``) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data" / "delivery_eta" / "ubereats_training_data.csv"
TARGET = "Time_taken(min)"
sys.path.insert(0, str(ROOT / "tests"))


def zimo(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "zimo"
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise SystemExit(f"zimo {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}")
    return r


def regression(y, p) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "r2": float(r2_score(y, p)),
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "within_5min": float(np.mean(np.abs(np.asarray(y) - p) <= 5)),
    }


def hand_written(split: Path) -> dict[str, dict]:
    """What a data scientist writes by hand on the same split."""
    import lightgbm as lgb
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, te = (pd.read_parquet(split / f"{s}.parquet") for s in ("train", "test"))
    ytr, yte = tr.pop(TARGET).astype(float), te.pop(TARGET).astype(float)
    Xtr, Xte = tr.astype(float), te.astype(float)
    t0 = time.perf_counter()
    m = lgb.LGBMRegressor(n_estimators=600, learning_rate=0.05, random_state=0, verbose=-1)
    m.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    ridge = make_pipeline(StandardScaler(), Ridge()).fit(Xtr, ytr)
    return {
        "hand_lightgbm_600": {**regression(yte, m.predict(Xte)), "fit_s": round(fit_s, 2)},
        "hand_ridge": regression(yte, ridge.predict(Xte)),
        "hand_dev_mean": regression(yte, np.full(len(yte), ytr.mean())),
    }


def serve_timings(project: Path, rows: pd.DataFrame, n_single: int, n_batches: int) -> dict:
    from serve_fixtures import free_port

    port = free_port()
    exe = Path(sys.executable).parent / "zimo"
    env = {**os.environ, "ZIMO_LOG_LEVEL": "warning"}
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server.
    log_path = project.parent / "serve.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the server below
    proc = subprocess.Popen([str(exe), "serve", str(project), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=log_file, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        c = httpx.Client(base_url=url, timeout=60)
        deadline = time.time() + 300
        while True:
            try:
                if any(m["id"] == "eta" for m in c.get("/v1/models").json()["data"]):
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(
                    "zimo serve did not start: " + (proc.stderr.read() or b"").decode()[-800:]
                )
            time.sleep(0.5)
        records = rows.drop(columns=[TARGET]).to_dict("records")
        out = {}
        for name, call in (
            ("predict", lambda r: c.post("/v1/predict", json={"model": "eta", "rows": [r]})),
            (
                "v2_infer",
                lambda r: c.post(
                    "/v2/models/eta/infer",
                    json={
                        "inputs": [
                            {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                            for k, v in r.items()
                        ]
                    },
                ),
            ),
        ):
            for r in records[:20]:  # warm-up
                call(r)
            lat = []
            for r in records[:n_single]:
                t0 = time.perf_counter()
                resp = call(r)
                lat.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
            out[name] = {"p50_ms": float(np.percentile(lat, 50) * 1000),
                         "p99_ms": float(np.percentile(lat, 99) * 1000), "requests": len(lat)}  # fmt: skip
        t0 = time.perf_counter()
        n = 0
        for i in range(n_batches):
            batch = records[(i * 1000) % len(records) :][:1000]
            resp = c.post("/v1/predict", json={"model": "eta", "rows": batch})
            assert resp.status_code == 200, resp.text[:300]
            n += len(batch)
        out["batched"] = {
            "rows_per_s": n / (time.perf_counter() - t0),
            "batch_rows": 1000,
            "rows": n,
        }
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log_file.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer serving requests (same data)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no data at {args.data}: pass --data CSV")
    from zimo.hw import cpu_info

    work = Path(tempfile.mkdtemp(prefix="zimo-eta-"))
    project = work / "eta"
    zimo("init", project, "--template", "tabular", "--data", args.data, "--target", TARGET)
    t0 = time.perf_counter()
    zimo("build", project)
    build_s = time.perf_counter() - t0
    st = json.loads(zimo("status", project, "--json").stdout)
    ev = st["metrics"]["eval"]
    split = next((project / ".zimo" / "artifacts" / "split").iterdir())
    test = pd.read_parquet(split / "test.parquet")
    result = {
        "benchmark": "tabular_eta",
        "cpu": cpu_info(),
        "data": str(args.data.name),
        "rows": {s: len(pd.read_parquet(split / f"{s}.parquet")) for s in ("train", "dev", "test")},
        "zimo_build": {"seconds": round(build_s, 1), "metrics": ev},
        "hand_written": hand_written(split),
        "serving": serve_timings(
            project, test, 100 if args.quick else 500, 5 if args.quick else 20
        ),
        "quick": args.quick,
    }
    z, h = ev["lightgbm"], result["hand_written"]["hand_lightgbm_600"]
    s = result["serving"]
    result["targets"] = {
        "r2>=0.83": z["r2"] >= 0.83,
        "mae<=3.1": z["mae"] <= 3.1,
        "p50_one_row<=10ms": s["predict"]["p50_ms"] <= 10,
        "batched>=5000_rows_per_s": s["batched"]["rows_per_s"] >= 5000,
    }
    result["ratios"] = {
        "zimo_mae_vs_hand": z["mae"] / h["mae"],
        "zimo_r2_minus_hand": z["r2"] - h["r2"],
    }
    out = args.out or RESULTS / ("tabular_eta.quick.json" if args.quick else "tabular_eta.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = [
        f"# tabular_eta ({'quick' if args.quick else 'full'}) — {result['cpu']['model']}, "
        f"{result['cpu']['cores']} cores, bf16={result['cpu']['bf16']}",
        "",
        f"Rows: {result['rows']}. `zimo build` (init + build, no tuning): {build_s:.0f} s.",
        "",
        "| system | R² | MAE (min) | RMSE | within ±5 min |",
        "|---|---|---|---|---|",
    ]
    for name, m in [*((f"zimo {k}", v) for k, v in ev.items()), *result["hand_written"].items()]:
        md.append(f"| {name} | {m['r2']:.4f} | {m['mae']:.3f} | {m['rmse']:.3f} | "
                  f"{m.get('within_tol', m.get('within_5min')):.3f} |")  # fmt: skip
    md += ["", "| serving | p50 ms | p99 ms |", "|---|---|---|"]
    for k in ("predict", "v2_infer"):
        md.append(f"| one row, {k} | {s[k]['p50_ms']:.2f} | {s[k]['p99_ms']:.2f} |")
    md += ["", f"Batched (1,000-row requests): {s['batched']['rows_per_s']:.0f} rows/s.", "",
           "Targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items())]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
