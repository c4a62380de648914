"""What a request cost: list prices for priced models, compute time for local sub-models.

A local sub-model costs its share of the engine's busy time × the machine's price per hour
(a batch's time is split between its rows by tokens processed). An upstream model costs
prompt and completion tokens × its list price (``cost.prices`` or ``upstream.default_price``).
"""

from __future__ import annotations

from zimo.serve.config import CostConfig, Price


def token_cost(price: Price, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * price.input_per_1m + completion_tokens * price.output_per_1m) / 1e6


def local_cost(
    cfg: CostConfig, model: str, compute_s: float, prompt_tokens: int, completion_tokens: int
) -> float:
    """Cost of a locally answered request (a list price in the table wins over compute)."""
    price = cfg.prices.get(model)
    if price is not None:
        return token_cost(price, prompt_tokens, completion_tokens)
    return compute_s * cfg.machine_price_per_hour / 3600.0


def upstream_cost(
    cfg: CostConfig, default: Price, model: str, prompt_tokens: int, completion_tokens: int
) -> float:
    return token_cost(cfg.prices.get(model, default), prompt_tokens, completion_tokens)
