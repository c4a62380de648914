"""The project config, `zimo.yaml`, as typed pydantic models.

Every section is validated up front; an error names the yaml key, what is wrong and the fix,
in one line (``ConfigError``, exit code 2). Sections owned by other modules (curate, train, …)
are their own pydantic models, imported here so one schema covers the whole file.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zimo.classical.config import ClassicalTrainConfig
from zimo.data.curate_config import CurateConfig
from zimo.errors import ConfigError, section_error
from zimo.eval.config import EvalConfig
from zimo.export.config import (
    AnalyticExportConfig,
    ExportConfig,
    analytic_export_config,
    export_config,
)
from zimo.guard.config import GuardConfig
from zimo.image.config import ClipTrainConfig, ImageConfig, ImageEvalConfig, ImageTrainConfig
from zimo.route.config import RouteConfig, parse_route_config
from zimo.serve.config import ServeConfig
from zimo.synth.config import SynthConfig, TeacherConfig
from zimo.tabular.config import LightGBMTrainConfig, TabularConfig, TabularEvalConfig
from zimo.train.config import TrainConfig

# `train.method` -> the config model of that kind of sub-model.
TRAIN_MODELS: dict[str, type[BaseModel]] = {
    "lora": TrainConfig,
    "qlora": TrainConfig,
    "full": TrainConfig,
    "classical": ClassicalTrainConfig,
    "lightgbm": LightGBMTrainConfig,
    "image": ImageTrainConfig,
    "clip": ClipTrainConfig,
}
AnyTrainConfig = (
    TrainConfig | ClassicalTrainConfig | LightGBMTrainConfig | ImageTrainConfig | ClipTrainConfig
)
# The methods each task's sub-models may use (the first is the default).
TASK_METHODS = {"tabular": ("lightgbm",), "image": ("image", "clip")}

CONFIG_NAME = "zimo.yaml"
# Sections that were untyped mappings: artifact ids hash what the file says, not the defaults.
MAPPING_SECTIONS = ("route", "export", "serve")


class Section(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(Section):
    """Where the project's input data is and how to read it."""

    path: str = Field(description="file or folder, relative to the project directory")
    format: Literal["auto", "tsv", "csv", "jsonl", "json", "parquet"] = "auto"
    text_field: str = "text"
    label_field: str | None = "label"
    header: bool = True
    origin: Literal["human", "teacher", "synthetic", "log"] = "human"
    generator: str | None = None
    license: str | None = None
    source_url: str | None = None
    # For instruction data (alpaca style: instruction/input/output) the fields to map.
    instruction_field: str | None = None
    input_field: str | None = None
    output_field: str | None = None


class SplitConfig(Section):
    """Seeded, stratified train/dev/test split."""

    dev: float = Field(0.1, ge=0.0, lt=0.9)
    test: float = Field(0.1, gt=0.0, lt=0.9)
    seed: int = 13
    stratify: bool = True
    by: str | None = Field(
        None, description="tables: a time column; the latest rows are test, the ones before dev"
    )
    group: str | None = Field(
        None, description="tables: a column whose values never span two splits (courier, customer)"
    )

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.by and self.group:
            raise ValueError("split by time (`by`) or by group (`group`), not both")
        if self.dev + self.test >= 0.95:
            raise ValueError("dev + test must leave data to train on (sum < 0.95)")
        return self


class LabelEvalConfig(Section):
    """Evaluation of label tasks (classification)."""

    systems: list[Literal["finetuned", "base_zero_shot", "tfidf_logreg"]] = [
        "finetuned",
        "base_zero_shot",
        "tfidf_logreg",
    ]
    max_test_rows: int | None = Field(None, ge=1, description="cap the test rows scored by LMs")
    batch_size: int = Field(16, ge=1)
    latency_samples: int = Field(16, ge=0, description="single-row requests timed per system")
    decision: Literal["dev_threshold", "argmax"] = Field(
        "dev_threshold",
        description="dev_threshold: tune the positive label's threshold on the dev split",
    )
    machine_price_per_hour: float = Field(
        0.10, ge=0, description="price of the local machine, for cost per 1k requests"
    )


class ProjectConfig(Section):
    name: str
    task: Literal["label", "chat", "generate", "tabular", "image"] = "label"
    description: str | None = None
    labels: list[str] | None = Field(None, description="label set, required for task: label")
    positive_label: str | None = Field(
        None, description="the label whose F1 is the headline number (e.g. spam)"
    )
    instruction: str | None = Field(None, description="what the model is asked to do")
    data: DataConfig
    tabular: TabularConfig | None = None
    image: ImageConfig | None = None
    curate: CurateConfig = CurateConfig()
    split: SplitConfig = SplitConfig()
    # One sub-model (a mapping) or several (a list of mappings), each typed by its `method`
    # (TRAIN_MODELS) in _train_section. The first is the project's primary sub-model.
    train: AnyTrainConfig | list[AnyTrainConfig] = TrainConfig()
    # Label tasks: LabelEvalConfig; chat/generate: zimo.eval.config.EvalConfig (judge, metrics,
    # max_new_tokens, ...); tabular: TabularEvalConfig; chosen by `task` in _eval_section.
    eval: LabelEvalConfig | EvalConfig | TabularEvalConfig | ImageEvalConfig = LabelEvalConfig()
    synth: SynthConfig | None = None
    teacher: TeacherConfig | None = None
    guard: GuardConfig | None = None
    route: RouteConfig | None = None
    # The export section's schema depends on the primary sub-model's kind (_mapping_sections).
    export: ExportConfig | AnalyticExportConfig | None = None
    serve: ServeConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _train_section(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        task = data.get("task", "label")
        if task not in ("label", "chat", "generate", "tabular", "image"):
            return data  # the bad `task` is the error to report
        own = TASK_METHODS.get(task)
        raw = data.get("train")
        if raw is None:
            raw = {"method": own[0]} if own else {}
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise ConfigError("`train:` is an empty list", "give at least one sub-model")
        typed, names = [], set()
        for i, item in enumerate(items):
            where = f"train[{i}]" if isinstance(raw, list) else "train"
            if not isinstance(item, dict):
                raise ConfigError(f"'{where}' in {CONFIG_NAME} must be a mapping", "see the docs")
            method = item.get("method", own[0] if own else "lora")
            model = TRAIN_MODELS.get(method)
            if model is None:
                raise ConfigError(
                    f"'{where}.method' in {CONFIG_NAME}: unknown method {method!r}",
                    f"choose one of: {', '.join(TRAIN_MODELS)}",
                )
            special = {m for ms in TASK_METHODS.values() for m in ms}
            if (method not in own) if own else (method in special):
                need = " or ".join(own) if own else "one of lora, qlora, full, classical"
                raise ConfigError(
                    f"'{where}.method: {method}' does not fit task: {task}", f"use {need}"
                )
            if method == "classical" and task != "label":
                raise ConfigError(
                    f"'{where}.method: classical' needs task: label", "it is a text classifier"
                )
            try:
                cfg = model.model_validate(item)
            except ValidationError as e:
                raise section_error(where, e, model) from None
            name = submodel_name(cfg)
            if name in names:
                raise ConfigError(
                    f"two sub-models in `train:` are named {name!r}", "give each a distinct `name:`"
                )
            names.add(name)
            typed.append(cfg)
        return {**data, "train": typed if isinstance(raw, list) else typed[0]}

    @model_validator(mode="before")
    @classmethod
    def _eval_section(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("eval") is None:
            return data
        task = data.get("task", "label")
        if task == "image":
            try:
                return {**data, "eval": ImageEvalConfig.model_validate(data["eval"])}
            except ValidationError as e:
                raise section_error("eval", e, ImageEvalConfig) from None
        if task == "tabular":
            model: type[BaseModel] = TabularEvalConfig
            try:
                return {**data, "eval": model.model_validate(data["eval"])}
            except ValidationError as e:
                raise section_error("eval", e, model) from None
        if task == "label":
            model = LabelEvalConfig
        elif task in ("chat", "generate"):
            model = EvalConfig
        else:
            return data  # the bad `task` is the error to report
        try:
            return {**data, "eval": model.model_validate(data["eval"])}
        except ValidationError as e:
            raise section_error("eval", e, model) from None

    @model_validator(mode="before")
    @classmethod
    def _mapping_sections(cls, data: Any) -> Any:
        # Validated by their owners' parsers, which name the bad key in one line; export's
        # schema depends on the primary sub-model's kind (a language model or an analytic one).
        if not isinstance(data, dict):
            return data
        out = dict(data)
        if isinstance(data.get("route"), dict):
            out["route"] = parse_route_config(data["route"])
        if isinstance(data.get("serve"), dict):
            out["serve"] = _serve_section(data["serve"])
        if isinstance(data.get("export"), dict):
            lm = _primary_method(data) in ("lora", "qlora", "full")
            out["export"] = (export_config if lm else analytic_export_config)(data["export"])
        return out

    def export_settings(self) -> ExportConfig | AnalyticExportConfig:
        """The ``export:`` section (its defaults when the file has none)."""
        if self.export is not None:
            return self.export
        lm = isinstance(self.primary(), TrainConfig)
        return export_config(None) if lm else analytic_export_config(None)

    def is_cascade(self) -> bool:
        """True when the project's name is served through a cascade (``route.mode``)."""
        return self.route is not None and self.route.mode == "cascade"

    def serve_settings(self) -> ServeConfig:
        """The ``serve:`` section (its defaults when the file has none)."""
        return self.serve if self.serve is not None else ServeConfig()

    @model_validator(mode="after")
    def _tabular(self) -> ProjectConfig:
        if self.task == "tabular":
            if self.tabular is None:
                raise ValueError("task: tabular needs a `tabular:` section with `target:`")
            if not isinstance(self.eval, TabularEvalConfig):
                self.eval = TabularEvalConfig()
        elif self.tabular is not None:
            raise ValueError("a `tabular:` section needs task: tabular")
        elif self.split.by or self.split.group:
            raise ValueError("`split.by` / `split.group` apply to task: tabular only")
        if self.image is not None and self.task != "image":
            raise ValueError("an `image:` section needs task: image")
        if self.task == "image" and isinstance(self.eval, LabelEvalConfig):
            self.eval = ImageEvalConfig()  # the label-text default does not apply
        return self

    def submodels(self) -> list[AnyTrainConfig]:
        """Every sub-model the project trains, the primary one first."""
        return list(self.train) if isinstance(self.train, list) else [self.train]

    def primary(self) -> AnyTrainConfig:
        return self.submodels()[0]

    def lm_train(self) -> TrainConfig | None:
        """The language-model sub-model's settings (LoRA/full), if the project has one."""
        return next((t for t in self.submodels() if isinstance(t, TrainConfig)), None)

    @model_validator(mode="after")
    def _labels(self) -> ProjectConfig:
        if self.task == "label":
            if not self.labels or len(self.labels) < 2:
                raise ValueError("task: label needs `labels:` with at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("`labels:` has duplicates")
            if self.positive_label is not None and self.positive_label not in self.labels:
                raise ValueError(
                    f"positive_label {self.positive_label!r} is not one of labels {self.labels}"
                )
        return self


def submodel_name(cfg: BaseModel) -> str:
    """A sub-model's name: its `name:` or else its method (served as ``<project>@<name>``)."""
    return getattr(cfg, "name", None) or str(getattr(cfg, "method", "lora"))


class Project:
    """A project directory with its parsed config."""

    def __init__(self, root: Path, config: ProjectConfig):
        self.root = root
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def data_path(self) -> Path:
        return (self.root / self.config.data.path).resolve()

    def section(self, name: str) -> dict[str, Any]:
        """A section as plain JSON-able data (what artifact ids hash)."""
        value = getattr(self.config, name)
        if name in MAPPING_SECTIONS and isinstance(value, BaseModel):
            # Hashed as written (they were mappings once): a new default does not rebuild.
            return value.model_dump(mode="json", exclude_unset=True)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return [v.model_dump(mode="json") for v in value]  # type: ignore[return-value]
        return value if value is not None else {}


def _serve_section(raw: dict[str, Any]) -> ServeConfig:
    try:
        return ServeConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        key = "serve." + ".".join(str(x) for x in err["loc"])
        raise ConfigError(
            f"'{key}' in {CONFIG_NAME}: {err['msg'].lower()}", "fix the value"
        ) from None


def _primary_method(data: dict[str, Any]) -> str:
    """The primary sub-model's ``method`` in a raw (or partly validated) config mapping."""
    train = data.get("train")
    first = (train[0] if train else None) if isinstance(train, list) else train
    if isinstance(first, BaseModel):
        return str(getattr(first, "method", "lora"))
    if isinstance(first, dict) and first.get("method"):
        return str(first["method"])
    own = TASK_METHODS.get(str(data.get("task", "label")))
    return own[0] if own else "lora"


def _known_keys(model: Any, loc: tuple) -> list[str]:
    """Field names allowed at a location, for 'did you mean' hints."""
    current = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        # An optional section (`X | None`) names its model inside the union.
        options = [ann, *typing.get_args(ann)]
        current = next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)),
                       None)  # fmt: skip
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}).keys())


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        known = _known_keys(ProjectConfig, loc)
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"allowed keys: {', '.join(known)}"
        return f"unknown key '{key}' in {CONFIG_NAME}; {hint}"
    if kind == "missing":
        return f"missing key '{key}' in {CONFIG_NAME}; add it (see examples/sms-fraud/zimo.yaml)"
    got = err.get("input")
    got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        where = f"'{key}'" if loc else CONFIG_NAME
        return f"{where} in {CONFIG_NAME}: {msg}"
    return f"'{key}' in {CONFIG_NAME}: {msg.lower()}{got_s}; fix the value"


def parse_config(raw: Any, where: str = CONFIG_NAME) -> ProjectConfig:
    if raw is None:
        raise ConfigError(f"{where} is empty", "add at least `name:`, `task:` and `data:`")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys", "see examples/sms-fraud/zimo.yaml")
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        more = e.error_count() - 1
        text = _describe(first)
        if more:
            text += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(text) from None


def load_project(path: str | Path) -> Project:
    """Read and validate ``<path>/zimo.yaml`` (or a path to the yaml file itself)."""
    p = Path(path)
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        cfg_path, root = p, p.parent
    else:
        root, cfg_path = p, p / CONFIG_NAME
    if not root.exists():
        raise ConfigError(
            f"project directory {str(root)!r} does not exist",
            "check the path, or create one with `zimo init DIR`",
        )
    if not cfg_path.is_file():
        raise ConfigError(
            f"no {CONFIG_NAME} in {str(root)!r}",
            f"create one with `zimo init {root}` or pass the project folder that holds it",
        )
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{cfg_path} is not UTF-8 text", "save it as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{cfg_path} is not valid YAML{where}: {problem}", "fix the YAML syntax there"
        ) from None
    return Project(root.resolve(), parse_config(raw, str(cfg_path)))
