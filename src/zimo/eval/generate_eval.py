"""The eval stage for ``generate`` / ``chat`` projects: which systems run (base, fine-tuned,
teacher), how each answers, and the report.

The parts: :mod:`zimo.eval.generate_items` (test items, overlap with the training data),
:mod:`zimo.eval.generate_local` (answers from a local model), :mod:`zimo.eval.generate_score`
(:func:`~zimo.eval.generate_score.evaluate_generate`: per-system metrics with bootstrap CIs —
chrF, ROUGE-L, embedding similarity — paired differences, judge win rates, cost and latency,
the items where systems disagree most). A system that gave no answer for an item is counted as
a failure (and scores 0), never dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zimo.errors import DataError
from zimo.eval.config import EvalConfig
from zimo.eval.cost import CostModel, Measurement
from zimo.eval.generate_items import GenerateItem, SystemRun, cap_items, items_from_records
from zimo.eval.generate_local import local_answerer
from zimo.eval.generate_score import evaluate_generate, run_system
from zimo.workspace import Layout

if TYPE_CHECKING:  # (zimo.infer imports torch: not at import time)
    pass

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# overlap between train and test
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# running systems
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# local generation
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# the eval stage for generate / chat projects
# ---------------------------------------------------------------------------------------------


def eval_config_of(project: Any) -> EvalConfig:
    """The project's ``eval:`` section as an :class:`EvalConfig`.

    Accepts the section as an ``EvalConfig`` or as the label-task section model (its fields are
    a subset): the label default systems (with ``tfidf_logreg``) become the generate defaults.
    """
    section = getattr(project.config, "eval", None)
    if isinstance(section, EvalConfig):
        return section
    raw = section.model_dump() if hasattr(section, "model_dump") else dict(section or {})
    if raw.get("systems") and "tfidf_logreg" in raw["systems"]:
        raw["systems"] = [s for s in raw["systems"] if s != "tfidf_logreg"] or None
    return EvalConfig.model_validate({k: v for k, v in raw.items() if k in EvalConfig.model_fields})


def _finetuned_source(train_dir: Path, base: str) -> tuple[str, str | None]:
    """(model, adapter) for the trained sub-model in a train artifact folder."""
    from zimo.submodel_meta import SubModelMeta

    meta = SubModelMeta.read_optional(train_dir) or SubModelMeta()
    base = meta.base or base
    adapter = meta.adapter_dir(train_dir)
    if adapter and (adapter / "adapter_config.json").is_file():
        return base, str(adapter)
    for folder in (train_dir / "model", train_dir):
        if (folder / "config.json").is_file():
            return str(folder), None  # a full fine-tune saved as an HF folder
    if (train_dir / "adapter" / "adapter_config.json").is_file():
        return base, str(train_dir / "adapter")
    raise DataError(
        f"no trained model in {train_dir} (no adapter/ nor model/ folder)",
        "rerun `zimo build --force train`",
    )


def _teacher_section(project: Any, name: str) -> Any:
    section = getattr(project.config, name, None)
    if section is None:
        from zimo.errors import ConfigError

        raise ConfigError(
            f"eval.judge names section {name!r}, but zimo.yaml has no `{name}:` section",
            "add a teacher: section (base_url, model, api_key_env) or remove eval.judge",
        )
    return section.model_dump() if hasattr(section, "model_dump") else dict(section)


def _teacher_run(
    name: str, items: Sequence[GenerateItem], teacher: Any, max_new_tokens: int
) -> SystemRun:
    """The teacher/upstream model's answers, priced per token (latency: see the note)."""
    from zimo.synth.teacher import ChatRequest

    t0 = time.perf_counter()
    results = teacher.run(
        [
            ChatRequest(
                messages=it.messages,
                template="eval.answer",
                temperature=0.0,
                max_tokens=max_new_tokens,
            )
            for it in items
        ]
    )
    wall = time.perf_counter() - t0
    conc = min(len(items), max(1, int(getattr(teacher.config, "max_concurrency", 1))))
    per_req = wall * conc / max(1, len(items))
    meas = [Measurement(per_req, per_req, r.prompt_tokens, r.completion_tokens) for r in results]
    cfg = teacher.config
    cost = CostModel(
        kind="remote",
        price_in_per_1m=cfg.price_in_per_1m,
        price_out_per_1m=cfg.price_out_per_1m,
        notes=[
            f"Its latency is approximate: wall time × concurrency ({conc}) / requests; cached "
            "answers make it look faster than the endpoint is."
        ],
    )
    answers = [r.content if r.ok else None for r in results]
    errors = [r.error for r in results]
    return SystemRun(name, answers, meas, cost, f"{cfg.model} at {cfg.base_url}", errors)


def evaluate_generate_project(
    project: Any,
    train: Sequence[dict[str, Any]],
    test: Sequence[dict[str, Any]],
    train_dir: Path,
    out_dir: Path,
    console: Any = None,
    *,
    teacher_cache: Path | None = None,
) -> dict[str, Any]:
    """The eval stage for generate/chat projects: run the systems, score, write the report.

    Writes ``metrics.json`` (headline per system: what ``zimo status --json`` shows),
    ``eval.json`` (everything) and ``report.html`` into ``out_dir``; returns the result.
    """
    import gc

    from rich.console import Console

    from zimo.eval.generate_report import write_generate_report
    from zimo.fileio import write_json_atomic
    from zimo.hw import cpu_info

    console = console or Console(stderr=True)
    cfg = project.config
    ecfg = eval_config_of(project)
    task = "generate"
    items = cap_items(items_from_records(test), ecfg.max_test_rows)
    if not items:
        raise DataError(
            "the test split has no rows with a reference answer: nothing to evaluate",
            "add data or raise split.test in zimo.yaml; chat rows need an assistant answer",
        )
    system = getattr(_lm_cfg(cfg), "system", None)
    if system:  # the same system prompt as in training, for every system under test
        for it in items:
            if not it.messages or it.messages[0].get("role") != "system":
                it.messages = [{"role": "system", "content": system}, *it.messages]
    train_prompts = [it.prompt for it in items_from_records(train)]
    systems = ecfg.systems_for(task)
    cpu = cpu_info()
    machine = f"{cpu['model']}, {cpu['cores']} cores"
    local_cost = CostModel(machine_price_per_hour=ecfg.machine_price_per_hour, machine=machine)
    base = getattr(_lm_cfg(cfg), "base", None) or "gecko"
    # The synth stage's teacher cache (the build passes it): judge and teacher answers are
    # cached with synth calls and survive eval reruns.
    root = getattr(project, "root", None)  # a script may pass a bare config-like object
    cache = teacher_cache or (
        Layout(root).teacher_cache if root else Path(out_dir) / "teacher.sqlite"
    )
    runs = _run_systems(project, systems, items, Path(train_dir), base, ecfg, local_cost, cache,
                        console)  # fmt: skip
    gc.collect()  # the models are no longer needed: free them before scoring
    judge = None
    if ecfg.judge:
        from zimo.eval.judge import make_judge

        judge = make_judge(_teacher_section(project, ecfg.judge), cache_path=cache)
    result = evaluate_generate(
        items, runs, config=ecfg, train_prompts=train_prompts, judge=judge, task=task
    )
    assumptions = _assumptions(runs, ecfg)
    result["cost_assumptions"] = assumptions
    result["cpu"] = cpu
    if "finetuned" in systems:
        from zimo.eval.html import training_curve

        result["training"] = training_curve(Path(train_dir))
    for w in result["warnings"]:
        console.print(f"  [yellow]warning:[/] {w}")
    paths = write_generate_report(
        result,
        out_dir,
        title=f"{cfg.name} — evaluation",
        meta={"project": cfg.name, "task": cfg.task, "base model": base, "machine": machine},
        cost_assumptions=assumptions,
    )
    write_json_atomic(
        Path(out_dir) / "metrics.json",
        {"task": cfg.task, "test_rows": len(items), "headline": result["headline"]},
    )
    paths["answers"] = write_answers(Path(out_dir) / "answers.jsonl", items, runs)
    result["paths"] = {k: str(v) for k, v in paths.items()}
    return result


def _run_systems(project: Any, systems: list[str], items: list[GenerateItem], train_dir: Path,
                 base: str, ecfg: EvalConfig, local_cost: CostModel, cache: Path,
                 console: Any) -> list[SystemRun]:  # fmt: skip
    """Answer every item with each system: local models one at a time, the teacher over HTTP."""
    import gc

    from zimo.models import load_causal_lm

    bs = ecfg.batch_size_for("generate")
    runs: list[SystemRun] = []
    shared = None  # (model, tokenizer) of base + adapter, reused for the zero-shot base
    ft_source = _finetuned_source(train_dir, base) if "finetuned" in systems else None
    for name in systems:
        if name in ("finetuned", "base_zero_shot"):
            without_adapter = False
            if name == "finetuned":
                model_name, adapter = ft_source
                desc = f"{base} + trained adapter" if adapter else f"fine-tuned {base}"
            else:
                model_name, adapter, desc = base, None, f"{base}, untuned, same chat prompt"
                # Same weights as the sub-model minus its adapter: switch the adapter off
                # instead of loading the base a second time.
                without_adapter = shared is not None
            console.print(f"  {name}: generating {len(items)} answers ({desc})")
            loaded = shared if without_adapter else load_causal_lm(model_name, adapter=adapter)
            if name == "finetuned" and adapter:
                shared = loaded
            answer = local_answerer(
                model_name,
                adapter,
                max_new_tokens=ecfg.max_new_tokens,
                loaded=loaded,
                without_adapter=without_adapter,
                penalties=ecfg.penalties(),
            )
            runs.append(
                run_system(
                    name,
                    items,
                    batch_answer=answer,
                    batch_size=bs,
                    cost_model=local_cost,
                    description=desc,
                )
            )
            del answer, loaded
            gc.collect()
        elif name in ("teacher", "upstream"):
            from zimo.eval.judge import make_judge

            teacher = make_judge(_teacher_section(project, "teacher"), cache_path=cache)
            runs.append(_teacher_run(name, items, teacher, ecfg.max_new_tokens))
    return runs


def _assumptions(runs: list[SystemRun], ecfg: EvalConfig) -> str:
    from zimo.eval.cost import assumptions_text

    pen = ecfg.penalties()
    answers = f"Answers capped at {ecfg.max_new_tokens} new tokens, greedy decoding" + (
        f", {pen.text()} on the answer's own tokens (the same for every local system)."
        if pen.active
        else "."
    )
    return assumptions_text(
        {r.name: r.cost_model for r in runs if r.cost_model is not None}, extra=[answers]
    )


def write_answers(path: Path, items: Sequence[GenerateItem], runs: Sequence[SystemRun]) -> Path:
    """Every system's answer to every test item, one JSON line per item (for reading by eye).

    The report shows only the items where the systems disagree most; this file lets a reviewer
    check all answers (language, stopping, template junk) and diff two eval runs.
    """
    import json

    from zimo.fileio import write_text_atomic

    lines = []
    for i, it in enumerate(items):
        row: dict[str, Any] = {"id": it.id, "prompt": it.prompt, "reference": it.reference}
        row["answers"] = {r.name: r.answers[i] for r in runs}
        errs = {r.name: r.errors[i] for r in runs if i < len(r.errors) and r.errors[i]}
        if errs:
            row["errors"] = errs
        lines.append(json.dumps(row, ensure_ascii=False))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _lm_cfg(cfg: Any) -> Any:
    """The language-model sub-model's train settings (a project may also train classical
    ones); a plain namespace with ``train`` (as callers that build configs by hand pass) too."""
    return cfg.lm_train() if hasattr(cfg, "lm_train") else getattr(cfg, "train", None)
