"""What this CPU can do, so training and inference pick the fast path at run time.

Some machines have AMX / AVX-512 BF16 (bf16 autocast ≈ 2× fp32 there), others only AVX2
(bf16 autocast is several times *slower* than fp32 there). We read the flags once.
"""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    interesting = sorted(
        f for f in flags if f.startswith(("avx", "amx", "fma", "f16c", "sse4")) or f == "bf16"
    )
    return {
        "model": model,
        "cores": os.cpu_count() or 1,
        "flags": interesting,
        "bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "amx": "amx_bf16" in flags,
        "machine": platform.machine(),
    }


def cpu_has_fast_bf16() -> bool:
    """True where bf16 matmuls run in hardware (AVX512-BF16 or AMX)."""
    if os.environ.get("ZIMO_BF16") in ("0", "1"):
        return os.environ["ZIMO_BF16"] == "1"
    return cpu_info()["bf16"]


def set_threads() -> int:
    """Use every core for intra-op parallelism (torch defaults can be lower in containers)."""
    import torch

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return n
