"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "zimo_requests", "Requests by endpoint, model and status", ["endpoint", "model", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "zimo_request_latency_seconds", "End-to-end request latency",
            ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "zimo_compute_seconds", "Engine compute time per request", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "zimo_tokens", "Tokens by model and kind (prompt|completion)", ["model", "kind"],
            registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "zimo_cost_usd", "Cost in USD by answering model", ["model"], registry=r
        )
        self.queue = Gauge("zimo_queue_depth", "Jobs waiting for the engine", registry=r)
        self.adapters = Gauge("zimo_adapters_loaded", "LoRA adapters in memory", registry=r)
        self.batch = Histogram(
            "zimo_batch_size", "Rows per engine batch", buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )  # fmt: skip

    def observe(
        self,
        endpoint: str,
        model: str,
        status: int,
        latency_s: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        compute_s: float | None = None,
    ) -> None:
        self.requests.labels(endpoint, model, str(status)).inc()
        self.latency.labels(endpoint, model).observe(latency_s)
        if prompt_tokens:
            self.tokens.labels(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(model, "completion").inc(completion_tokens)
        if cost:
            self.cost.labels(model).inc(cost)
        if compute_s is not None:
            self.compute.labels(model).observe(compute_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
