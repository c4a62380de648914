"""Typed configuration of ``zimo serve`` (the ``serve:`` section of ``zimo.yaml``).

Every model is ``extra="forbid"``: a typo in a key is an error, never silently ignored.
The defaults start a safe server: localhost only when no API keys exist, CORS off, bounded
bodies, tokens, queue and time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def serve_home() -> Path:
    """Where the server keeps its keys: ``$ZIMO_SERVE_HOME``, else ``$ZIMO_HOME/serve``
    (default ``~/.zimo/serve``)."""
    if os.environ.get("ZIMO_SERVE_HOME"):
        return Path(os.environ["ZIMO_SERVE_HOME"]).expanduser()
    return Path(os.environ.get("ZIMO_HOME") or Path.home() / ".zimo").expanduser() / "serve"


class SubModel(_Strict):
    """One servable model name: a LoRA adapter on the shared base (or the base itself).

    ``metadata`` is the sub-model's ``zimo_model.json`` (written by the train stage): ``task``
    (``label`` | ``chat`` | ``generate``), ``labels``, ``instruction``, ``base``.
    """

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]+$")
    adapter_dir: str | None = Field(None, description="PEFT adapter folder; None = the base")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def task(self) -> str:
        return str(self.metadata.get("task") or "chat")

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in (self.metadata.get("labels") or [])]


class Price(_Strict):
    """List price of a model in USD per million tokens."""

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)


class UpstreamConfig(_Strict):
    """The big model behind the gateway: any OpenAI-compatible endpoint."""

    base_url: str = Field(description="e.g. https://api.openai.com/v1 (must end with /v1)")
    api_key_env: str = Field(
        "ZIMO_UPSTREAM_API_KEY", description="env var that holds the upstream key (never logged)"
    )
    models: list[str] | None = Field(
        None, description="names forwarded upstream; None = every name that is not local"
    )
    timeout_s: float = Field(120.0, gt=0)
    default_price: Price = Price(input_per_1m=2.5, output_per_1m=10.0)
    budget_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="USD the whole gateway may spend upstream per budget_period (forwarded "
        "requests, cascades' big tier, shadow calls); None = no cap",
    )  # fmt: skip
    budget_period: Literal["day", "month", "total"] = Field(
        "month", description="what budget_usd is per: a UTC day, a calendar month, in total"
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("upstream.base_url must start with http:// or https://")
        return v.rstrip("/")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


class LimitsConfig(_Strict):
    """Request limits; over-limit requests get 413/400 (size), 429 (rate) or 504 (time)."""

    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_prompt_tokens: int = Field(4096, ge=16)
    max_new_tokens: int = Field(1024, ge=1, description="cap on max_tokens per request")
    default_max_tokens: int = Field(256, ge=1)
    request_timeout_s: float = Field(300.0, gt=0)
    default_rate_per_minute: int | None = Field(
        None, ge=1, description="per-key limit for keys without their own (None = unlimited)"
    )
    max_queue: int = Field(512, ge=1, description="queued generation jobs before 429")
    max_image_bytes: int = Field(
        750_000, ge=1024, description="one image (decoded from its data URL) before 413"
    )
    max_images: int = Field(16, ge=1, description="images per request before 413")


class RemoteImagesConfig(_Strict):
    """Fetching ``http(s)://`` image URLs in chat requests. Off by default: a URL the server
    fetches lets a caller make it reach into the network it sits in, so only hosts named here
    are fetched (redirects included), with a timeout and a size cap."""

    enabled: bool = False
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names (or host:port) the server may fetch images from; exact match",
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="whole fetch, connect to last byte")
    max_bytes: int | None = Field(
        None, ge=1024, description="largest image fetched (None = limits.max_image_bytes)"
    )
    max_redirects: int = Field(3, ge=0, le=10, description="each hop must be an allowed host too")

    @model_validator(mode="after")
    def _hosts(self) -> RemoteImagesConfig:
        if self.enabled and not self.allowed_hosts:
            raise ValueError("remote_urls.enabled needs allowed_hosts (the hosts it may fetch)")
        self.allowed_hosts = [h.strip().lower() for h in self.allowed_hosts]
        return self


class ImagesConfig(_Strict):
    """Images sent to image sub-models."""

    remote_urls: RemoteImagesConfig = RemoteImagesConfig()


class BatchingConfig(_Strict):
    """Micro-batching of concurrent requests (mixed adapters in one batch)."""

    max_batch_size: int = Field(16, ge=1, le=256)
    max_wait_ms: float = Field(4.0, ge=0, le=1000)


class BackendConfig(_Strict):
    """Which engine runs the sub-models."""

    kind: Literal["transformers", "llamacpp", "vllm"] = "transformers"
    base: str = Field("gecko", description="preset, HF folder, .gguf file or cached hub id")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    adapter_memory_mb: float = Field(
        512.0, gt=0, description="budget for loaded LoRA adapters; least recently used evicted"
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads (None = all cores but one, for the HTTP side)"
    )
    stacked_lora: bool = Field(
        True, description="batch mixed adapters with stacked weights (False = PEFT adapter_names)"
    )
    merge_single_adapter: bool = Field(
        True,
        description="on an int8 base, label requests of the only loaded adapter run on a copy "
        "with it merged into the int8 weights (faster; costs an int8 copy of its layers)",
    )
    batching: BatchingConfig = BatchingConfig()
    # llama.cpp only
    n_ctx: int = Field(4096, ge=256)


class CostConfig(_Strict):
    """Cost accounting: sub-models by compute seconds, others by list price."""

    machine_price_per_hour: float = Field(0.10, ge=0, description="USD per hour of this machine")
    prices: dict[str, Price] = Field(
        default_factory=dict, description="list price per model name (overrides compute pricing)"
    )


class LogConfig(_Strict):
    """The request log (SQLite) that ``zimo logs`` browses and ``zimo distill`` reads."""

    enabled: bool = True
    path: str | None = Field(None, description="SQLite file; None = ~/.zimo/requests.sqlite")
    redact: bool = Field(False, description="redact PII in logged prompts and responses")
    store_text: bool = Field(True, description="False = log metadata only, no prompt/response")


class ServeConfig(_Strict):
    """Configuration of ``zimo serve``."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    models: list[SubModel] = Field(default_factory=list)
    serve_base: bool = Field(True, description="also serve the bare base under its preset name")
    backend: BackendConfig = BackendConfig()
    upstream: UpstreamConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    images: ImagesConfig = ImagesConfig()
    cost: CostConfig = CostConfig()
    log: LogConfig = LogConfig()
    keys_db: str | None = Field(None, description="API keys; None = ~/.zimo/serve/keys.sqlite")
    require_keys: bool | None = Field(
        None,
        description="None = always off loopback; on loopback once any key exists (and from "
        "then on, even after the last key is revoked); True/False to force",
    )
    cors_origins: list[str] = Field(default_factory=list, description="empty = CORS off")
    embeddings: bool = Field(True, description="serve /v1/embeddings with the embedded MiniLM")
    watch_s: float | None = Field(
        5.0, description="poll project folders for newly trained sub-models (None = off)"
    )

    def keys_path(self) -> Path:
        return Path(self.keys_db).expanduser() if self.keys_db else serve_home() / "keys.sqlite"

    def log_path(self) -> Path:
        if self.log.path:
            return Path(self.log.path).expanduser()
        from zimo.logs.requests import default_path

        return default_path()  # $ZIMO_HOME/requests.sqlite, what `zimo logs` reads by default
