"""The ``route:`` section of ``zimo.yaml``: tiers with prices, a target, the router kind.

Example::

    route:
      tiers:                       # cheapest first; the last is the strongest
        - {name: classical, model: sms-tfidf, price_per_request: 0.0}
        - {name: gecko, model: sms-fraud, price_per_1m_tokens: 0.1}
        - {name: upstream, model: gpt-4o, price_per_1m_tokens: 10}
      target: {quality: 0.98}      # or {max_cost: 2.0}  (per 1k requests)
      router: {kind: ensemble}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zimo.prices import read_per_1k_keys, token_cost

# auto: gecko's first 12 layers where the CPU has native bf16, MiniLM elsewhere (decided by
# benchmarks/route_mmlu.py on unseen subjects and its decide() timing; docs/routing.md).
EMBEDDER_DEFAULT = "auto"

ROUTER_KINDS = ("logreg", "mlp", "knn", "gbm", "length", "features", "form", "ensemble")


class TierConfig(BaseModel):
    """One model the router may send a request to, with its price."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, description="tier name used in outcome data and logs")
    model: str | None = Field(None, description="model name served for this tier (default: name)")
    price_per_1m_tokens: float | None = Field(
        None, ge=0, description="USD per 1M prompt+answer tokens"
    )
    price_per_request: float | None = Field(None, ge=0, description="fixed price per call")

    @model_validator(mode="before")
    @classmethod
    def _per_1k(cls, data: Any) -> Any:
        return read_per_1k_keys(data, {"price_per_1k_tokens": "price_per_1m_tokens"})

    @property
    def served_model(self) -> str:
        return self.model or self.name

    def has_price(self) -> bool:
        return self.price_per_1m_tokens is not None or self.price_per_request is not None

    def cost(self, tokens: float) -> float:
        """Price of one call that reads and writes ``tokens`` tokens in total."""
        return (self.price_per_request or 0.0) + token_cost(tokens, self.price_per_1m_tokens)


class TargetConfig(BaseModel):
    """What the router must reach: a share of the strongest tier's quality, or a budget."""

    model_config = ConfigDict(extra="forbid")

    quality: float | None = Field(
        0.98, gt=0, le=1.5, description="share of the strongest tier's quality to keep"
    )
    max_cost: float | None = Field(None, gt=0, description="budget per 1000 requests")

    @model_validator(mode="after")
    def _one(self) -> TargetConfig:
        if self.max_cost is not None and "quality" not in self.model_fields_set:
            self.quality = None  # a budget alone replaces the default quality target
        if self.quality is not None and self.max_cost is not None:
            raise ValueError("route.target: give either `quality` or `max_cost`, not both")
        if self.quality is None and self.max_cost is None:
            raise ValueError("route.target: give `quality` (e.g. 0.98) or `max_cost`")
        return self


class RouterConfig(BaseModel):
    """How the pre-call router is learned."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["logreg", "mlp", "knn", "gbm", "length", "features", "form", "ensemble"] = (
        "ensemble"
    )
    label: Literal["gain", "good_enough", "cheap_correct"] = Field(
        "gain",
        description="gain: P(cheap right) - P(strong right) from two models; good_enough: the "
        "cheap tier is at least as good as the strongest on that prompt; cheap_correct: the "
        "cheap tier is right",
    )
    # 256 (what MiniLM was trained with): a ~100-token prompt costs the same at any truncation
    # ≥ 100, and 128 cost quality on unseen MMLU subjects (ensemble APGR 0.631 vs 0.642, CPT(50%)
    # 0.360 vs 0.353, grouped CV); 128 halves the cost of long prompts where that matters more.
    max_seq_length: int = Field(256, ge=8, le=512, description="prompt truncation (tokens)")
    embed_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="embedder precision; auto = bf16 on CPUs with native bf16"
    )
    embedder: str = Field(
        EMBEDDER_DEFAULT,
        pattern=r"^(auto|minilm|[^@\s]+@\d+)$",
        description="prompt vectors for the logreg/kNN/MLP scorers: minilm (the sentence "
        "embedder), <model>@<layer> (the mean-pooled hidden state after that layer of an "
        "embedded LM, e.g. gecko@12) or auto (gecko@12 where the CPU has native bf16, else "
        "minilm; resolved when the router is fitted)",
    )
    folds: int = Field(5, ge=2, le=20, description="cross-fitting folds for the thresholds")
    knn_k: int = Field(50, ge=1)
    seed: int = 0


class CascadeConfig(BaseModel):
    """Post-call escalation: answer with a cheap tier, escalate when it is unsure."""

    model_config = ConfigDict(extra="forbid")

    confidence: Literal["margin", "max_prob", "mean_logprob", "neg_entropy", "agreement"] = "margin"


class RouteConfig(BaseModel):
    """The ``route:`` section of ``zimo.yaml``."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[TierConfig] = Field(..., min_length=2, description="cheapest first")
    outcomes: str | None = Field(
        None, description="outcome CSV or folder of CSVs (prompt,<tier>...), project-relative"
    )
    target: TargetConfig = TargetConfig()
    router: RouterConfig = RouterConfig()
    cascade: CascadeConfig | None = None
    mode: Literal["router", "cascade"] = Field(
        "router",
        description="router: `auto` decides before the call; cascade: the project's "
        "name is served through the tiers, cheapest first (label projects)",
    )
    shadow_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="cascade: share of cheap answers also sent to the last "
        "tier, to measure live agreement",
    )
    calibration_max_cost: float | None = Field(
        None,
        ge=0,
        description="cascade: USD one `zimo route fit` may spend on new answers of the big "
        "tier (answers bought before are cached and free); None = no cap",
    )
    output_tokens: int = Field(
        16, ge=0, description="answer tokens assumed per call when pricing by tokens"
    )

    @model_validator(mode="after")
    def _tiers(self) -> RouteConfig:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"route.tiers: duplicate tier names {names}")
        for i, t in enumerate(self.tiers):
            # A cascade's local tiers are priced by machine time; zimo.route.live checks that
            # its upstream tier has a price.
            if not t.has_price() and self.mode != "cascade":
                raise ValueError(
                    f"route.tiers[{i}] ({t.name!r}) has no price: set price_per_1m_tokens or "
                    "price_per_request (0 is allowed)"
                )
        return self

    def tier(self, name: str) -> TierConfig:
        for t in self.tiers:
            if t.name == name:
                return t
        from zimo.errors import ConfigError

        raise ConfigError(
            f"unknown tier {name!r}", f"route.tiers has {[t.name for t in self.tiers]}"
        )

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]


def parse_route_config(data: dict | RouteConfig | None) -> RouteConfig:
    """Validate a ``route:`` mapping; pydantic errors become one-line ConfigErrors."""
    from pydantic import ValidationError

    from zimo.errors import ConfigError

    if isinstance(data, RouteConfig):
        return data
    if not data:
        raise ConfigError("zimo.yaml has no `route:` section", "add route.tiers and route.target")
    try:
        return RouteConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in ("route", *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{loc}: {msg}", "see the route: example in the docs") from None
