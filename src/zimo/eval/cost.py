"""What a system costs and how fast it answers, with the assumptions spelled out.

Two cost models, because the money goes to different places:

- a *remote* system (teacher / upstream big model) is billed per token: cost of a request =
  prompt tokens × input price + completion tokens × output price (list prices from the config,
  tokens as counted by the endpoint's ``usage``);
- a *local* system (sub-model, base model, classical baseline) costs the machine it runs on:
  cost of a request = its measured compute seconds × machine price per hour / 3600. When
  requests were answered in batches, a request's compute seconds are its batch's wall time
  divided by the batch size (the machine was shared by the batch), while its *latency* is the
  batch's whole wall time (what the caller waited).

Headline numbers: cost per 1,000 requests (mean × 1000), latency p50 / p95 and output tokens
per second, each with a percentile bootstrap CI over the test items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from zimo.eval.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    bootstrap_mean,
    bootstrap_quantile,
    ci_from_sums,
)
from zimo.prices import token_cost


@dataclass
class Measurement:
    """What one request took: wall seconds waited, compute seconds used, tokens in/out."""

    latency_s: float
    compute_s: float | None = None  # default: latency_s (one request at a time)
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class CostModel:
    """Prices for one system. ``kind="local"`` uses the machine price, ``"remote"`` token prices.

    Prices are in the currency the config uses (the report just says "$").
    """

    kind: Literal["local", "remote"] = "local"
    machine_price_per_hour: float = 0.10
    machine: str = ""  # e.g. the CPU model, for the assumptions text
    price_in_per_1m: float = 0.0
    price_out_per_1m: float = 0.0
    notes: list[str] = field(default_factory=list)

    def request_cost(self, m: Measurement) -> float:
        if self.kind == "remote":
            return token_cost(m.prompt_tokens, self.price_in_per_1m) + token_cost(
                m.completion_tokens, self.price_out_per_1m
            )
        secs = m.compute_s if m.compute_s is not None else m.latency_s
        return secs * self.machine_price_per_hour / 3600.0

    def assumption(self, system: str) -> str:
        if self.kind == "remote":
            text = (
                f"{system}: billed per token at list price: {self.price_in_per_1m:g} per 1M prompt "
                f"tokens, {self.price_out_per_1m:g} per 1M completion tokens (token counts from "
                f"the endpoint's usage fields); latency includes the network."
            )
        else:
            where = f" ({self.machine})" if self.machine else ""
            text = (
                f"{system}: runs on the local machine{where} priced at "
                f"{self.machine_price_per_hour:g} per hour; a request costs its measured compute "
                "seconds × that price. Batched requests share their batch's time."
            )
        return " ".join([text, *self.notes])


def measurements_from_batches(
    batch_seconds: Sequence[float],
    batch_sizes: Sequence[int],
    prompt_tokens: Sequence[int] | None = None,
    completion_tokens: Sequence[int] | None = None,
) -> list[Measurement]:
    """Per-request measurements from batched generation (items listed batch by batch)."""
    out: list[Measurement] = []
    for secs, size in zip(batch_seconds, batch_sizes, strict=True):
        for _ in range(size):
            out.append(Measurement(latency_s=float(secs), compute_s=float(secs) / max(1, size)))
    for i, m in enumerate(out):
        if prompt_tokens is not None:
            m.prompt_tokens = int(prompt_tokens[i])
        if completion_tokens is not None:
            m.completion_tokens = int(completion_tokens[i])
    return out


def cost_summary(
    measurements: Sequence[Measurement],
    model: CostModel,
    *,
    system: str = "system",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Cost per 1k requests, latency p50/p95, tokens/s (with CIs) and the assumption text."""
    if not measurements:
        raise ValueError(f"no measurements for {system}: nothing to cost")
    kw = dict(n_boot=n_boot, seed=seed, confidence=confidence)
    costs = np.array([model.request_cost(m) for m in measurements]) * 1000.0
    lat = np.array([m.latency_s for m in measurements], dtype=np.float64)
    comp = np.array([m.compute_s if m.compute_s is not None else m.latency_s for m in measurements])
    toks = np.array([m.completion_tokens for m in measurements], dtype=np.float64)
    how = (
        "token list prices × counted tokens"
        if model.kind == "remote"
        else "measured compute seconds × machine price per hour"
    )
    out: dict[str, Any] = {
        "n": len(measurements),
        "kind": model.kind,
        "cost_per_1k": bootstrap_mean(
            costs, method=f"mean cost of a request × 1000 ({how}); percentile bootstrap CI", **kw
        ).to_dict(),
        "latency_p50_s": bootstrap_quantile(
            lat, 0.5, method="median wall-clock seconds per request; percentile bootstrap CI", **kw
        ).to_dict(),
        "latency_p95_s": bootstrap_quantile(
            lat,
            0.95,
            method="95th percentile of wall-clock seconds per request; bootstrap CI",
            **kw,
        ).to_dict(),
        "total_compute_s": float(comp.sum()),
        "assumption": model.assumption(system),
    }
    if toks.sum() > 0 and comp.sum() > 0:
        out["tokens_per_s"] = ci_from_sums(
            np.stack([toks, comp], axis=1),
            lambda s: s[:, 0] / np.maximum(s[:, 1], 1e-12),
            method="generated tokens / compute seconds, summed over requests; percentile "
            "bootstrap CI",
            **kw,
        ).to_dict()
    return out


def assumptions_text(models: dict[str, CostModel], *, extra: Sequence[str] = ()) -> list[str]:
    """The report's cost assumptions: one sentence per system plus general caveats."""
    lines = [m.assumption(name) for name, m in models.items()]
    lines.append(
        "Costs exclude training, storage and engineering time; local prices assume the machine "
        "is busy (an idle reserved machine costs the same per hour whatever it serves)."
    )
    lines.append(
        "Latency was measured on this evaluation run's machine while it may have been shared; "
        "compare systems measured in the same run."
    )
    lines.extend(extra)
    return lines
