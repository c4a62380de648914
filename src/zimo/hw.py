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


def cpu_prefers_int8() -> bool:
    """True where label inference should run the frozen base in int8 (``zimo.infer.fastpath``):
    CPUs without fast bf16, i.e. AVX2-only laptops and servers. ``ZIMO_INT8=0/1`` overrides.

    Measured on the demo's sub-model, AVX2 kind emulated: int8 labels agreed with fp32's on
    768/769 test rows (benchmarks/results/cpu_infer.md, all rows, a loaded machine; 256/256 dev
    rows earlier), and on the idle machine the p50 at batch 1 was about half fp32's
    (benchmarks/results/cpu_infer.quick.md). On bf16 CPUs the bf16 path is kept, so nothing
    changes there unless asked for."""
    env = os.environ.get("ZIMO_INT8", "").strip()
    if env in ("0", "1"):
        return env == "1"
    return not cpu_has_fast_bf16()


def cores() -> int:
    """Cores this process may use: ``ZIMO_THREADS`` when set, else its CPU affinity.

    ``ZIMO_THREADS`` shares one machine between several Zimo processes (test workers, two
    builds side by side): each gets its share instead of a thread per core, which on a busy
    machine makes OpenMP teams spin-wait on each other's descheduled threads."""
    env = os.environ.get("ZIMO_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass  # a malformed value falls back to the machine's cores
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, n)


def idle_cores(own_load: float = 0.0) -> int:
    """Cores that other processes leave idle: :func:`cores` minus the 1-minute load average
    that is not this process's own (``own_load``: threads of ours that were runnable), at
    least 1.

    Why not always every core: torch's OpenMP threads meet at a barrier after every op, and
    when the machine is oversubscribed one descheduled thread stalls the others, which spin
    while they wait, burning CPU time without progress (the guard measured a forward pass at
    0.37 CPU s with one thread and 3.0 with two at load ~10 on 2 cores, see
    ``zimo.guard.detect.pick_threads``; training steps, many small ops each, suffer the same:
    benchmarks/results/train_lora.avx2.quick.md). On an idle machine this is every core.
    """
    n = cores()
    if os.environ.get("ZIMO_THREADS", "").strip():
        return n  # an explicit share is kept as given
    try:
        busy = max(0.0, os.getloadavg()[0] - own_load)
    except OSError:  # not available on this platform
        busy = 0.0
    return max(1, min(n, int(n - busy + 0.5)))


def serving_threads() -> int:
    """Torch threads for a server's engine: every core but one. The server process also runs
    an event loop (HTTP, streaming) and tokenisation; with a thread per core the engine's
    OpenMP team spin-waits whenever one of its threads is preempted, and on a busy 2-core
    machine a 16-token answer took 10.9 s instead of 1.1 s (benchmarks/results/serve_load)."""
    return max(1, cores() - 1)


def set_threads() -> int:
    """Use every core (:func:`cores`) for intra-op parallelism (torch defaults can be lower in
    containers)."""
    import torch

    n = cores()
    torch.set_num_threads(n)
    return n


@functools.lru_cache(maxsize=64)
def fastest_attention(
    dtype: str, batch: int, heads: int, seq: int, head_dim: int, backward: bool = True
) -> dict:
    """Which scaled-dot-product-attention kernel is faster here for this shape: ``flash`` or
    ``math`` (torch's plain matmul + softmax). Measured, not assumed: on an AVX-512 BF16 CPU
    without AMX, torch 2.13's CPU flash kernel took 2x the math path in bf16 (forward +
    backward, batch 8 x 9 heads x 64-128 tokens) while in fp32 the two were even; AMX machines
    may differ. One causal forward (+ backward) per kernel on random tensors, best of 3:
    tens of milliseconds, once per shape and process.

    Returns ``{"backend": "flash"|"math", "flash_ms": .., "math_ms": ..}``.
    """
    import time

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dt = getattr(torch, dtype)
    seq = max(2, min(seq, 4096))
    gen = torch.Generator().manual_seed(0)
    qkv = [
        torch.randn(batch, heads, seq, head_dim, generator=gen).to(dt).requires_grad_(backward)
        for _ in range(3)
    ]
    best: dict[str, float] = {}
    for name, kernel in (("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
        times = []
        with sdpa_kernel([kernel]), torch.set_grad_enabled(backward):
            for _ in range(4):
                t = time.perf_counter()
                out = torch.nn.functional.scaled_dot_product_attention(*qkv, is_causal=True)
                if backward:
                    out.float().sum().backward()
                times.append(time.perf_counter() - t)
        best[name] = min(times[1:]) * 1000  # the first call pays one-off set-up
    # Flash (the default) unless math is clearly faster: small timing noise should not flip it.
    backend = "math" if best["math"] < 0.85 * best["flash"] else "flash"
    return {
        "backend": backend,
        "flash_ms": round(best["flash"], 2),
        "math_ms": round(best["math"], 2),
    }


def attention_kernel(backend: str | None):
    """A context manager that makes ``scaled_dot_product_attention`` use ``backend``
    (``flash``/``math``; ``None``: torch's own choice)."""
    import contextlib

    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([{"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}[backend]])
