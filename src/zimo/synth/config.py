"""Config models for the ``teacher:`` and ``synth:`` sections of ``zimo.yaml``.

Example::

    teacher:
      base_url: https://api.example.com/v1
      model: big-model
      api_key_env: TEACHER_API_KEY
      price_in_per_1m: 0.5          # USD per 1M tokens, as providers quote
      price_out_per_1m: 1.5
      max_concurrency: 8
      requests_per_minute: 600
      max_cost: 5.0          # dollars (or your currency); the run stops cleanly at this spend
      local: false           # true only for a teacher inside your network: no PII redaction
    synth:
      mode: self_instruct    # self_instruct | answer | label | distill
      self_instruct: {num_instructions: 500, language: zh}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zimo.prices import read_per_1k_keys


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherConfig(_Section):
    """An OpenAI-compatible endpoint used as the teacher (or judge)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL")
    model: str = Field("unicorn", description="model name sent to the endpoint")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="env var holding the API key (None: no key)"
    )
    price_in_per_1m: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    price_out_per_1m: float = Field(0.0, ge=0, description="USD per 1M completion tokens")
    max_concurrency: int = Field(8, ge=1, le=1024)
    requests_per_minute: float | None = Field(
        None, gt=0, description="start at most this many requests per minute (None: no limit)"
    )
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    max_retries: int = Field(6, ge=0, le=50, description="retries on 429 / 5xx / timeouts")
    backoff_base: float = Field(1.0, gt=0, description="first backoff in seconds (doubles)")
    backoff_max: float = Field(60.0, gt=0, description="longest single backoff in seconds")
    max_cost: float | None = Field(
        None,
        ge=0,
        description="stop cleanly at this total spend (cached answers count at their price)",
    )
    local: bool = Field(
        False, description="the teacher runs inside your network: prompts are not PII-redacted"
    )
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _per_1k(cls, data: Any) -> Any:
        return read_per_1k_keys(data, {"price_in_per_1k": "price_in_per_1m",
                                       "price_out_per_1k": "price_out_per_1m"})  # fmt: skip


class SelfInstructOptions(_Section):
    """Self-Instruct / Alpaca generation from seed tasks."""

    seed_tasks: str | None = Field(
        None, description="seed tasks jsonl (Self-Instruct format); None: the caller passes it"
    )
    num_instructions: int = Field(100, ge=1, description="stop after this many kept tasks")
    language: Literal["en", "zh"] = "en"
    num_prompt_seeds: int = Field(3, ge=1, le=20, description="seed examples per prompt")
    num_prompt_generated: int = Field(
        0, ge=0, le=10, description="already generated tasks shown per prompt (Self-Instruct: 2)"
    )
    tasks_per_request: int = Field(20, ge=1, le=50)
    requests_per_round: int = Field(8, ge=1, description="requests sent together per round")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="drop if ROUGE-L ≥ this")
    min_instruction_tokens: int = Field(4, ge=1)
    max_instruction_tokens: int = Field(150, ge=1)
    max_rounds: int = Field(200, ge=1)
    stall_rounds: int = Field(3, ge=1, description="stop after this many rounds that add nothing")
    seed: int = 42
    banned_words: list[str] | None = Field(
        None, description="extra words that mark tasks a text model cannot do"
    )


class AnswerOptions(_Section):
    """Answers for unlabeled prompts."""

    system_prompt: str | None = None
    keep_truncated: bool = Field(False, description="keep answers cut off by max_tokens")
    text_field: str = "text"


class LabelOptions(_Section):
    """Labelling with a closed label set."""

    labels: list[str] | None = Field(None, description="label set (default: the project's)")
    label_descriptions: dict[str, str] | None = None
    instruction: str | None = Field(None, description="what the labels mean / the task")
    structured_output: Literal["auto", "json_schema", "none"] = Field(
        "auto", description="auto: JSON schema when the server takes it, else constrained parsing"
    )
    max_label_retries: int = Field(2, ge=0, le=10, description="re-asks for an off-set answer")
    overwrite: bool = Field(False, description="relabel records that already have a label")

    @model_validator(mode="after")
    def _check(self) -> LabelOptions:
        if self.labels is not None:
            if len(self.labels) < 2:
                raise ValueError("synth.label.labels needs at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("synth.label.labels has duplicates")
        return self


class DistillOptions(_Section):
    """Training data from the gateway request log."""

    log_db: str | None = Field(None, description="request log SQLite (default: the serve log)")
    models: list[str] | None = Field(None, description="keep requests for these model names")
    answered_by: list[str] | None = Field(None, description="keep answers from these models")
    since: str | None = Field(None, description="ISO time, inclusive")
    until: str | None = Field(None, description="ISO time, exclusive")
    feedback: Literal["any", "non_negative", "positive"] = "non_negative"
    only_success: bool = True
    redact: bool = True
    dedup: bool = True
    min_response_chars: int = Field(1, ge=0)


class SynthConfig(_Section):
    """The ``synth:`` section: which mode and its options."""

    mode: Literal["self_instruct", "answer", "label", "distill"] = "self_instruct"
    self_instruct: SelfInstructOptions = SelfInstructOptions()
    answer: AnswerOptions = AnswerOptions()
    label: LabelOptions = LabelOptions()
    distill: DistillOptions = DistillOptions()
    cache: str | None = Field(
        None, description="teacher cache SQLite path (default: <output>/../teacher_cache.sqlite)"
    )


def parse_sections(
    teacher: dict | None, synth: dict | None
) -> tuple[TeacherConfig | None, SynthConfig]:
    """Validate the ``teacher:`` and ``synth:`` mappings of ``zimo.yaml``.

    Errors become one-line :class:`~zimo.errors.ConfigError` naming the yaml key.
    """
    from pydantic import ValidationError

    from zimo.errors import ConfigError

    def check(model: type[BaseModel], raw: dict | None, name: str) -> BaseModel:
        try:
            return model.model_validate(raw or {})
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            key = ".".join([name, *(str(p) for p in err["loc"])])
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(_allowed(model, err["loc"]))
                raise ConfigError(
                    f"unknown key '{key}' in zimo.yaml", f"allowed keys: {allowed}"
                ) from None
            msg = err["msg"].removeprefix("Value error, ")
            raise ConfigError(f"'{key}' in zimo.yaml: {msg}", "fix the value") from None

    teacher_cfg = check(TeacherConfig, teacher, "teacher") if teacher is not None else None
    return teacher_cfg, check(SynthConfig, synth, "synth")  # type: ignore[return-value]


def _allowed(model: type[BaseModel], loc: tuple) -> list[str]:
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        field = (current.model_fields if current else {}).get(str(part))
        ann = field.annotation if field else None
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(current.model_fields) if current else []
