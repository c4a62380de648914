"""The ``curate:`` section of ``zimo.yaml``: which steps run, in which order, with what settings.

Each step's settings are a small pydantic spec defined beside the step, with a ``step`` name
(the discriminator); unknown keys are refused so a typo names the key. A bare string in the
list is the step with its defaults::

    curate:
      steps:
        - fix_unicode
        - normalize
        - {step: length, min_chars: 5, max_chars: 2000}
        - exact_dedup
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zimo.data.step_spec import StepSpec, step_specs

# Every step's spec lives beside the step (see zimo.data.step_spec); this is their union.
SPECS = step_specs()
STEP_NAMES = tuple(sorted(SPECS))
AnyStepSpec = Annotated[Union[tuple(SPECS.values())], Field(discriminator="step")]  # noqa: UP007


def default_steps() -> list[StepSpec]:
    """The corpus pipeline. PII runs early so no later artifact (rejects included) keeps it."""
    names = [
        "fix_unicode",
        "normalize",
        "pii",
        "boilerplate",
        # The page steps act on document formats only (pipeline.DOC_FORMATS); table rows pass.
        "page_artifacts",
        "page_lines",
        "spam",
        "length",
        "language",
        "quality",
        "doc_quality",
        "site_boilerplate",
        "exact_dedup",
        "near_dup",
    ]
    return [SPECS[n]() for n in names]


class ReadSpec(BaseModel):
    """How files become records."""

    model_config = ConfigDict(extra="forbid")
    text_field: str = "text"  # jsonl / csv / parquet column with the text
    label_field: str | None = None
    origin: Literal["human", "teacher", "synthetic", "log"] = "human"
    license: str | None = None
    max_record_chars: int = Field(default=1_000_000, ge=1)  # longer records are quarantined
    max_json_depth: int = Field(default=64, ge=1)
    max_files: int | None = None
    csv_delimiter: str | None = None  # None = by extension (.tsv tab) or sniffed
    # HTML main-text extraction (trafilatura): "precision" drops more doubtful blocks,
    # "recall" keeps more; the page_lines step then makes the same line decision as for text.
    html_favor: Literal["balanced", "precision", "recall"] = "balanced"
    html_tables: bool = True
    # Figure captions the extractor drops, put back beside the article paragraph they follow
    # (readers/html_captions.py).
    html_captions: bool = True
    # Markdown in the extracted text ("# Title", "**bold**", "| cell |" tables). Off: headings
    # and paragraphs are plain lines either way, and table pipes would read as symbol noise.
    html_formatting: bool = False


class CurateConfig(BaseModel):
    """The ``curate:`` section of ``zimo.yaml``."""

    model_config = ConfigDict(extra="forbid")
    steps: list[AnyStepSpec] = Field(default_factory=default_steps)
    read: ReadSpec = Field(default_factory=ReadSpec)
    workers: int | None = Field(default=None, ge=1)  # None = all cores
    shard_mb: float = Field(default=32.0, gt=0)  # input bytes per shard (resume unit)
    shard_files: int = Field(default=2000, ge=1)  # at most this many files per shard
    # One line to convert Chinese script with OpenCC ("t2s": traditional → simplified, "s2t",
    # "tw2s", "hk2s" …): adds the chinese_convert step after normalize unless steps has one.
    convert_chinese: str | None = None

    @model_validator(mode="after")
    def _add_convert(self) -> CurateConfig:
        if self.convert_chinese and not any(s.step == "chinese_convert" for s in self.steps):
            at = next((i + 1 for i, s in enumerate(self.steps) if s.step == "normalize"), 0)
            self.steps.insert(at, SPECS["chinese_convert"](config=self.convert_chinese))
        return self

    @field_validator("steps", mode="before")
    @classmethod
    def _bare_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            out = []
            for item in v:
                if isinstance(item, str):
                    if item not in STEP_NAMES:
                        raise ValueError(
                            f"unknown curate step {item!r}; choose from {', '.join(STEP_NAMES)}"
                        )
                    item = {"step": item}
                out.append(item)
            return out
        return v


def build_steps(
    cfg: CurateConfig | dict[str, Any] | None = None,
) -> list[Any]:  # list[zimo.data.pipeline.Step]
    """Instantiate the steps a :class:`CurateConfig` describes, in order (disabled ones skipped)."""
    if cfg is None:
        cfg = CurateConfig()
    elif isinstance(cfg, dict):
        cfg = CurateConfig.model_validate(cfg)
    steps = [spec.build() for spec in cfg.steps if spec.enabled]
    pages = next((st for st in steps if st.name == "page_lines"), None)
    if pages is not None:
        for st in steps:
            # page_lines applies the same line rules to its formats and records what it cut
            # for the report's diff; boilerplate removing those lines first would hide them.
            if st.name == "boilerplate" and not getattr(st, "extra", None):
                st.skip_formats = set(pages.formats)  # type: ignore[attr-defined]
    return steps
