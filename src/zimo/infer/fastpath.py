"""Inference weights per CPU kind: int8 matmuls for the frozen base where the CPU has no bf16.

On CPUs with AVX512-BF16 or AMX, bf16 autocast roughly doubles fp32 matmul speed (and
``LabelScorer`` measures whether it pays). CPUs with only AVX2 (most laptops, older and AMD
servers) run bf16 many times *slower* than fp32, but they have fast 8-bit integer dot
products: a base Linear layer with int8 weights, activations quantised per row at each call
and int32 accumulation (:class:`Int8Linear`) reads a quarter of the weight bytes. LoRA
adapters stay in fp32 on top of the quantised base (their A/B matrices are small, and keeping
them exact keeps every adapter servable on one base); embeddings and the output head stay fp32
too (the head reads one row per label request).

It is the default for label scoring where the CPU has no fast bf16 (``zimo.hw.
cpu_prefers_int8``; ``ZIMO_INT8=0/1`` overrides): on the demo's 769 test rows the int8 labels
agreed with fp32's on all but one, and batched label scoring ran 1.5x fp32's messages/s on the
emulated AVX2 kind (benchmarks/results/cpu_infer.md). It pays only for many rows per matmul: a
label prompt's ~25-40 tokens after the cached prefix, not a generation step's one token per
sequence, where quantising the
activations costs more than the int8 GEMM saves (:func:`int8_probe`: 1 row at 2x fp32's time
on the emulated AVX2 kind, 32 rows at 0.6x). So an engine that also generates keeps the float
weights beside the int8 ones (``keep_float``) and decodes under :func:`float_weights`. Where
one fixed adapter is scored alone (evaluation, a sub-model served by itself), it is merged into
the base before quantising (:func:`merged_int8`, a copy of just the adapted layers). torch's
own dynamic quantisation (``torch.ao``, one activation scale per call) was measured first and
was worse: see :class:`Int8Linear`. On the AVX2 kind (no VNNI) the GEMM itself runs on
fbgemm's dynamic int8 linear where torch has it (:func:`fbgemm_dynamic`), with each row scaled to one absmax first so its
one activation scale per call is a scale per row: a layer's four Linears at a label prompt's
25 rows took 1.34 ms there against 1.66 ms on ``torch._int_mm`` on the emulated AVX2 kind (even
natively on an AVX512-VNNI Xeon), 0.22 against 0.55 ms at a generation step's one row, and a
label request about a fifth less time (benchmarks/results/int8_gemm.md, cpu_infer.rows300.xeon.fbgemm.md);
``torch._int_mm`` (oneDNN) stays the fallback. It needs torch's quantized tensors for packing
the weights (torch 2.13 warns they will be removed; the probe then finds no fbgemm).
Emulating the AVX2 kind for it takes ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` besides the
oneDNN/MKL caps. The guard's scorer and the
router's LM features do not use this path (fp32/bf16 as before).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from typing import Any

import torch

log = logging.getLogger("zimo.infer")

_MODE = threading.local()  # .float: Int8Linear layers that kept float weights use them

# Label prompts are ~20-80 tokens, a generation step 1-8: the probe times both regimes.
_PROBE_ROWS = (1, 32)


@functools.lru_cache(maxsize=1)
def int8_available() -> bool:
    """True where this torch build multiplies int8 matrices on the CPU (``torch._int_mm``)."""
    try:
        a = torch.ones(2, 8, dtype=torch.int8)
        return bool(torch._int_mm(a, a.T)[0, 0] == 8)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


@functools.cache
def weight_qmax() -> int:
    """The largest int8 weight magnitude the CPU's int8 GEMM adds up exactly: 127, or 63
    where it saturates. Without VNNI (AVX2-only CPUs) oneDNN multiplies u8 x s8 pairs into
    int16 with saturation (``vpmaddubsw``), shifting s8 activations by 128 first, so two
    products of 255 x 127 overflow: a row of large activations came out as 8160 instead of
    1032256. Weights held to 7 bits (255 x 63 x 2 < 32768) keep every sum exact, at about
    1.6x the weight rounding error. Probed, not read from the CPU flags, because the kernel
    picked also depends on oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``) and torch's build."""
    a = torch.full((2, 64), 127, dtype=torch.int8)
    a[1] = -127
    b = torch.full((8, 64), 127, dtype=torch.int8).T  # the [out, in] layout forward() uses
    exact = 127 * 127 * 64
    out = torch._int_mm(a, b)
    ok = bool((out[0] == exact).all() and (out[1] == -exact).all())
    if not ok:
        log.info("int8 GEMM saturates on this CPU (no VNNI): weights held to 7 bits")
    return 127 if ok else 63


@functools.cache
def fbgemm_dynamic() -> dict | None:
    """How :class:`Int8Linear` can run its GEMM on fbgemm's dynamic int8 linear
    (``torch.ops.quantized.linear_dynamic``), or None where this torch build has no fbgemm or
    its result is wrong: ``{"qmax": weight magnitude that adds up exactly}``.

    fbgemm is built for this case, a few rows against a prepacked weight: at a label prompt's
    ~25 rows a layer's four Linears took 1.34 ms against 1.66 ms on ``torch._int_mm`` on the
    emulated AVX2 kind (benchmarks/results/int8_gemm.md). Its activations are uint8 with a zero point,
    one scale per call; :class:`Int8Linear` divides each row by its own absmax first (and
    multiplies the output back), so the scale is per row, as on the ``_int_mm`` path. Its
    AVX2 kernel, like oneDNN's, sums u8 x s8 pairs into saturating int16 (``vpmaddubsw``):
    probed as :func:`weight_qmax` is, and weights then get 7 bits with 8-bit activations, the
    numbers the label agreement was measured with (``reduce_range``, 7-bit activations, would
    be the other way). ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` holds it to its AVX2 kernels on a
    newer CPU (measured: 2-5x slower than its AVX512-VNNI ones there).

    Used where ``torch._int_mm`` saturates (:func:`weight_qmax`: no VNNI, the AVX2 kind),
    where it measured faster; where oneDNN has VNNI the two measured even at 25 rows (0.78 vs
    0.80 ms a layer) and that CPU's int8 label path was timed on ``_int_mm``, so it stays.
    ``ZIMO_FBGEMM=0/1`` overrides."""
    env = os.environ.get("ZIMO_FBGEMM", "").strip()
    if env == "0" or (env != "1" and weight_qmax() == 127):
        return None
    engines = getattr(torch.backends.quantized, "supported_engines", [])
    if "fbgemm" not in engines:
        return None
    try:
        for qmax in (127, 63):
            w = torch.full((8, 64), float(qmax))
            w[4:] = -qmax
            packed = _prepack(w.to(torch.int8), torch.ones(8))
            x = torch.ones(2, 64)
            x[1] = -1.0
            y = torch.ops.quantized.linear_dynamic(x, packed, False)
            want = torch.tensor([[64.0 * qmax] * 4 + [-64.0 * qmax] * 4])
            want = torch.cat([want, -want])
            if torch.allclose(y, want, rtol=0.02):
                if qmax != 127:
                    log.info("fbgemm's int8 GEMM saturates on this CPU (no VNNI): 7-bit weights")
                return {"qmax": qmax}
    except (RuntimeError, AttributeError, NotImplementedError) as e:
        log.info("fbgemm dynamic int8 linear unavailable: %s", e)
    return None


def _prepack(qweight, scale):
    """fbgemm's packed form of int8 ``qweight`` [out, in] with per-output-channel ``scale``."""
    import warnings

    before = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "fbgemm"
        with warnings.catch_warnings():  # torch's notice that quantized tensors will go
            warnings.simplefilter("ignore")
            zero = torch.zeros(scale.numel(), dtype=torch.long)
            q = torch._make_per_channel_quantized_tensor(qweight, scale.double(), zero, 0)
            return torch.ops.quantized.linear_prepack(q, None)
    finally:
        torch.backends.quantized.engine = before


class Int8Linear(torch.nn.Linear):
    """A frozen ``nn.Linear`` whose matmul runs in int8: weights quantised per output channel,
    activations per row (token) at each call, int32 accumulation (``torch._int_mm``).

    Per-row activation scales matter: small LMs have rows (tokens) and input channels whose
    magnitudes are 10-100x the median; one scale per call (``torch.ao`` dynamic quantisation)
    gave 6% median and up to 40% output error per layer on SmolLM2 and flipped a third of the
    labels. Per row, plus ``smooth`` (SmoothQuant: divide the activations' outlier channels by
    ``s`` and multiply the weights' columns by it, ``s = sqrt(act_absmax / w_absmax)``, from
    calibration prompts), brought the median error to ~1%.

    It stays an ``nn.Linear`` (``in_features``/``out_features``, a placeholder ``weight`` that
    carries the dtype and device) so PEFT wraps it as a LoRA base layer like any Linear; the
    fp32 weight itself is dropped (merge adapters before quantising, not after) unless
    ``keep_float``: then it is kept (no copy) and used inside :func:`float_weights`."""

    def __init__(self, linear, act_absmax=None, keep_float: bool = False) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        if act_absmax is not None:
            a = act_absmax.float().clamp(min=1e-5)
            s = (a.sqrt() / w.abs().amax(dim=0).clamp(min=1e-5).sqrt()).clamp(1e-2, 1e2)
            w = w * s[None, :]
            self.register_buffer("inv_s", 1.0 / s)
        else:
            self.inv_s = None
        fb = fbgemm_dynamic() if w.device.type == "cpu" else None
        qmax = fb["qmax"] if fb else weight_qmax()
        sw = w.abs().amax(dim=1).clamp(min=1e-8) / qmax
        qw = torch.round(w / sw[:, None]).clamp(-qmax, qmax).to(torch.int8)
        # fbgemm keeps its own packed copy, so the plain int8 weight is not kept beside it;
        # nor is a ``qweight`` attribute left: PEFT takes a layer that has one for a GPTQ layer
        # and reads its device from it.
        self.packed = _prepack(qw, sw) if fb else None
        if not fb:
            # Stored [out, in] and used through its transpose: torch's CPU int8 GEMM measured
            # 1.6-2.5x faster on that layout than on a contiguous [in, out] copy.
            self.register_buffer("qweight", qw)
            self.register_buffer("wscale", sw[None, :])
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("qbias", bias)
        keep = keep_float and linear.bias is not None
        self.register_buffer("fweight", linear.weight.detach() if keep_float else None)
        self.register_buffer("fbias", linear.bias.detach() if keep else None)
        # Placeholder: PEFT and callers read a base layer's weight for its dtype and device.
        self.weight = torch.nn.Parameter(torch.empty(0, dtype=torch.float32), requires_grad=False)
        self.register_parameter("bias", None)

    def forward(self, x):
        if self.fweight is not None and getattr(_MODE, "float", False):
            return torch.nn.functional.linear(x, self.fweight, self.fbias)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        if self.inv_s is not None:
            x2 = x2 * self.inv_s
        # Each row's absmax scales it (abs + amax, not linalg.vector_norm(inf): that one
        # measured 93 us a call against ~17 us at a label prompt's size on the emulated AVX2
        # kind, not vectorised there).
        r = x2.abs().amax(dim=1, keepdim=True).clamp_(min=1e-8)
        if self.packed is not None:
            y = torch.ops.quantized.linear_dynamic(x2 / r, self.packed, False).mul_(r)
        else:
            sx = r / 127.0
            xq = torch.round(x2 / sx).to(torch.int8)
            y = torch._int_mm(xq, self.qweight.T).float() * (sx * self.wscale)
        if self.qbias is not None:
            y = y.add_(self.qbias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def int8_weight(self) -> torch.Tensor:
        """The int8 weight, ``[out, in]`` (unpacked from fbgemm's form where it is packed)."""
        if self.packed is None:
            return self.qweight
        return torch.ops.quantized.linear_unpack(self.packed)[0].int_repr()

    def int8_nbytes(self) -> int:
        """Bytes of the int8 weight, packed or not (fbgemm's packed form is not a buffer)."""
        return self.in_features * self.out_features

    def extra_repr(self) -> str:
        smooth = ", smoothed" if self.inv_s is not None else ""
        kept = ", float kept" if self.fweight is not None else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, int8{smooth}{kept}"
        )


@contextlib.contextmanager
def float_weights():
    """Inside this block (this thread), :class:`Int8Linear` layers that kept their float weight
    run in float: for generation steps, one row per sequence, where int8 is slower."""
    before = getattr(_MODE, "float", False)
    _MODE.float = True
    try:
        yield
    finally:
        _MODE.float = before


class Int8Part(torch.nn.Linear):
    """One of several frozen Linears that read the same input (a layer's q/k/v projections, an
    MLP's gate and up): their int8 weights are stacked into one :class:`Int8Linear`, which
    quantises the input once and runs one GEMM; each part returns its columns of that output.

    At a label prompt's ~36 rows per GEMM, a Linear's per-call work besides the GEMM (scaling,
    quantising and rescaling the activations: ~10 small ops) cost about as much as the GEMM
    itself on the emulated AVX2 kind; stacking 7 Linears a layer into 4 calls halves that.
    The first part called with an input runs the shared GEMM and the others reuse its output
    (matched by identity: the model passes the very same tensor to each); the output is
    dropped once every part has read it, so a batch does not keep activations alive."""

    def __init__(self, shared: Int8Linear, start: int, stop: int, n_parts: int, linear,
                 keep_float: bool = False) -> None:  # fmt: skip
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, stop - start
        self.start, self.stop, self.n_parts = start, stop, n_parts
        # Not a submodule: every part would list it again in named_modules().
        self.__dict__["shared"] = shared
        self.register_buffer("fweight", linear.weight.detach() if keep_float else None)
        keep = keep_float and linear.bias is not None
        self.register_buffer("fbias", linear.bias.detach() if keep else None)
        self.weight = torch.nn.Parameter(torch.empty(0, dtype=torch.float32), requires_grad=False)
        self.register_parameter("bias", None)

    def _apply(self, fn, recurse=True):
        self.shared._apply(fn, recurse)  # .to(device) reaches the shared weights too
        return super()._apply(fn, recurse)

    def forward(self, x):
        if self.fweight is not None and getattr(_MODE, "float", False):
            return torch.nn.functional.linear(x, self.fweight, self.fbias)
        sh = self.shared
        memo = sh.memo
        if memo is None or memo[0] is not x:
            memo = [x, sh(x), self.n_parts]
        memo[2] -= 1
        # One assignment, so a second thread sees either the old pair or the new one.
        sh.memo = memo if memo[2] > 0 else None
        return memo[1][..., self.start : self.stop]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 part [{self.start}:{self.stop}] of {self.shared.out_features}"  # fmt: skip


def _base_linears(model, only: set[int] | None = None) -> list[tuple[Any, str, Any]]:
    """``(parent, attribute, linear)`` for every frozen base Linear: not LoRA's own A/B
    matrices, not the output head, not a PEFT ``modules_to_save`` copy; with ``only``, just
    the Linears whose ``id`` is in it."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = []
    for name, parent in model.named_modules():
        if any(k in name.split(".") for k in ("lora_A", "lora_B", "modules_to_save")):
            continue
        for attr, child in parent.named_children():
            if attr in ("lora_A", "lora_B", "lm_head") or child is head:
                continue
            if type(child) is torch.nn.Linear and (only is None or id(child) in only):
                out.append((parent, attr, child))
    return out


# Calibration prompts for the smoothing factors: generic, several scripts and registers, in
# the model's own chat template. Outlier channels are a property of the model, not of a task.
CALIBRATION_TEXTS = (
    "Can you summarise the main points of this report in three sentences?",
    "URGENT: your parcel is waiting, confirm your address at the link below.",
    "def add(a, b):\n    return a + b  # why does this fail for strings?",
    "Meeting moved to 3pm tomorrow, room 204. Bring the Q3 numbers: $12,400 and 7.5%.",
    "请把这段话翻译成英文：今天天气很好，我们去公园散步吧。",
    "Est-ce que le train de 18h30 pour Lyon est en retard ce soir ?",
    "lol ok see u later, dont forget the keys!!",
    "Classify the sentiment of this review: the battery died after two days.",
)


def calibration_ids(tokenizer) -> list[list[int]]:
    """Token ids of :data:`CALIBRATION_TEXTS` as chat prompts (plain text without a template)."""
    out = []
    for text in CALIBRATION_TEXTS:
        try:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True
            )
            if hasattr(ids, "input_ids") or isinstance(ids, dict):
                ids = ids["input_ids"]
        except Exception:  # no chat template: the text alone
            ids = tokenizer(text)["input_ids"]
        out.append([int(i) for i in ids])
    return out


def activation_absmax(
    model, samples: list[list[int]], groups: list | None = None, only: set[int] | None = None
) -> dict[int, Any]:
    """Per-input-channel max |x| of every frozen base Linear over ``samples`` (one forward
    each), keyed by ``id(linear)``. The first position is left out: attention-sink tokens carry
    activations orders of magnitude above the rest and per-row scales handle them anyway.
    ``groups``: if a list, filled with lists of ``id(linear)`` that read the very same input
    tensor in the first forward (candidates for :class:`Int8Part`)."""
    stats: dict[int, Any] = {}
    hooks = []
    seen: dict[int, list] = {}  # id(input) -> [input, linear ids]; the input kept alive
    for _, _, lin in _base_linears(model, only):

        def hook(mod, args, _out, key=id(lin)):
            if groups is not None and not groups:
                seen.setdefault(id(args[0]), [args[0]]).append(key)
            x = args[0].detach()
            x = x[:, 1:] if x.dim() == 3 and x.shape[1] > 1 else x
            m = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).float()
            stats[key] = m if key not in stats else torch.maximum(stats[key], m)

        hooks.append(lin.register_forward_hook(hook))
    try:
        device = next(model.parameters()).device
        with torch.inference_mode():
            for ids in samples:
                model(input_ids=torch.tensor([ids], device=device), use_cache=False)
                if groups is not None and not groups:
                    groups += [v[1:] for v in seen.values()]
                    seen.clear()
    finally:
        for h in hooks:
            h.remove()
    return stats


def _stacked(lins: list) -> torch.nn.Linear:
    """One Linear whose output is the ``lins``' outputs side by side (a missing bias is 0)."""
    w = torch.cat([lin.weight.detach() for lin in lins], dim=0)
    out = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
    out.weight = torch.nn.Parameter(w, requires_grad=False)
    if any(lin.bias is not None for lin in lins):
        parts = [lin.bias if lin.bias is not None else w.new_zeros(lin.out_features) for lin in lins]  # fmt: skip
        out.bias = torch.nn.Parameter(torch.cat([b.detach() for b in parts]), requires_grad=False)
    return out


def quantize_base_int8(
    model,
    tokenizer=None,
    keep_float: bool = False,
    stack: bool = True,
    only: set[int] | None = None,
) -> int:
    """Replace the frozen base Linear layers of ``model`` (a causal LM or a ``PeftModel``)
    with :class:`Int8Linear`, in place, smoothed with activation statistics from
    :data:`CALIBRATION_TEXTS` when ``tokenizer`` is given; returns how many were replaced.
    ``stack``: Linears that read the same input in a calibration forward share one stacked
    int8 GEMM (:class:`Int8Part`; needs ``tokenizer``). ``only``: just the Linears whose ``id``
    is in this set (the others are left as they are)."""
    groups: list | None = [] if stack and tokenizer is not None else None
    stats = activation_absmax(model, calibration_ids(tokenizer), groups, only) if tokenizer is not None else {}  # fmt: skip
    layers = _base_linears(model, only)
    where = {id(lin): (parent, attr, lin) for parent, attr, lin in layers}
    done: set[int] = set()
    for ids in groups or []:
        members = [where[i] for i in ids if i in where and i not in done]
        # At least two, one input size and dtype (a LoRA layer's base Linears have different
        # parents, the LoRA wrappers, and still read the same tensor).
        if len(members) < 2 or len({(m.in_features, m.weight.dtype) for _, _, m in members}) != 1:  # fmt: skip
            continue
        lins = [m for _, _, m in members]
        shared = Int8Linear(_stacked(lins), stats.get(id(lins[0])))
        shared.memo = None
        start = 0
        for parent, attr, lin in members:
            part = Int8Part(shared, start, start + lin.out_features, len(members), lin, keep_float)
            setattr(parent, attr, part)
            start += lin.out_features
            done.add(id(lin))
    for parent, attr, lin in layers:
        if id(lin) not in done:
            setattr(parent, attr, Int8Linear(lin, stats.get(id(lin)), keep_float=keep_float))
    return len(layers)


def is_int8(model) -> bool:
    return any(isinstance(m, (Int8Linear, Int8Part)) for m in model.modules())


@functools.lru_cache(maxsize=16)
def int8_probe(in_features: int, out_features: int) -> dict:
    """Time one ``in_features`` x ``out_features`` Linear in fp32 and in int8 on this CPU,
    for a label-prompt-sized and a decode-sized input; best of 5 each, ~10 ms in all.
    ``faster``: int8 beat fp32 by 10% on both (timing noise must not flip the choice)."""
    if not int8_available():
        return {"faster": False, "reason": "no int8 kernels in this torch build"}
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(in_features, out_features)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out_features, in_features, generator=gen) * 0.02)
    q = Int8Linear(lin)
    res: dict[str, Any] = {"shape": [in_features, out_features]}
    ok = True
    with torch.inference_mode():
        for rows in _PROBE_ROWS:
            x = torch.randn(rows, in_features, generator=gen)
            best = {}
            for tag, mod in (("fp32", lin), ("int8", q)):
                times = []
                for _ in range(6):
                    t = time.perf_counter()
                    for _ in range(4):
                        mod(x)
                    times.append(time.perf_counter() - t)
                best[tag] = min(times[1:]) / 4 * 1e6
            res[f"rows{rows}_us"] = {k: round(v, 1) for k, v in best.items()}
            ok = ok and best["int8"] < 0.9 * best["fp32"]
    res["faster"] = ok
    return res


def int8_choice(model, device: str = "cpu") -> dict:
    """Whether to run ``model``'s base in int8 here: ``{"int8": bool, "reason": str}``.

    Where the CPU has no fast bf16 (``zimo.hw.cpu_prefers_int8``), or as ``ZIMO_INT8=0/1``
    says. Never on GPUs, nor where this torch build has no int8 kernels.
    """
    from zimo.hw import cpu_prefers_int8

    if not str(device).startswith("cpu"):
        return {"int8": False, "reason": f"device {device}"}
    env = os.environ.get("ZIMO_INT8", "").strip()
    if not cpu_prefers_int8():
        why = "ZIMO_INT8=0" if env == "0" else "this CPU has fast bf16 (ZIMO_INT8=1 forces int8)"
        return {"int8": False, "reason": why}
    if not int8_available():
        return {"int8": False, "reason": "no int8 kernels in this torch build"}
    if env == "1":
        return {"int8": True, "reason": "ZIMO_INT8=1"}
    return {"int8": True, "reason": "no fast bf16 on this CPU (ZIMO_INT8=0 keeps fp32)"}


def prepare_for_cpu_inference(
    model, tokenizer=None, device: str = "cpu", keep_float: bool = False
) -> dict:
    """Quantise ``model``'s frozen base to int8 in place where :func:`int8_choice` says so
    (smoothed with calibration prompts in ``tokenizer``'s chat template); returns the choice
    (``int8``, ``reason``, ``layers``). ``keep_float``: keep the float weights too, for
    :func:`float_weights` (engines that also generate)."""
    choice = int8_choice(model, device)
    if choice["int8"] and not is_int8(model):
        choice["layers"] = quantize_base_int8(model, tokenizer, keep_float=keep_float)
        log.info("int8 base: %d Linear layers (%s)", choice["layers"], choice["reason"])
    return choice


def drop_float_weights(model) -> int:
    """Free the float weights that :class:`Int8Linear`/:class:`Int8Part` layers kept
    (``keep_float``) once nothing will run them; returns how many layers held one."""
    n = 0
    for m in model.modules():
        if isinstance(m, (Int8Linear, Int8Part)) and m.fweight is not None:
            m.fweight, m.fbias = None, None
            n += 1
    return n


def _float_base(base) -> tuple[Any, Any] | None:
    """``(weight, bias)`` in float of a LoRA layer's base: a plain Linear, or an int8 one that
    kept its float weight; None where the float weight is gone."""
    if type(base) is torch.nn.Linear:
        return base.weight, base.bias
    if isinstance(base, Int8Part) and base.fweight is not None:
        qb = base.shared.qbias
        return base.fweight, None if qb is None else qb[base.start : base.stop]
    if isinstance(base, Int8Linear) and base.fweight is not None:
        return base.fweight, base.qbias
    return None


def mergeable(peft_model, adapter: str) -> bool:
    """Whether :func:`merged_int8` can fold ``adapter`` into the base: plain LoRA on Linear
    layers (no DoRA or other variant, no LoRA bias, no ``modules_to_save``, no embedding
    LoRA), each on a base whose float weight is at hand."""
    from peft.tuners.lora import Linear as LoraLinear

    cfg = getattr(peft_model, "peft_config", {}).get(adapter)
    if cfg is None or getattr(cfg, "use_dora", False) or getattr(cfg, "lora_bias", False):
        return False
    if getattr(cfg, "modules_to_save", None):
        return False
    found = False
    for _, mod in peft_model.named_modules():
        if adapter in getattr(mod, "lora_embedding_A", {}):
            return False
        if adapter not in getattr(mod, "lora_A", {}):
            continue
        if not isinstance(mod, LoraLinear) or adapter in getattr(mod, "lora_variant", {}):
            return False
        if _float_base(mod.get_base_layer()) is None:
            return False
        found = True
    return found


def merged_int8(peft_model, tokenizer, adapter: str | None = None):
    """A causal LM that computes ``peft_model`` with ``adapter`` (default: the active one)
    merged into the base weights before int8 quantisation: a LoRA layer then costs one int8
    GEMM instead of the base GEMM plus the adapter's two small matmuls, scaling and add (and
    PEFT's Python dispatch), which at batch 1 cost more than their arithmetic. For a fixed
    adapter served alone (evaluation, a sub-model served by itself); ``peft_model`` is left
    as it is and stays usable (zero-shot with the adapter disabled, other adapters).

    Only the adapted layers are new (int8, smoothed with their own calibration statistics,
    q/k/v and gate/up stacked as in :func:`quantize_base_int8`); everything else is shared
    with ``peft_model``, no copy: embeddings, norms, the head and the base's layers that the
    adapter does not touch. Needs the adapted layers' float weights: ``peft_model`` in float,
    or quantised with ``keep_float``. None where :func:`mergeable` says no."""
    import copy

    adapter = adapter or peft_model.active_adapter
    if not mergeable(peft_model, adapter):
        return None
    lm = peft_model.get_base_model()
    lora = {name: mod for name, mod in lm.named_modules() if adapter in getattr(mod, "lora_A", {})}
    # An unadapted part of a stacked group whose other parts are adapted (LoRA on q and v,
    # not k) is requantised with them: left on the shared GEMM it would run all the parts'
    # columns for its own.
    touched = {id(m.get_base_layer().shared) for m in lora.values() if isinstance(m.get_base_layer(), Int8Part)}  # fmt: skip
    plain = {}  # name -> the Int8Part (bare, or the base of another adapter's LoRA layer)
    for name, m in lm.named_modules():
        base = m.get_base_layer() if hasattr(m, "lora_A") else m
        if name in lora or name.endswith("base_layer") or not isinstance(base, Int8Part):
            continue
        if id(base.shared) in touched:
            if base.fweight is None:
                return None
            plain[name] = base
    # The modules on the way to an adapted layer are copied (cheap: no tensors), every other
    # module and every tensor is shared through deepcopy's memo.
    path = {""}
    for name in list(lora) + list(plain):
        parts = name.split(".")
        path.update(".".join(parts[:i]) for i in range(1, len(parts)))
    memo: dict[int, Any] = {}
    for name, mod in lm.named_modules():
        if name not in path:
            memo[id(mod)] = mod
    for t in list(lm.parameters()) + list(lm.buffers()):
        memo[id(t)] = t
    for m in lm.modules():  # an Int8Part's stacked weights are not a submodule
        if isinstance(m, Int8Part):
            memo[id(m.shared)] = m.shared
    out = copy.deepcopy(lm, memo)
    out.__dict__.pop("peft_config", None)  # PEFT's note on the wrapped model: no adapter here
    new: set[int] = set()
    with torch.no_grad():
        for name, mod in {**lora, **plain}.items():
            w, b = _float_base(mod.get_base_layer() if name in lora else plain[name])
            merged = w.float()
            if name in lora:
                merged = merged + mod.get_delta_weight(adapter).float()
            lin = torch.nn.Linear(merged.shape[1], merged.shape[0], bias=b is not None)
            lin.weight = torch.nn.Parameter(merged.to(w.dtype), requires_grad=False)
            if b is not None:
                lin.bias = torch.nn.Parameter(b.detach().clone(), requires_grad=False)
            parent_name, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent_name), attr, lin)
            new.add(id(lin))
    # Calibrated on float activations where the shared layers kept their float weights, as a
    # full quantisation is: statistics read through the int8 lower layers made the smoothing
    # worse (twice the label log-odds error against fp32 on a test adapter).
    with float_weights():
        quantize_base_int8(out, tokenizer, only=new)
    out.eval()
    return out


def prepare_for_label_scoring(
    model, tokenizer, device: str = "cpu", merge: bool = True
) -> tuple[Any, dict]:
    """:func:`prepare_for_cpu_inference` for scoring with a fixed adapter (``model``: a
    ``PeftModel``, or a plain causal LM): returns ``(scoring model, choice)``. On the int8
    path with ``merge``, the scoring model is :func:`merged_int8`'s copy with the active
    adapter merged (``choice["merged"]`` True) and ``model`` itself stays quantised and
    unmerged (for the base with the adapter disabled, sharing every layer the adapter does
    not touch); else it is ``model``. Float weights are kept only until the merge read them."""
    lora = merge and hasattr(model, "peft_config") and hasattr(model, "get_base_model")
    choice = prepare_for_cpu_inference(model, tokenizer, device, keep_float=lora)
    scoring = model
    if choice["int8"] and lora:
        scoring = merged_int8(model, tokenizer) or model
    drop_float_weights(model)
    choice["merged"] = scoring is not model
    return scoring, choice
