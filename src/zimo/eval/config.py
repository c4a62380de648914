"""The ``eval:`` section of ``zimo.yaml``.

Example (a generate/chat project)::

    eval:
      systems: [finetuned, base_zero_shot]   # teacher too, when a teacher: section exists
      reference_system: base_zero_shot      # paired differences and judge win rates are vs this
      judge: teacher                        # a teacher-style section name; omit for no judge
      bootstrap_samples: 1000
      machine_price_per_hour: 0.10
      max_test_rows: 60

All keys are optional; the defaults give a useful report. Fields of the label-task section
(``systems``, ``max_test_rows``, ``batch_size``, ``machine_price_per_hour``) keep their names and
meanings, so one model serves both task kinds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SystemName = Literal["finetuned", "base_zero_shot", "tfidf_logreg", "teacher", "upstream"]
MetricName = Literal[
    # label
    "accuracy",
    "macro_f1",
    "ece",
    # extract
    "json_valid",
    "exact_match",
    "field_f1",
    # generate
    "chrf",
    "rouge_l",
    "embed_sim",
]

DEFAULT_METRICS: dict[str, list[str]] = {
    "label": ["accuracy", "macro_f1", "ece"],
    "extract": ["json_valid", "exact_match", "field_f1"],
    "generate": ["chrf", "rouge_l", "embed_sim"],
    "chat": ["chrf", "rouge_l", "embed_sim"],
}
DEFAULT_SYSTEMS: dict[str, list[str]] = {
    "label": ["finetuned", "base_zero_shot", "tfidf_logreg"],
    "extract": ["finetuned", "base_zero_shot"],
    "generate": ["finetuned", "base_zero_shot"],
    "chat": ["finetuned", "base_zero_shot"],
}


class EvalConfig(BaseModel):
    """How the eval stage compares systems on the test split."""

    model_config = ConfigDict(extra="forbid")

    systems: list[SystemName] | None = Field(
        None,
        description="systems to compare (default: finetuned + base_zero_shot, + tfidf_logreg "
        "for label tasks); teacher/upstream need a teacher section",
    )
    reference_system: SystemName | None = Field(
        None,
        description="the system others are compared with (paired differences, judge win "
        "rate); default base_zero_shot",
    )
    metrics: list[MetricName] | None = Field(None, description="default: all of the task's")
    judge: str | None = Field(
        None, description="name of a teacher-style section (e.g. teacher) whose model judges"
    )
    judge_prompt: Literal["pairwise-v1"] = "pairwise-v1"
    judge_max_attempts: int = Field(3, ge=1, le=10, description="asks per verdict")
    judge_with_reference_answer: bool = Field(
        True, description="show the judge the test split's reference answer"
    )
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0
    machine_price_per_hour: float = Field(
        0.10, ge=0, description="price of the local machine, for cost per 1k requests"
    )
    max_test_rows: int | None = Field(None, ge=1, description="cap the test rows scored by LMs")
    batch_size: int | None = Field(
        None, ge=1, description="requests per batch for local models (default 16 label, 8 generate)"
    )
    max_new_tokens: int = Field(128, ge=1, le=8192, description="answer length cap (generate)")
    # Penalties on tokens the answer already used (zimo.infer.penalties), the same for every
    # local system; small bases loop under greedy decoding without them. Names and meanings
    # as in the serving API (OpenAI's frequency/presence penalty, vLLM's repetition penalty).
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0, description="CTRL penalty; 1 = none")
    frequency_penalty: float = Field(0.0, ge=0.0, le=2.0, description="per repeat of a token")
    presence_penalty: float = Field(0.0, ge=0.0, le=2.0, description="once a token was used")
    rouge_tokenizer: Literal["char", "jieba"] = Field(
        "char", description="Chinese tokens for ROUGE-L: single characters, or jieba words"
    )
    disagreements: int = Field(8, ge=0, le=100, description="examples shown where systems differ")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.systems is not None:
            if not self.systems:
                raise ValueError("eval.systems is empty: list at least one system")
            if len(set(self.systems)) != len(self.systems):
                raise ValueError("eval.systems has duplicates")
            if self.reference_system and self.reference_system not in self.systems:
                raise ValueError(
                    f"eval.reference_system {self.reference_system!r} is not in eval.systems"
                )
        return self

    def penalties(self):
        """The decoding penalties as :class:`zimo.infer.penalties.Penalties`."""
        from zimo.infer.penalties import Penalties

        return Penalties.of(self)

    def systems_for(self, task: str) -> list[str]:
        """The systems to run for a task kind (label / extract / generate / chat)."""
        systems = list(self.systems or DEFAULT_SYSTEMS.get(task, DEFAULT_SYSTEMS["generate"]))
        if task != "label" and "tfidf_logreg" in systems:
            from zimo.errors import ConfigError

            raise ConfigError(
                f"eval.systems: tfidf_logreg only applies to label tasks, not {task}",
                "remove it from eval.systems",
            )
        return systems

    def metrics_for(self, task: str) -> list[str]:
        defaults = DEFAULT_METRICS.get(task, DEFAULT_METRICS["generate"])
        if self.metrics is None:
            return list(defaults)
        wrong = [m for m in self.metrics if m not in defaults]
        if wrong:
            from zimo.errors import ConfigError

            raise ConfigError(
                f"eval.metrics: {wrong} do not apply to {task} tasks",
                f"use some of {defaults}",
            )
        return list(self.metrics)

    def reference_for(self, task: str) -> str | None:
        systems = self.systems_for(task)
        if self.reference_system:
            return self.reference_system
        return "base_zero_shot" if "base_zero_shot" in systems else None

    def batch_size_for(self, task: str) -> int:
        return self.batch_size or (16 if task == "label" else 8)
