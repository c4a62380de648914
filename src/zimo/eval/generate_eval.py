"""Evaluation of ``generate`` / ``chat`` tasks: several systems on one test split.

Given the test items (prompt + reference answer) and, per system, either a function that
answers prompts or precomputed answers, :func:`evaluate_generate` produces per-system
reference metrics with bootstrap CIs (chrF, ROUGE-L, embedding similarity), paired differences
against a reference system, judge-based win rates when a judge is given, cost and latency,
examples where the systems disagree most, and a warning when test prompts also occur in the
training data. A system that gave no answer for an item is counted as a failure (and scores 0),
never dropped.

:func:`generate_local` answers prompts with a local causal LM (+ optional PEFT adapter):
batched greedy decoding through the tokenizer's chat template, with a ``max_new_tokens`` cap.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zimo.errors import DataError
from zimo.eval.bootstrap import paired_difference
from zimo.eval.config import EvalConfig
from zimo.eval.cost import CostModel, Measurement, cost_summary
from zimo.eval.metrics import (
    METRIC_METHODS,
    chrf_from_stats,
    generate_item_scores,
    generate_metrics,
)
from zimo.workspace import Layout

if TYPE_CHECKING:  # (zimo.infer imports torch: not at import time)
    from zimo.infer.penalties import Penalties

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass
class GenerateItem:
    """One test item: the chat messages that ask (no final answer) and the reference answer."""

    id: str
    messages: Messages
    reference: str

    @property
    def prompt(self) -> str:
        """The last user turn: what the report shows and what overlap detection compares."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return str(m.get("content") or "")
        return ""


@dataclass
class Generation:
    """One answer with its token counts (``text=None``: the system gave no answer)."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass
class SystemRun:
    """A system's answers to the test items (aligned with them) and how long they took."""

    name: str
    answers: list[str | None]
    measurements: list[Measurement] | None = None
    cost_model: CostModel | None = None
    description: str = ""
    errors: list[str | None] = field(default_factory=list)


def items_from_records(records: Sequence[dict[str, Any]]) -> list[GenerateItem]:
    """Test items from Zimo records: ``messages`` ending in the assistant's reference answer.

    Records with ``text`` + ``label`` (a prompt and its answer) are accepted too. Records
    without a reference answer are skipped (they cannot be scored by reference metrics).
    """
    items = []
    for r in records:
        msgs = r.get("messages")
        if msgs is not None and not isinstance(msgs, list):
            msgs = list(msgs)  # Parquet round-trips give numpy arrays of dicts
        if msgs:
            msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]
            if msgs[-1]["role"] == "assistant" and len(msgs) >= 2:
                items.append(GenerateItem(str(r["id"]), msgs[:-1], msgs[-1]["content"]))
                continue
        if r.get("text") and r.get("label"):
            items.append(
                GenerateItem(
                    str(r["id"]), [{"role": "user", "content": str(r["text"])}], str(r["label"])
                )
            )
    return items


# ---------------------------------------------------------------------------------------------
# overlap between train and test
# ---------------------------------------------------------------------------------------------

_KEEP = re.compile(r"[\W_]+", re.UNICODE)


def normalise_for_overlap(text: str) -> str:
    """Case-, width-, space- and punctuation-insensitive form of a prompt."""
    return _KEEP.sub("", unicodedata.normalize("NFKC", text).casefold())


def detect_overlap(
    train_prompts: Sequence[str],
    test_prompts: Sequence[str],
    test_ids: Sequence[str] | None = None,
    *,
    near_threshold: float = 0.8,
    shingle: int = 5,
    num_perm: int = 64,
) -> dict[str, Any]:
    """Test prompts that also occur in the training data, exactly or nearly.

    Exact = same normalised text. Near = MinHash-estimated Jaccard similarity of character
    ``shingle``-grams ≥ ``near_threshold`` (character n-grams work for Chinese without a
    segmenter), confirmed by the exact Jaccard of the two shingle sets.
    """
    ids = list(test_ids) if test_ids is not None else [str(i) for i in range(len(test_prompts))]
    train_norm = [normalise_for_overlap(t) for t in train_prompts]
    exact_set = set(train_norm)
    exact = [i for i, t in enumerate(test_prompts) if normalise_for_overlap(t) in exact_set]
    near: list[int] = []
    if train_prompts and test_prompts:
        from datasketch import MinHash, MinHashLSH

        def shingles(s: str) -> set[str]:
            return {s[i : i + shingle] for i in range(max(1, len(s) - shingle + 1))} if s else set()

        def sketch(sh: set[str]) -> MinHash:
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch([x.encode("utf-8") for x in sh])
            return m

        lsh = MinHashLSH(threshold=near_threshold, num_perm=num_perm)
        train_sh = []
        for j, t in enumerate(train_norm):
            sh = shingles(t)
            train_sh.append(sh)
            if sh:
                lsh.insert(str(j), sketch(sh))
        exact_idx = set(exact)
        for i, t in enumerate(test_prompts):
            if i in exact_idx:
                continue
            sh = shingles(normalise_for_overlap(t))
            if not sh:
                continue
            for j in lsh.query(sketch(sh)):
                other = train_sh[int(j)]
                if len(sh & other) / max(1, len(sh | other)) >= near_threshold:
                    near.append(i)
                    break
    count = len(exact) + len(near)
    return {
        "count": count,
        "exact": len(exact),
        "near": len(near),
        "share": count / len(test_prompts) if test_prompts else 0.0,
        "ids": [ids[i] for i in sorted(exact + near)][:50],
        "method": f"normalised exact match, or MinHash near-duplicates (character {shingle}-grams, "
        f"Jaccard ≥ {near_threshold}) of test prompts against training prompts",
    }


# ---------------------------------------------------------------------------------------------
# running systems
# ---------------------------------------------------------------------------------------------


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
    bar = _progress(progress, len(items), f"answering with {name}")
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


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def cap_items(items: Sequence[GenerateItem], max_rows: int | None) -> list[GenerateItem]:
    """The first ``max_rows`` items (the split is already shuffled, so this is a random subset)."""
    return list(items if max_rows is None else items[:max_rows])


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

    overlap = None
    if train_prompts is not None:
        overlap = detect_overlap(
            train_prompts, [it.prompt for it in items], [it.id for it in items]
        )
        if overlap["count"]:
            msg = (
                f"{overlap['count']} of {n} test prompts ({overlap['share']:.0%}) also occur in the "
                f"training data ({overlap['exact']} exact, {overlap['near']} near-duplicates): "
                "scores on them overstate quality on new data"
            )
            warnings.append(msg)
            log.warning(msg)

    scores: dict[str, dict[str, np.ndarray]] = {}
    per_system: dict[str, Any] = {}
    headline: dict[str, dict[str, Any]] = {}
    for s in systems:
        sc = generate_item_scores(s.answers, refs, metrics, cfg.rouge_tokenizer)
        scores[s.name] = sc
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
        per_system[s.name] = entry
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
        headline[s.name] = flat

    reference = reference or cfg.reference_for(task)
    if reference not in scores:
        reference = None
    paired: dict[str, Any] = {}
    if reference:
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

    judged: dict[str, Any] = {}
    if judge is not None and reference:
        from zimo.eval.judge import PairwiseItem, judge_pairwise

        ref_run = next(s for s in systems if s.name == reference)
        for s in systems:
            if s.name == reference:
                continue
            pitems = [
                PairwiseItem(
                    it.id,
                    it.prompt,
                    cand,
                    base,
                    gold=it.reference if cfg.judge_with_reference_answer else None,
                )
                for it, cand, base in zip(items, s.answers, ref_run.answers, strict=True)
            ]
            res = judge_pairwise(
                pitems,
                judge,
                candidate=s.name,
                reference=reference,
                prompt_version=cfg.judge_prompt,
                with_gold=cfg.judge_with_reference_answer,
                max_attempts=cfg.judge_max_attempts,
                **boot,
            )
            judged[s.name] = res
            headline[s.name][f"win_rate_vs_{reference}"] = round(res["win_rate"]["value"], 4)
            if res["failures"]:
                warnings.append(
                    f"judge gave no usable verdict for {res['failures']} of {n} items "
                    f"({s.name} vs {reference}); they are left out of the win rate"
                )

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


# ---------------------------------------------------------------------------------------------
# local generation
# ---------------------------------------------------------------------------------------------


def render_chat_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text for ``messages`` through the tokenizer's chat template.

    Tokenizers without a template get Zimo's ChatML fallback (:mod:`zimo.prompts`), the same
    one training uses, so the evaluated prompt is token for token the trained one.
    """
    from zimo.prompts import ensure_chat_template

    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _stop_ids(tokenizer: Any, model: Any) -> list[int]:
    """End-of-turn token ids: eos plus the chat template's turn terminators when present."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in (tokenizer.eos_token_id, gen_eos):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, list | tuple):
            ids.update(int(x) for x in v)
    vocab = tokenizer.get_vocab()
    for tok in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        if tok in vocab:
            ids.add(int(vocab[tok]))
    return sorted(ids)


# Turn markers that a base model may spell out as ordinary text (no special token for them in
# its vocabulary, e.g. ChatML's <|im_end|> under a Gemma tokenizer): the answer ends there.
# ChatML markers are matched by prefix, so misspelt ones ("<|im_start>") end it too.
STOP_TEXTS = ("<|im_end", "<|im_start", "<end_of_turn>", "<start_of_turn>", "<|endoftext|>")


def _cut_at_stop_text(text: str) -> str:
    """The answer before the first spelled-out turn marker (or a marker cut off at the end)."""
    cut = min((i for i in (text.find(s) for s in STOP_TEXTS) if i >= 0), default=len(text))
    text = text[:cut]
    for s in STOP_TEXTS:  # max_new_tokens may end the answer in the middle of a marker
        for k in range(len(s) - 1, 1, -1):
            if text.endswith(s[:k]):
                text = text[:-k]
                break
    return text.strip()


def _spelled_stop_kwargs(tokenizer: Any, rendered: str) -> dict[str, Any]:
    """``generate`` kwargs that stop at turn markers the template spells as ordinary tokens.

    Only when the rendered prompt uses a marker that is not one token of the vocabulary (the
    ChatML fallback under a Gemma tokenizer): then a base model that "answers" with marker after
    marker would otherwise run to ``max_new_tokens``. Where markers are special tokens, their
    ids already stop generation and string matching would only cost time (~10%).
    """
    vocab = tokenizer.get_vocab()
    full = {"<|im_end": "<|im_end|>", "<|im_start": "<|im_start|>"}
    spelled = [s for s in STOP_TEXTS if s in rendered and full.get(s, s) not in vocab]
    return {"stop_strings": list(STOP_TEXTS), "tokenizer": tokenizer} if spelled else {}


def generate_local(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Messages],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    max_prompt_tokens: int = 1024,
    penalties: Penalties | None = None,
) -> list[Generation]:
    """Greedy answers from a local causal LM for chat ``prompts``, batched, in input order.

    Prompts are rendered with the chat template, left-padded, and sorted by length so each
    batch pads little; generation stops at an end-of-turn token or ``max_new_tokens``.
    ``penalties`` discourage tokens the answer has already used (not the prompt's, so an
    answer may still quote the question); see :mod:`zimo.infer.penalties`.
    """
    import torch
    from transformers import LogitsProcessorList

    from zimo.infer.penalties import AnswerPenaltyProcessor

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    tokenizer.truncation_side = "left"  # an over-long prompt loses its start, not its question
    texts = [render_chat_prompt(tokenizer, list(p)) for p in prompts]
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_prompt_tokens)[
        "input_ids"
    ]
    # No extra special tokens: the rendered template holds BOS where the base wants it (as in
    # training, see zimo.prompts).
    order = np.argsort([len(x) for x in enc], kind="stable")
    out: list[Generation | None] = [None] * len(texts)
    stop = _stop_ids(tokenizer, model)
    spelled = _spelled_stop_kwargs(tokenizer, texts[0] if texts else "")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer.pad(
                {"input_ids": [enc[i] for i in idx]}, padding=True, return_tensors="pt"
            )
            procs = LogitsProcessorList()
            if penalties is not None and penalties.active:
                procs.append(AnswerPenaltyProcessor(penalties, batch["input_ids"].shape[1]))
            gen = model.generate(
                **batch,
                logits_processor=procs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop or None,
                pad_token_id=tokenizer.pad_token_id,
                **spelled,
            )
            new = gen[:, batch["input_ids"].shape[1] :]
            finished = set(stop) | {tokenizer.pad_token_id}
            for row, i in zip(new.tolist(), idx, strict=True):
                n_tok = 0
                for t in row:  # tokens generated for this row (finished rows are padded)
                    if t in finished:
                        n_tok += int(t in stop)  # the end-of-turn token was generated
                        break
                    n_tok += 1
                text = _cut_at_stop_text(tokenizer.decode(row[:n_tok], skip_special_tokens=True))
                out[i] = Generation(text or None, len(enc[i]), n_tok)
    return [g if g is not None else Generation(None) for g in out]


def local_answerer(
    model_name: str,
    adapter: str | None = None,
    *,
    max_new_tokens: int = 128,
    loaded: tuple[Any, Any] | None = None,
    without_adapter: bool = False,
    penalties: Penalties | None = None,
) -> Callable[[list[Messages]], list[Generation]]:
    """A ``batch_answer`` function for :func:`run_system` from a model preset (+ adapter).

    ``loaded`` reuses an already loaded ``(model, tokenizer)``; with ``without_adapter`` a PEFT
    model answers with its adapter switched off, i.e. as the untuned base (one model in memory
    serves both the sub-model and the zero-shot base).
    """
    import contextlib

    if loaded is None:
        from zimo.models import load_causal_lm

        loaded = load_causal_lm(model_name, adapter=adapter)
    model, tok = loaded

    def answer(batch: list[Messages]) -> list[Generation]:
        ctx = model.disable_adapter() if without_adapter else contextlib.nullcontext()
        with ctx:
            return generate_local(
                model,
                tok,
                batch,
                max_new_tokens=max_new_tokens,
                batch_size=len(batch),
                penalties=penalties,
            )

    return answer


def _progress(enabled: bool, total: int, label: str):
    if not enabled or total < 2:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    prog = Progress(
        "[bold]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )
    task = prog.add_task(label, total=total)
    prog.start()
    return prog, task


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
    import json

    meta_path = train_dir / "zimo_model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    base = meta.get("base") or base
    adapter = meta.get("adapter")
    if adapter and (train_dir / adapter / "adapter_config.json").is_file():
        return base, str(train_dir / adapter)
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
        price_in_per_1k=cfg.price_in_per_1k,
        price_out_per_1k=cfg.price_out_per_1k,
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

    from zimo.eval.cost import assumptions_text
    from zimo.eval.generate_report import write_generate_report
    from zimo.fileio import write_json_atomic
    from zimo.hw import cpu_info
    from zimo.models import load_causal_lm

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
    bs = ecfg.batch_size_for(task)
    cpu = cpu_info()
    machine = f"{cpu['model']}, {cpu['cores']} cores"
    local_cost = CostModel(machine_price_per_hour=ecfg.machine_price_per_hour, machine=machine)
    base = getattr(_lm_cfg(cfg), "base", None) or "gecko"
    # The synth stage's teacher cache (the build passes it): judge and teacher answers are
    # cached with synth calls and survive eval reruns.
    cache = teacher_cache or Layout(project.root).teacher_cache
    runs: list[SystemRun] = []
    shared = None  # (model, tokenizer) of base + adapter, reused for the zero-shot base
    ft_source = _finetuned_source(Path(train_dir), base) if "finetuned" in systems else None
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
    shared = None  # the models are no longer needed: free them before scoring
    gc.collect()
    judge = None
    if ecfg.judge:
        from zimo.eval.judge import make_judge

        judge = make_judge(_teacher_section(project, ecfg.judge), cache_path=cache)
    result = evaluate_generate(
        items, runs, config=ecfg, train_prompts=train_prompts, judge=judge, task=task
    )
    assumptions = assumptions_text(
        {r.name: r.cost_model for r in runs if r.cost_model is not None},
        extra=[
            f"Answers capped at {ecfg.max_new_tokens} new tokens, greedy decoding"
            + (
                f", {ecfg.penalties().text()} on the answer's own tokens (the same for every "
                "local system)."
                if ecfg.penalties().active
                else "."
            )
        ],
    )
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
