"""The ``curate:`` section of ``zimo.yaml``: which steps run, in which order, with what settings.

Each step is a small pydantic model with a ``step`` name (the discriminator) and its own
settings; unknown keys are refused so a typo names the key. A bare string in the list is the
step with its defaults::

    curate:
      steps:
        - fix_unicode
        - normalize
        - {step: length, min_chars: 5, max_chars: 2000}
        - exact_dedup
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zimo.data.formatters.pii import PII_TYPES


class _StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True

    def build(self) -> Any:  # -> zimo.data.pipeline.Step; lazy: a step may import a heavy library
        raise NotImplementedError


class FixUnicodeSpec(_StepSpec):
    """Repair mojibake and broken unicode with ftfy (keeps CJK quotes and full-width punctuation)."""

    step: Literal["fix_unicode"] = "fix_unicode"
    unescape_html: bool = True

    def build(self) -> Any:
        from zimo.data.formatters.unicode_fix import FixUnicode

        return FixUnicode(unescape_html=self.unescape_html)


class NormalizeSpec(_StepSpec):
    """NFKC (full-width letters/digits to half-width) and whitespace normalisation."""

    step: Literal["normalize"] = "normalize"
    nfkc: bool = True
    # Chinese text uses full-width punctuation (，。！？); NFKC would turn it into ASCII.
    keep_cjk_punct: bool = True
    whitespace: bool = True
    # Remove single spaces between two CJK characters (PDF text layers often insert them).
    join_cjk_spaces: bool = False

    def build(self) -> Any:
        from zimo.data.formatters.normalize import Normalize

        return Normalize(
            nfkc=self.nfkc,
            keep_cjk_punct=self.keep_cjk_punct,
            whitespace=self.whitespace,
            join_cjk_spaces=self.join_cjk_spaces,
        )


class ChineseConvertSpec(_StepSpec):
    """Traditional → Simplified Chinese (needs the optional ``opencc`` package)."""

    step: Literal["chinese_convert"] = "chinese_convert"
    config: str = "t2s"

    def build(self) -> Any:
        from zimo.data.formatters.chinese_convert import ChineseConvert

        return ChineseConvert(config=self.config)


class BoilerplateSpec(_StepSpec):
    """Remove navigation, share buttons, related-article lists, SEO keyword headers, footers."""

    step: Literal["boilerplate"] = "boilerplate"
    extra_patterns: list[str] = Field(default_factory=list)  # regexes; a matching line goes

    @field_validator("extra_patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        import re

        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {pattern!r} ({e})") from e
        return v

    def build(self) -> Any:
        from zimo.data.formatters.boilerplate import RemoveBoilerplate

        return RemoveBoilerplate(extra_patterns=self.extra_patterns)


class SiteBoilerplateSpec(_StepSpec):
    """Remove lines that recur on many pages of the same site (chrome of unseen sites)."""

    step: Literal["site_boilerplate"] = "site_boilerplate"
    min_pages: int = Field(default=3, ge=2)
    min_share: float = Field(default=0.3, gt=0, le=1)
    # Only documents: in JSONL/CSV rows a repeated line is usually data, not chrome.
    formats: list[str] = Field(default_factory=lambda: ["html", "txt", "md", "pdf"])

    def build(self) -> Any:
        from zimo.data.formatters.site_boilerplate import SiteBoilerplate

        return SiteBoilerplate(self.min_pages, self.min_share, self.formats)


# Document formats: pages and files. Records from JSONL/CSV/Parquet tables (SMS, labelled rows)
# are data, not pages; the page steps leave them untouched.
DOC_FORMATS = ("html", "txt", "md", "pdf")


class PageArtifactsSpec(_StepSpec):
    """Remove pinyin / ruby annotations after Chinese characters (``產(chǎn)業(yè)`` → ``產業``)."""

    step: Literal["page_artifacts"] = "page_artifacts"
    formats: list[str] = Field(default_factory=lambda: list(DOC_FORMATS))

    def build(self) -> Any:
        from zimo.data.formatters.page_artifacts import PageArtifacts

        return PageArtifacts(formats=self.formats)


class PageLinesSpec(_StepSpec):
    """Line-level chrome removal for pages: header and footer blocks, menus, lists of names,
    banners, spam lines; the article body is never cut into."""

    step: Literal["page_lines"] = "page_lines"
    # PDF text-layer lines are layout lines, not paragraphs: judged line by line they would
    # look like chrome, so PDFs are left out by default.
    formats: list[str] = Field(default_factory=lambda: ["html", "txt", "md"])

    def build(self) -> Any:
        from zimo.data.formatters.page_lines import PageLines

        return PageLines(formats=self.formats)


class SpamSpec(_StepSpec):
    """Reject documents full of adult or gambling spam terms (shipped word lists)."""

    step: Literal["spam"] = "spam"
    min_terms: int = Field(default=3, ge=1)  # distinct terms
    min_per_kchar: float = Field(default=2.0, ge=0)  # term hits per 1,000 characters
    formats: list[str] = Field(default_factory=lambda: list(DOC_FORMATS))

    def build(self) -> Any:
        from zimo.data.filters.spam import SpamFilter

        return SpamFilter(self.min_terms, self.min_per_kchar, self.formats)


class DocQualitySpec(_StepSpec):
    """Record a 0–1 prose score in ``meta.quality_score``; reject below ``min_score``."""

    step: Literal["doc_quality"] = "doc_quality"
    min_score: float = Field(default=0.4, ge=0, le=1)
    max_replacement: float = Field(default=0.01, ge=0, le=1)  # share of U+FFFD: mojibake
    formats: list[str] = Field(default_factory=lambda: list(DOC_FORMATS))

    def build(self) -> Any:
        from zimo.data.filters.doc_quality import DocQuality

        return DocQuality(self.min_score, self.max_replacement, self.formats)


# Every kind of personal data the ``pii`` step knows (zimo.data.formatters.pii), all on by default.


class PiiSpec(_StepSpec):
    """Replace personal data with typed placeholders such as ``<PHONE>``."""

    step: Literal["pii"] = "pii"
    types: list[Literal[PII_TYPES]] = Field(default_factory=lambda: list(PII_TYPES))  # type: ignore[valid-type]
    # Optional: presidio for English person names / addresses (needs spaCy models; off).
    presidio: bool = False

    def build(self) -> Any:
        from zimo.data.formatters.pii import RedactPii

        return RedactPii(types=list(self.types), presidio=self.presidio)


class LengthSpec(_StepSpec):
    """Drop empty, too-short and too-long records (counted in characters, not words)."""

    step: Literal["length"] = "length"
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=200_000, ge=1)

    def build(self) -> Any:
        from zimo.data.filters.length import LengthFilter

        return LengthFilter(min_chars=self.min_chars, max_chars=self.max_chars)


class LanguageSpec(_StepSpec):
    """Detect the language (zh / en / others) into ``meta.lang``; optionally keep only some."""

    step: Literal["language"] = "language"
    keep: list[str] | None = None  # e.g. ["zh", "en"]; None = annotate only, drop nothing

    def build(self) -> Any:
        from zimo.data.filters.language import LanguageFilter

        return LanguageFilter(keep=self.keep)


class QualitySpec(_StepSpec):
    """Gopher-style quality rules, CJK-aware (symbol/digit ratio, repeated lines and n-grams)."""

    step: Literal["quality"] = "quality"
    min_chars_to_judge: int = Field(default=50, ge=0)  # shorter texts (SMS, titles) pass
    max_symbol_ratio: float = 0.25
    max_digit_ratio: float = 0.35
    max_dup_line_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_top_ngram_frac: float = 0.2
    max_dup_ngram_frac: float = 0.3
    min_letter_ratio: float = 0.5

    def build(self) -> Any:
        from zimo.data.filters.quality import QualityFilter

        return QualityFilter(**self.model_dump(exclude={"step", "enabled"}))


class ExactDedupSpec(_StepSpec):
    """Drop records whose normalised text (casefolded, no whitespace/punctuation) was seen."""

    step: Literal["exact_dedup"] = "exact_dedup"
    key: Literal["text", "text+label"] = "text"

    def build(self) -> Any:
        from zimo.data.dedup.exact import ExactDedup

        return ExactDedup(key=self.key)


class NearDupSpec(_StepSpec):
    """MinHash-LSH near-duplicate removal on character n-grams (word n-grams for non-CJK)."""

    step: Literal["near_dup"] = "near_dup"
    threshold: float = Field(default=0.8, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)
    ngram: int = Field(default=5, ge=1)  # characters for CJK text; see word_ngram for others
    word_ngram: int = Field(default=5, ge=1)
    min_chars: int = Field(default=30, ge=0)  # shorter texts are left to exact dedup
    verify: bool = True  # confirm candidate pairs with the estimated Jaccard

    def build(self) -> Any:
        from zimo.data.dedup.near_dup import NearDedup

        return NearDedup(**self.model_dump(exclude={"step", "enabled"}))


StepSpec = Annotated[
    FixUnicodeSpec
    | NormalizeSpec
    | ChineseConvertSpec
    | BoilerplateSpec
    | SiteBoilerplateSpec
    | PageArtifactsSpec
    | PageLinesSpec
    | SpamSpec
    | DocQualitySpec
    | PiiSpec
    | LengthSpec
    | LanguageSpec
    | QualitySpec
    | ExactDedupSpec
    | NearDupSpec,
    Field(discriminator="step"),
]

STEP_NAMES = (
    "fix_unicode",
    "normalize",
    "chinese_convert",
    "boilerplate",
    "site_boilerplate",
    "page_artifacts",
    "page_lines",
    "spam",
    "doc_quality",
    "pii",
    "length",
    "language",
    "quality",
    "exact_dedup",
    "near_dup",
)


def default_steps() -> list[Any]:
    """The corpus pipeline. PII runs early so no later artifact (rejects included) keeps it."""
    return [
        FixUnicodeSpec(),
        NormalizeSpec(),
        PiiSpec(),
        BoilerplateSpec(),
        # The page steps act on document formats only (see DOC_FORMATS); table rows pass.
        PageArtifactsSpec(),
        PageLinesSpec(),
        SpamSpec(),
        LengthSpec(),
        LanguageSpec(),
        QualitySpec(),
        DocQualitySpec(),
        SiteBoilerplateSpec(),
        ExactDedupSpec(),
        NearDupSpec(),
    ]


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
    # Markdown in the extracted text ("# Title", "**bold**", "| cell |" tables). Off: headings
    # and paragraphs are plain lines either way, and table pipes would read as symbol noise.
    html_formatting: bool = False


class CurateConfig(BaseModel):
    """The ``curate:`` section of ``zimo.yaml``."""

    model_config = ConfigDict(extra="forbid")
    steps: list[StepSpec] = Field(default_factory=default_steps)
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
            self.steps.insert(at, ChineseConvertSpec(config=self.convert_chinese))
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
