"""The int8 GEMM kernels for a label prompt's Linear layers, side by side, per CPU kind.

For each Linear shape of the demo's base (gecko, SmolLM2-135M: q/k/v stacked 576 -> 960, o
576 -> 576, gate/up stacked 576 -> 3072, down 1536 -> 576) at a label prompt's rows (25, the
median suffix after the cached prompt prefix) and at 1 row (a generation step), one torch
thread, best of 5 runs of ``--n`` calls each:

- ``fp32``: ``nn.Linear`` (MKL);
- ``int_mm``: :class:`zimo.infer.fastpath.Int8Linear` on ``torch._int_mm`` (oneDNN), the whole
  layer call (activation scaling and quantising included), ``ZIMO_FBGEMM=0``;
- ``fbgemm``: the same layer on fbgemm's dynamic int8 linear (``ZIMO_FBGEMM=1``; the default
  where ``_int_mm`` saturates, the AVX2 kind);
- ``int_mm_gemm_only`` / ``fbgemm_gemm_only``: the bare kernels (int8 activations given for
  ``_int_mm``; fbgemm's call still quantises its float input), for the GOP/s column.

Each kind in its own child process: ``native``, and ``avx2``, the AVX2-only kind emulated
(``cpu_infer.AVX2_ENV``, fbgemm capped with ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``; the
``fbgemm_capped`` field says whether the cap took: fbgemm's weight probe then finds saturating
16-bit sums, as on a CPU without VNNI).

    python benchmarks/int8_gemm.py --out benchmarks/results/int8_gemm.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHAPES = {"qkv": (576, 960), "o": (576, 576), "gate_up": (576, 3072), "down": (1536, 576)}


def _best_us(fn, n: int) -> float:
    for _ in range(5):
        fn()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def child(rows_list: list[int], n: int) -> dict:
    import torch

    from zimo.infer import fastpath

    torch.set_num_threads(1)
    os.environ["ZIMO_FBGEMM"] = "1"  # fbgemm's column on every kind, not only where it is picked
    fastpath.fbgemm_dynamic.cache_clear()
    fb = fastpath.fbgemm_dynamic()
    out = {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "fbgemm": fb,
        "int_mm_weight_qmax": fastpath.weight_qmax(),
        "fbgemm_capped": bool(fb) and fb["qmax"] != 127,
        "rows": {},
    }
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for rows in rows_list:
            per = {}
            for name, (k, m) in SHAPES.items():
                lin = torch.nn.Linear(k, m, bias=False)
                lin.weight.copy_(torch.randn(m, k, generator=gen) * 0.02)
                x = torch.randn(rows, k, generator=gen)
                act = x.abs().amax(0)
                os.environ["ZIMO_FBGEMM"] = "0"
                fastpath.fbgemm_dynamic.cache_clear()
                q_mm = fastpath.Int8Linear(lin, act)
                os.environ["ZIMO_FBGEMM"] = "1"
                fastpath.fbgemm_dynamic.cache_clear()
                q_fb = fastpath.Int8Linear(lin, act)
                xq = torch.randint(-127, 128, (rows, k), dtype=torch.int8, generator=gen)
                r = {
                    "fp32": _best_us(partial(lin, x), n),
                    "int_mm": _best_us(partial(q_mm, x), n),
                    "int_mm_gemm_only": _best_us(partial(torch._int_mm, xq, q_mm.qweight.T), n),
                }
                if q_fb.packed is not None:
                    r["fbgemm"] = _best_us(partial(q_fb, x), n)
                    dyn = torch.ops.quantized.linear_dynamic
                    r["fbgemm_gemm_only"] = _best_us(partial(dyn, x, q_fb.packed, False), n)
                ref = lin(x)
                err = {
                    "int_mm": float((q_mm(x) - ref).norm() / ref.norm()),
                    **(
                        {"fbgemm": float((q_fb(x) - ref).norm() / ref.norm())}
                        if q_fb.packed is not None
                        else {}
                    ),  # fmt: skip
                }
                gop = 2 * rows * k * m / 1e9
                per[name] = {
                    "shape": [k, m],
                    "us": {a: round(b, 1) for a, b in r.items()},
                    "gop_per_s": {a: round(gop / b * 1e6, 1) for a, b in r.items()},
                    "rel_error_vs_fp32": {a: round(b, 4) for a, b in err.items()},
                }
            total = {}
            for v in per.values():
                for a, b in v["us"].items():
                    total[a] = total.get(a, 0.0) + b
            out["rows"][str(rows)] = {
                "shapes": per,
                "layer_us": {a: round(b, 1) for a, b in total.items()},
            }
    return out


def to_markdown(r: dict) -> str:
    lines = [
        "# int8 GEMM kernels for a label prompt's Linear layers",
        "",
        f"CPU: {r['cpu']['model']} ({r['cpu']['cores']} cores); load average at start "
        f"{r['loadavg_start']}, at end {r['loadavg_end']}. One torch thread, best of 5 x {r['n']} calls.",  # fmt: skip
        "",
    ]
    for kind, res in r["kinds"].items():
        if "error" in res:
            lines += [f"## {kind}: failed ({res['error']})", ""]
            continue
        lines += [
            f"## {kind} (forced: {json.dumps(r['forced'][kind]) or 'nothing'}; torch capability "
            f"{res['capability']}; fbgemm {res['fbgemm']}, capped to AVX2: {res['fbgemm_capped']}; "
            f"_int_mm weight qmax {res['int_mm_weight_qmax']})",
            "",
        ]
        for rows, rr in res["rows"].items():
            lines += [
                f"{rows} rows: microseconds per call (GOP/s)",
                "",
                "| Linear | fp32 | int_mm layer | fbgemm layer | int_mm GEMM only | fbgemm GEMM only | rel. error int_mm / fbgemm |",  # fmt: skip
                "|---|---|---|---|---|---|---|",
            ]
            for name, v in rr["shapes"].items():
                us, gs, e = v["us"], v["gop_per_s"], v["rel_error_vs_fp32"]
                cell = lambda a: f"{us[a]} ({gs[a]})" if a in us else "n/a"  # noqa: E731,B023
                lines.append(
                    f"| {name} {v['shape'][0]}x{v['shape'][1]} | {cell('fp32')} | {cell('int_mm')} | "
                    f"{cell('fbgemm')} | {cell('int_mm_gemm_only')} | {cell('fbgemm_gemm_only')} | "
                    f"{e.get('int_mm')} / {e.get('fbgemm', 'n/a')} |"
                )
            lu = rr["layer_us"]
            lines += ["", f"One decoder layer's Linears: {json.dumps(lu)} us.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default="native,avx2")
    ap.add_argument("--rows", default="25,1", help="activation rows per call, comma-separated")
    ap.add_argument("--n", type=int, default=100, help="calls per timed run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/int8_gemm.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    rows = [int(x) for x in args.rows.split(",") if x.strip()]
    if args.child:
        print(json.dumps(child(rows, args.n)))
        return
    import cpu_infer as ci
    from zimo.fileio import write_bytes_atomic, write_json_atomic
    from zimo.hw import cpu_info

    res: dict = {"cpu": cpu_info(), "n": args.n, "loadavg_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    res["kinds"], res["forced"] = {}, {}
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        cmd = [sys.executable, __file__, "--child", "--rows", args.rows, "--n", str(args.n)]
        res["forced"][kind], res["kinds"][kind] = ci.run_kind(cmd, kind)
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    write_json_atomic(out, res)
    write_bytes_atomic(out.with_suffix(".md"), to_markdown(res).encode("utf-8"))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
