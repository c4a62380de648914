"""Scoring generate/chat systems on the same items: per-item metrics, paired bootstrap
differences against the reference system, and the items where systems disagree most."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zimo.errors import DataError
from zimo.eval.bootstrap import paired_difference
from zimo.eval.config import EvalConfig
from zimo.eval.cost import CostModel, Measurement, cost_summary
from zimo.eval.generate_items import GenerateItem, Generation, Messages, SystemRun, detect_overlap
from zimo.eval.generate_local import progress_bar
from zimo.eval.metrics import (
    METRIC_METHODS,
    chrf_from_stats,
    generate_item_scores,
    generate_metrics,
)

log = logging.getLogger("zimo.eval.generate_eval")


def run_system(
    name: str,
    items: Sequence[GenerateItem],
    answer: Callable[[Messages], str | Generation | None] | None = None,
    *,
    batch_answer: Callable[[list[Messages]], list[str | Generation | None]] | None = None,
    batch_size: int = 8,
    cost_model: CostModel | None = None,
    description: str = "",
    progress: bool = True,
) -> SystemRun:
    """Answer every item with ``answer`` (one prompt) or ``batch_answer`` (a list), timed.

    An exception or a ``None`` answer for an item is recorded as a failure of that item; the
    run goes on. Each request's latency is its call's (or batch's) wall time.
    """
    if (answer is None) == (batch_answer is None):
        raise ValueError("give exactly one of answer= or batch_answer=")
    answers: list[str | None] = []
    errors: list[str | None] = []
    meas: list[Measurement] = []
    step = batch_size if batch_answer is not None else 1
    bar = progress_bar(progress, len(items), f"answering with {name}")
    try:
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            t0 = time.perf_counter()
            try:
                if batch_answer is not None:
                    outs = list(batch_answer([it.messages for it in chunk]))
                    if len(outs) != len(chunk):
                        raise ValueError(f"{len(outs)} answers for {len(chunk)} prompts")
                else:
                    outs = [answer(chunk[0].messages)]
                err = None
            except Exception as e:  # noqa: BLE001 - a failing system must not stop the eval
                outs, err = [None] * len(chunk), f"{type(e).__name__}: {str(e)[:200]}"
                log.warning("%s failed on %d item(s): %s", name, len(chunk), err)
            secs = time.perf_counter() - t0
            for out in outs:
                gen = out if isinstance(out, Generation) else Generation(out)
                text = gen.text if gen.text is not None and str(gen.text).strip() else None
                answers.append(text)
                errors.append(gen.error or err or (None if text is not None else "no answer"))
                meas.append(
                    Measurement(
                        latency_s=secs,
                        compute_s=secs / len(chunk),
                        prompt_tokens=gen.prompt_tokens,
                        completion_tokens=gen.completion_tokens,
                    )
                )
            if bar is not None:
                bar[0].update(bar[1], advance=len(chunk))
    finally:
        if bar is not None:
            bar[0].stop()
    return SystemRun(name, answers, meas, cost_model, description, errors)


def precomputed(
    name: str,
    items: Sequence[GenerateItem],
    answers: dict[str, str | None],
    *,
    cost_model: CostModel | None = None,
    measurements: dict[str, Measurement] | None = None,
    description: str = "",
) -> SystemRun:
    """A system from answers keyed by item id; a missing id is a failure (no answer)."""
    texts = [answers.get(it.id) for it in items]
    texts = [t if t is not None and str(t).strip() else None for t in texts]
    meas = [measurements[it.id] for it in items] if measurements else None
    errs = [None if t is not None else "no answer" for t in texts]
    return SystemRun(name, texts, meas, cost_model, description, errs)


def evaluate_generate(
    items: Sequence[GenerateItem],
    systems: Sequence[SystemRun],
    *,
    config: EvalConfig | None = None,
    train_prompts: Sequence[str] | None = None,
    judge: Any = None,
    task: str = "generate",
    reference: str | None = None,
) -> dict[str, Any]:
    """Score ``systems`` on ``items``; the JSON-able result feeds the report and ``status``.

    ``reference`` (default: ``config.reference_system``, else ``base_zero_shot``) is the
    system the others are compared with in paired differences and judge win rates.

    Keys: ``n``, ``systems`` (per system: metrics with CIs, failures, cost), ``headline``
    (flat numbers per system, for ``zimo status --json``), ``paired`` (differences vs the
    reference system with paired-bootstrap CIs), ``judge`` (win rates), ``disagreements``,
    ``overlap`` and ``warnings``.
    """
    cfg = config or EvalConfig()
    if not items:
        raise DataError(
            "the test split is empty: nothing to evaluate",
            "add data or raise split.test in zimo.yaml so the test split gets rows",
        )
    if not systems:
        raise DataError("no systems to evaluate", "list some under eval.systems in zimo.yaml")
    n = len(items)
    for s in systems:
        if len(s.answers) != n:
            raise ValueError(f"system {s.name}: {len(s.answers)} answers for {n} test items")
    metrics = cfg.metrics_for(task)
    boot = dict(n_boot=cfg.bootstrap_samples, seed=cfg.seed, confidence=cfg.confidence)
    refs = [it.reference for it in items]
    warnings: list[str] = []
    reference_chars = float(np.mean([len(r or "") for r in refs]))

    overlap = _overlap(items, train_prompts, warnings)
    scores: dict[str, dict[str, np.ndarray]] = {}
    per_system: dict[str, Any] = {}
    headline: dict[str, dict[str, Any]] = {}
    for s in systems:
        scores[s.name], per_system[s.name], headline[s.name] = _score_system(
            s, refs, metrics, cfg, boot, warnings
        )
    reference = reference or cfg.reference_for(task)
    if reference not in scores:
        reference = None
    paired = _paired(systems, reference, metrics, scores, per_system, boot) if reference else {}
    judged: dict[str, Any] = {}
    if judge is not None and reference:
        judged = _judged(items, systems, reference, judge, cfg, boot, headline, warnings)

    return {
        "task": task,
        "n": n,
        "metrics": metrics,
        "metric_methods": {k: METRIC_METHODS[k] for k in metrics if k in METRIC_METHODS},
        "reference_system": reference,
        "systems": per_system,
        "headline": headline,
        "reference_chars": round(reference_chars, 1),
        "paired": paired,
        "judge": judged,
        "disagreements": disagreements(items, systems, scores, k=cfg.disagreements),
        "overlap": overlap,
        "warnings": warnings,
        "bootstrap": {
            "samples": cfg.bootstrap_samples,
            "confidence": cfg.confidence,
            "seed": cfg.seed,
            "method": "percentile bootstrap over test items",
        },
    }


def _overlap(items: Sequence[GenerateItem], train_prompts: Sequence[str] | None,
             warnings: list[str]) -> dict[str, Any] | None:  # fmt: skip
    if train_prompts is None:
        return None
    overlap = detect_overlap(train_prompts, [it.prompt for it in items], [it.id for it in items])
    if overlap["count"]:
        msg = (
            f"{overlap['count']} of {len(items)} test prompts ({overlap['share']:.0%}) also occur "
            f"in the training data ({overlap['exact']} exact, {overlap['near']} near-duplicates): "
            "scores on them overstate quality on new data"
        )
        warnings.append(msg)
        log.warning(msg)
    return overlap


def _score_system(s: SystemRun, refs: list[str], metrics: list[str], cfg: EvalConfig,
                  boot: dict[str, Any], warnings: list[str]):  # fmt: skip
    """One system's item scores, its report entry and its headline numbers."""
    n = len(refs)
    sc = generate_item_scores(s.answers, refs, metrics, cfg.rouge_tokenizer)
    m = generate_metrics(s.answers, refs, metrics=metrics, item_scores=sc, **boot)
    entry: dict[str, Any] = {"description": s.description, "metrics": m}
    entry["failures"] = m["failures"]
    # Mean answer length: chrF (β=2) weighs recall 4x precision, so a long answer that
    # repeats the prompt can outscore a short right one; lengths let a reader see that.
    entry["answer_chars"] = float(np.mean([len(a or "") for a in s.answers]))
    if m["failures"]:
        warnings.append(f"{s.name} gave no answer for {m['failures']} of {n} test items")
    if s.measurements and s.cost_model is not None:
        entry["cost"] = cost_summary(s.measurements, s.cost_model, system=s.name, **boot)
    flat = {k: round(m[k]["value"], 4) for k in metrics if k in m}
    flat["failures"] = m["failures"]
    flat["answer_chars"] = round(entry["answer_chars"], 1)
    if "cost" in entry:
        c = entry["cost"]
        flat["cost_per_1k"] = round(c["cost_per_1k"]["value"], 6)
        # Same keys as the label report's headline (milliseconds).
        flat["latency_ms_p50"] = round(1000 * c["latency_p50_s"]["value"], 1)
        flat["latency_ms_p95"] = round(1000 * c["latency_p95_s"]["value"], 1)
        if "tokens_per_s" in c:
            flat["tokens_per_s"] = round(c["tokens_per_s"]["value"], 2)
    return sc, entry, flat


def _paired(systems: Sequence[SystemRun], reference: str, metrics: list[str],
            scores: dict[str, dict[str, np.ndarray]], per_system: dict[str, Any],
            boot: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Each system's metric differences against the reference, with paired-bootstrap CIs."""
    paired: dict[str, Any] = {}
    for s in systems:
        if s.name == reference:
            continue
        diffs = {}
        for k in metrics:
            a, b, stat = _paired_inputs(k, scores[s.name], scores[reference])
            d = paired_difference(a, b, stat, **boot)
            ca, cb = per_system[s.name]["metrics"][k], per_system[reference]["metrics"][k]
            d["cis_overlap"] = not (ca["low"] > cb["high"] or cb["low"] > ca["high"])
            diffs[k] = d
        paired[s.name] = {"vs": reference, "metrics": diffs}
    return paired


def _judged(items: Sequence[GenerateItem], systems: Sequence[SystemRun], reference: str,
            judge: Any, cfg: EvalConfig, boot: dict[str, Any], headline: dict[str, Any],
            warnings: list[str]) -> dict[str, Any]:  # fmt: skip
    """Judge win rates of each system against the reference (pairwise, both orders)."""
    from zimo.eval.judge import PairwiseItem, judge_pairwise

    judged: dict[str, Any] = {}
    ref_run = next(s for s in systems if s.name == reference)
    for s in systems:
        if s.name == reference:
            continue
        gold = cfg.judge_with_reference_answer
        pitems = [PairwiseItem(it.id, it.prompt, cand, base, gold=it.reference if gold else None)
                  for it, cand, base in zip(items, s.answers, ref_run.answers, strict=True)]  # fmt: skip
        res = judge_pairwise(pitems, judge, candidate=s.name, reference=reference,
                             prompt_version=cfg.judge_prompt, with_gold=gold,
                             max_attempts=cfg.judge_max_attempts, **boot)  # fmt: skip
        judged[s.name] = res
        headline[s.name][f"win_rate_vs_{reference}"] = round(res["win_rate"]["value"], 4)
        if res["failures"]:
            warnings.append(
                f"judge gave no usable verdict for {res['failures']} of {len(items)} items "
                f"({s.name} vs {reference}); they are left out of the win rate"
            )
    return judged


def _paired_inputs(metric: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray]):
    if metric == "chrf":
        return a["chrf_stats"], b["chrf_stats"], chrf_from_stats
    return a[metric], b[metric], None


def disagreements(
    items: Sequence[GenerateItem],
    systems: Sequence[SystemRun],
    scores: dict[str, dict[str, np.ndarray]],
    *,
    k: int = 8,
) -> list[dict[str, Any]]:
    """The ``k`` items where the systems' sentence-level scores differ most.

    Spread = max − min over systems of sentence chrF (ROUGE-L when chrF is off); ties broken by
    item order, so the selection is deterministic.
    """
    if k <= 0 or len(systems) < 2:
        return []
    key = "chrf" if all("chrf" in scores[s.name] for s in systems) else "rouge_l"
    if not all(key in scores[s.name] for s in systems):
        return []
    mat = np.stack([scores[s.name][key] for s in systems])
    spread = mat.max(axis=0) - mat.min(axis=0)
    order = np.argsort(-spread, kind="stable")[:k]
    out = []
    for i in order:
        if spread[i] <= 0:
            break
        out.append(
            {
                "id": items[i].id,
                "prompt": items[i].prompt,
                "reference": items[i].reference,
                "spread": round(float(spread[i]), 2),
                "score_name": key,
                "answers": {
                    s.name: {
                        "text": s.answers[i],
                        **{
                            m: round(float(scores[s.name][m][i]), 2)
                            for m in ("chrf", "rouge_l", "embed_sim")
                            if m in scores[s.name]
                        },
                    }
                    for s in systems
                },
            }
        )
    return out
