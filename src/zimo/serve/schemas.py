"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic.

Unknown fields are accepted and ignored (clients send ``user``, ``seed``, penalties…), as
OpenAI-compatible servers do; wrong types and out-of-range values are 400 errors that name the
parameter.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zimo.serve.errors import APIError

# Bounds every request field is checked against before anything reaches a batch: one job
# whose value the engine cannot take (a seed beyond 64 bits, a top_p that rounds to 0 in
# float32) would otherwise fail every request batched beside it.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.Generator.manual_seed accepts
MAX_INT = 2**31 - 1  # token counts beyond this are nonsense; keeps the schema finite


class _Lenient(BaseModel):
    # Floats must be finite: NaN/inf pass no sampling step meaningfully.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class TextPart(_Lenient):
    type: str = "text"
    text: str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(_Lenient):
    include_usage: bool = False


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"] = "text"


class _Sampling(_Lenient):
    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    # Tool calling is passed to the upstream unchanged; local sub-models cannot call tools,
    # so they refuse these fields (400) instead of silently answering without tool_calls.
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    # vLLM-compatible extension: keep generating through end-of-sequence (benchmarks).
    ignore_eos: bool = False
    # vLLM-compatible extension: > 1 discourages tokens the answer already used (small models
    # loop under greedy decoding); `zimo eval`'s eval.repetition_penalty is the same penalty.
    repetition_penalty: float | None = Field(None, ge=1.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    def wanted_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None

    def wanted_max_tokens(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Lenient):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=MAX_INT)


TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")


def refuse_tools(raw: dict[str, Any], model: str) -> None:
    """A 400 when a request for a model that cannot call tools carries tool fields."""
    for f in TOOL_FIELDS:
        if raw.get(f) is not None:
            raise APIError(
                400,
                f"`{model}` cannot call tools: remove '{f}' from the request, or send it to a "
                "model that supports tool calling (the upstream).",
                param=f,
                code="tools_not_supported",
            )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body, or a 400 in OpenAI format."""
    if not raw.strip():
        raise APIError(400, "We could not parse the JSON body of your request: the body is empty.")
    try:
        # strict UTF-8: no invalid bytes get through; NaN/Infinity are not JSON.
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        # JSON escapes can still carry lone surrogates (\ud800), which no tokenizer accepts.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except (json.JSONDecodeError, UnicodeError) as e:
        raise APIError(
            400,
            f"We could not parse the JSON body of your request ({e}). "
            "The body must be valid JSON in UTF-8.",
        ) from None
    except RecursionError:
        raise APIError(400, "The JSON body of your request is nested too deeply.") from None
    except ValueError as e:  # NaN/Infinity, or an integer past Python's digit limit
        raise APIError(
            400, f"We could not parse the JSON body of your request ({str(e)[:200]})."
        ) from None


def validate(model: type[BaseModel], data: Any) -> Any:
    """``model.model_validate(data)`` with the first problem as a 400 that names the param."""
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        got = err.get("input")
        got_s = "" if isinstance(got, dict | list) else f" (got {got!r:.80})"
        more = e.error_count() - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise APIError(
            400, f"Invalid value for '{loc}': {err['msg']}{got_s}{tail}", param=loc
        ) from None


# ----------------------------------------------------------------------------- documentation
# Bodies the handlers parse by hand (to answer OpenAI-shaped errors); these models describe
# them in the OpenAPI document so generic clients and fuzzers can build requests.
class FeedbackRequest(BaseModel):
    request_id: str
    feedback: Literal[-1, 0, 1]


class AdminModelRequest(BaseModel):
    path: str = Field(description="a trained sub-model folder")
    name: str | None = None


class KeyCreateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    models: list[str] | None = None
    rate_per_minute: int | None = Field(None, ge=1, le=MAX_INT)  # SQLite holds 64 bits
    admin: bool = False
    big_budget_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD the key may spend on the big tier"
    )
    budget_period: Literal["day", "month", "total"] | None = Field(
        None, description="what the budget is per (UTC day, calendar month, in total); month"
    )


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error, OpenAI's shape."""

    error: ErrorDetail


REQUEST_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/v1/chat/completions", "post"): ChatRequest,
    ("/v1/completions", "post"): CompletionRequest,
    ("/v1/embeddings", "post"): EmbeddingRequest,
    ("/v1/feedback", "post"): FeedbackRequest,
    ("/admin/models", "post"): AdminModelRequest,
    ("/ui/api/keys", "post"): KeyCreateRequest,
}
ERROR_STATUSES = {
    "400": "Invalid request (names the parameter)",
    "401": "Missing, wrong or revoked API key",
    "403": "Not allowed (model allow-list, admin endpoint, cross-site request)",
    "404": "Unknown model, path or object",
    "413": "Request body too large",
    "415": "Not a JSON body",
    "429": "Rate limit or queue full (see Retry-After), or an upstream budget spent "
    "(code insufficient_quota)",
    "504": "The model did not answer in time",
}


def complete_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the request bodies and the error responses to FastAPI's generated document."""
    from pydantic.json_schema import models_json_schema

    models = [*set(REQUEST_BODIES.values()), ErrorResponse]
    refs, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    error_ref = refs[(ErrorResponse, "validation")]
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            model = REQUEST_BODIES.get((path, method))
            if model is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(model, "validation")]}},
                }
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's default; this server answers 400
            for status, text in ERROR_STATUSES.items():
                responses.setdefault(
                    status,
                    {"description": text, "content": {"application/json": {"schema": error_ref}}},
                )
    return doc
