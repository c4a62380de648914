"""A served cascade for label projects: the cheapest tier answers what it is sure of, the big
model only what it must (``route.mode: cascade``).

``zimo route fit`` calibrates one confidence threshold per cheap tier (``calibrate_cascade``) on
the dev split plus out-of-fold answers of the train split, with the big tier's answers fetched
once over HTTP and cached; ``zimo serve`` answers the project's name through the tiers; each
answer says which tier answered and why (``zimo.cascade``), and the request log keeps it, so
``zimo flywheel`` can turn the big tier's answers into training rows.

A tier is local when its model is the project's name or ``<project>@<sub-model>``; any other
model is asked from the configured upstream (``serve.upstream``) with the label set in the
prompt, and its answer is read as one of the labels.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ConfigError, ZimoError
from zimo.fileio import read_jsonl
from zimo.prices import token_cost
from zimo.submodel_meta import SubModelMeta
from zimo.workspace import Layout

log = logging.getLogger("zimo.serve")


@dataclass
class Tier:
    name: str
    model: str
    local: bool
    price_per_1m_tokens: float | None
    price_per_request: float | None

    def cost(self, tokens: int) -> float:
        return (self.price_per_request or 0.0) + token_cost(tokens, self.price_per_1m_tokens)


def cascade_tiers(project) -> list[Tier]:
    """The tiers of a project's ``route:`` section, checked for a served cascade."""
    from zimo.route.config import parse_route_config

    cfg = project.config
    if cfg.task != "label":
        raise ConfigError("route.mode: cascade needs task: label", "cascades answer with labels")
    rc = parse_route_config(cfg.route)
    names = _local_names(project)
    tiers = []
    for i, t in enumerate(rc.tiers):
        model = t.served_model
        local = model in names or model == cfg.name or model.startswith(f"{cfg.name}@")
        if model == cfg.name:
            raise ConfigError(
                f"route.tiers[{i}] ({t.name!r}) names the project itself, which the cascade serves",
                f"name a sub-model: {', '.join(sorted(n for n in names if '@' in n))}",
            )
        if local and model not in names:
            raise ConfigError(
                f"route.tiers[{i}] ({t.name!r}) names {model!r}, which this project does not train",
                f"local tiers are: {', '.join(sorted(names))}",
            )
        if not local and not t.has_price():
            raise ConfigError(f"route.tiers[{i}] ({t.name!r}) is an upstream model without a price",
                              "set price_per_1m_tokens or price_per_request")  # fmt: skip
        tiers.append(Tier(t.name, model, local, t.price_per_1m_tokens, t.price_per_request))
    if tiers[-1].local:
        raise ConfigError("the last tier of a cascade must be the big (upstream) model",
                          "add it last: {name: big, model: gpt-4o, price_per_1m_tokens: 5}")  # fmt: skip
    if any(not t.local for t in tiers[:-1]):
        raise ConfigError("only the last tier of a cascade may be an upstream model",
                          "list the project's sub-models first, cheapest first")  # fmt: skip
    return tiers


def _local_names(project) -> set[str]:
    """The names the project's sub-models are served under (see zimo.serve.analytic)."""
    from zimo.config import submodel_name

    subs = project.config.submodels()
    names = {project.name}
    for s in subs:
        names.add(f"{project.name}@{submodel_name(s)}")
    return names


# ---------------------------------------------------------------------------- the big tier
def label_messages(labels: list[str], instruction: str | None, text: str) -> list[dict[str, str]]:
    """The prompt that asks an upstream model for one label: the label set is in the prompt."""
    system = ("You are a careful classifier. Answer with exactly one of these labels and "
              f"nothing else: {', '.join(labels)}.")  # fmt: skip
    user = f"{instruction}\n\n{text}" if instruction else text
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_label(content: str | None, labels: list[str]) -> str | None:
    """The label an upstream answer names, or None: the teacher-labelling parser (a JSON
    answer, a bare label, or one unique whole-word / CJK mention; two labels are no answer)."""
    from zimo.synth.label import parse_label as parse

    return parse(content or "", labels)[0]


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class UpstreamAnswers:
    """The big tier's answers, cached on disk by text: calibration and the flywheel never pay
    twice for the same message."""

    def __init__(self, project_root: Path):
        self.path = Layout(project_root).upstream_answers
        self.answers: dict[str, str] = {}
        # A torn last line after a crash is skipped: that answer is asked again.
        for row in read_jsonl(self.path):
            if isinstance(row, dict) and "key" in row and "label" in row:
                self.answers[row["key"]] = row["label"]

    def get(self, text: str) -> str | None:
        return self.answers.get(_text_key(text))

    def add(self, text: str, label: str) -> None:
        key = _text_key(text)
        if self.answers.get(key) == label:
            return
        self.answers[key] = label
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "label": label}) + "\n")


class UpstreamStopped(ZimoError):
    """The calibration's upstream calls stopped early (the budget, or failures)."""

    def __init__(self, message: str, hint: str, answers: list[str | None]):
        super().__init__(message, hint)
        self.answers = answers  # what was bought before the stop (None where nothing was)


def ask_upstream_labels(texts: list[str], *, upstream, tier: Tier, labels: list[str],
                        instruction: str | None, max_cost: float | None = None,
                        cache_path: Path | None = None,
                        progress: bool = False) -> list[str | None]:  # fmt: skip
    """The upstream model's label for each text, through :class:`zimo.synth.teacher.Teacher`:
    PII redacted before a text leaves, retries with backoff (Retry-After honoured), a disk
    cache of the exact requests (a killed run keeps what it bought) and ``max_cost`` USD as a
    cap on this call's spend.

    When the cap stops it or the upstream fails, :class:`UpstreamStopped` (a one-line error)
    carries the answers bought before that (``.answers``), so the caller can keep them."""
    from zimo.synth.config import TeacherConfig
    from zimo.synth.teacher import ChatRequest, Teacher, TeacherFatal

    cfg = TeacherConfig(base_url=upstream.base_url, model=tier.model,
                        api_key_env=upstream.api_key_env, timeout=upstream.timeout_s,
                        temperature=0.0, max_tokens=8, max_cost=max_cost)  # fmt: skip
    # Priced like the big tier (per token and/or per request), so the cap counts what serving
    # the same calls would cost.
    teacher = Teacher(cfg, cache_path, progress=progress, api_key=upstream.api_key() or "none",
                      cost=lambda pt, ct: tier.cost(pt + ct))  # fmt: skip
    reqs = [ChatRequest(messages=label_messages(labels, instruction, t), template="cascade.label")
            for t in texts]  # fmt: skip
    try:
        results = teacher.run(reqs)
    except TeacherFatal as e:
        raise ZimoError(e.message, "check serve.upstream (or --upstream URL) and the big "
                        "tier's model name; answers bought so far are cached") from None  # fmt: skip
    finally:
        teacher.close()
    answers = [parse_label(r.content, labels) if r.ok else None for r in results]
    failed = [r.error for r in results if r.error and r.error != "budget"]
    stopped = sum(r.error == "budget" for r in results)
    if stopped or failed:
        if stopped:
            err = UpstreamStopped(
                f"asking {tier.model} for {len(texts)} label(s) would cost more than "
                f"route.calibration_max_cost ({max_cost:g} USD): stopped after "
                f"{len(texts) - stopped} ({teacher.usage.cost:.4g} USD)",
                "raise route.calibration_max_cost; the answers bought are kept, so a rerun "
                "asks only for the rest", answers)  # fmt: skip
        else:
            err = UpstreamStopped(
                f"the upstream model did not answer {len(failed)} of {len(texts)} label "
                f"request(s) ({failed[0][:160]})",
                "check serve.upstream and that it is up; the answers bought are kept",
                answers)  # fmt: skip
        raise err
    return answers


# ---------------------------------------------------------------------------- calibration
def _margin(p: np.ndarray) -> np.ndarray:
    from zimo.route.cascade import label_margin

    return label_margin(p)


def _tier_submodel(project, tier: Tier) -> tuple[int, str, Any]:
    """(index in `train:`, name, config) of the sub-model a local tier names."""
    from zimo.config import submodel_name

    subs = project.config.submodels()
    name = tier.model.split("@", 1)[1] if "@" in tier.model else submodel_name(subs[0])
    index = next(i for i, s in enumerate(subs) if submodel_name(s) == name)
    return index, name, subs[index]


def _tier_folder(project, tier: Tier) -> Path:
    from zimo.stages.dag import artifact_path, train_stage_name

    index, name, _ = _tier_submodel(project, tier)
    folder = artifact_path(project.root, train_stage_name(index, name))
    if folder is None:
        raise ZimoError(f"sub-model {name!r} is not trained", f"run `zimo build {project.root}`")
    return folder


def local_tier_answers(project, tier: Tier, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, decided label indices) of a local tier on ``texts``, offline."""
    cfg = project.config
    folder = _tier_folder(project, tier)
    meta = SubModelMeta.read(folder)
    if meta.kind == "classical":
        from zimo.classical.model import ClassicalPredictor

        cp = ClassicalPredictor(folder)
        proba = cp.predict_proba(texts)
        return proba, cp.decide(proba)
    from peft import PeftModel

    from zimo.eval.label_eval import trained_label_task
    from zimo.infer.label import LabelScorer, decide
    from zimo.models import load_causal_lm

    model, tok = load_causal_lm(meta.base)
    model = PeftModel.from_pretrained(model, str(meta.adapter_dir(folder))).eval()
    task = trained_label_task(folder, cfg)
    scorer = LabelScorer(model, tok, cfg.labels, task.instruction, system=task.system,
                         max_text_tokens=task.max_text_tokens or 256)  # fmt: skip
    import torch

    with torch.inference_mode():
        proba = scorer.predict_proba(texts, batch_size=16)
    pos = cfg.labels.index(task.positive_label) if task.positive_label else None
    return proba, decide(proba, pos, task.decision_threshold)


def fit_live_cascade(project, *, upstream_url: str | None = None, max_train_rows: int = 2000,
                     console=None) -> dict[str, Any]:  # fmt: skip
    """Calibrate the cascade's thresholds and save them to ``.zimo/route/cascade.json``.

    The calibration rows are the dev split and the human-labelled train rows (their
    out-of-fold answers). Teacher rows (the flywheel's, the big tier's answers to exactly the
    requests the cascade escalated) and other machine-made rows train every fold but are never
    scored: they are the hard tail of the traffic, selected by the cascade itself, and scoring
    them made the cheap tier look worse at every threshold than it is on the stream, so each
    flywheel round raised its threshold and sent more to the big tier (see
    :func:`calibration_split`)."""
    from zimo.classical.config import ClassicalTrainConfig
    from zimo.dataset_io import read_records
    from zimo.route.calibrate import TargetUnreachable
    from zimo.route.cascade import calibrate_cascade
    from zimo.route.config import parse_route_config
    from zimo.stages.dag import artifact_path

    cfg = project.config
    rc = parse_route_config(cfg.route)
    tiers = cascade_tiers(project)
    split = artifact_path(project.root, "split")
    if split is None:
        raise ZimoError("the project is not built yet", f"run `zimo build {project.root}` first")
    labels = cfg.labels
    lab = {x: i for i, x in enumerate(labels)}
    dev = [r for r in read_records(split / "dev.parquet") if r.get("label") in lab]
    train = [r for r in read_records(split / "train.parquet") if r.get("label") in lab]
    # The split already holds the flywheel's teacher rows (they join the train split); only
    # those it lacks (a split built before the last round) are added. A row counted twice sat in
    # two cross-validation folds, so its out-of-fold answer came from a model that had learned
    # its twin: the cheap tier looked right on exactly the hard rows the big tier had taught.
    seen = {r["text"] for r in dev + train}
    train += [r for r in _flywheel_rows(project) if r["text"] not in seen and r.get("label") in lab]
    train, selected = calibration_split(train)
    rng = np.random.default_rng(0)
    if len(train) > max_train_rows:
        train = [train[i] for i in sorted(rng.choice(len(train), max_train_rows, replace=False))]
    rows = dev + train
    texts = [r["text"] for r in rows]
    gold = np.array([lab[r["label"]] for r in rows])
    n_dev = len(dev)
    # The big tier: asked once per text over HTTP, then cached.
    big = tiers[-1]
    cache = UpstreamAnswers(project.root)
    todo = [t for t in dict.fromkeys(texts) if cache.get(t) is None]
    if todo:
        up = _upstream_settings(project, upstream_url)
        if console:
            console.print(f"  asking {big.model} for {len(todo)} label(s) over HTTP…")
        try:
            answers = ask_upstream_labels(
                todo, upstream=up, tier=big, labels=labels, instruction=cfg.instruction,
                max_cost=rc.calibration_max_cost, cache_path=Layout(project.root).teacher_cache,
                progress=console is not None)  # fmt: skip
        except UpstreamStopped as e:
            _keep_answers(cache, todo, e.answers)
            raise
        _keep_answers(cache, todo, answers)
    big_pred = np.array([lab.get(cache.get(t) or "", -1) for t in texts])
    quality = np.full((len(rows), len(tiers)), np.nan)
    conf = np.full((len(rows), len(tiers) - 1), np.nan)
    quality[:, -1] = (big_pred == gold).astype(float)
    for j, tier in enumerate(tiers[:-1]):
        # Dev rows: the trained model. A language-model tier learned from the train rows, so
        # only its dev answers are honest; a classical tier adds out-of-fold answers of the
        # same recipe on train, answers the model did not learn from.
        proba_dev, pred_dev = local_tier_answers(project, tier, texts[:n_dev])
        conf[:n_dev, j] = _margin(proba_dev)
        quality[:n_dev, j] = (pred_dev == gold[:n_dev]).astype(float)
        ccfg = _tier_submodel(project, tier)[2]
        if isinstance(ccfg, ClassicalTrainConfig) and len(train) >= 30:
            from zimo.classical.model import ClassicalPredictor

            p_oof = out_of_fold_proba(ccfg, texts[n_dev:], gold[n_dev:],
                                      [r["text"] for r in selected],
                                      np.array([lab[r["label"]] for r in selected]))  # fmt: skip
            if p_oof is not None:
                served = ClassicalPredictor(_tier_folder(project, tier))  # its decision rule
                conf[n_dev:, j] = _margin(p_oof)
                quality[n_dev:, j] = (served.decide(p_oof) == gold[n_dev:]).astype(float)
    tokens = np.array([len(t) / 2 + 40 for t in texts])  # ~2 chars/token + the label prompt
    costs = np.column_stack([np.zeros(len(rows)) if t.local else
                             np.array([t.cost(int(k)) for k in tokens]) for t in tiers])  # fmt: skip
    target = rc.target.quality or 0.99
    confidence = rc.cascade.confidence if rc.cascade else "margin"
    try:
        cascade = calibrate_cascade(conf, quality, costs, [t.name for t in tiers],
                                    quality_target=target, confidence=confidence)  # fmt: skip
    except TargetUnreachable as e:
        raise ZimoError(e.message, e.hint) from None
    if confidence in ("margin", "max_prob"):
        # These confidences lie in [0, 1]: "every answer passes" is 0 and "none does" is above
        # 1, written as finite numbers because JSON (the answers' zimo.cascade) has no infinity.
        cascade.thresholds = [0.0 if t == -np.inf else 1.5 if t == np.inf else t
                              for t in cascade.thresholds]  # fmt: skip
    cascade.meta.update({
        "models": {t.name: t.model for t in tiers},
        "labels": labels,
        "calibration_rows": {"dev": n_dev, "train_out_of_fold": len(rows) - n_dev,
                             "trained_not_scored": len(selected)},
        "tier_quality": {t.name: float(np.nanmean(quality[:, j])) for j, t in enumerate(tiers)},
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })  # fmt: skip
    cascade.save(Layout(project.root).cascade)
    return {"thresholds": dict(zip([t.name for t in tiers[:-1]], cascade.thresholds, strict=True)),
            **cascade.meta}  # fmt: skip


def calibration_split(train: list[dict]) -> tuple[list[dict], list[dict]]:
    """(rows to score, rows to train on only) of a train split, for the calibration.

    Human-labelled rows are a sample of the traffic the cascade serves, so their out-of-fold
    answers estimate how the cheap tier does on it. The others are not: the flywheel's teacher
    rows are the requests the cascade escalated because the cheap tier was unsure (selected by
    the cascade itself, the hardest few percent), and synthetic or distilled rows come from
    elsewhere. Scored, they over-represent hard traffic, more with every flywheel round. They
    could be re-weighted by their selection probability instead, but that probability changes
    with each round's thresholds and the escalated rows carry no shadow sample of what was not
    escalated, so the weights would not be known; they train every fold instead."""
    from zimo.guard.mix import origin_of
    from zimo.records import SYNTHETIC_ORIGINS

    scored = [r for r in train if origin_of(r) not in SYNTHETIC_ORIGINS]
    return scored, [r for r in train if origin_of(r) in SYNTHETIC_ORIGINS]


def out_of_fold_proba(ccfg, texts: list[str], gold: np.ndarray, extra_texts: list[str],
                      extra_gold: np.ndarray, max_folds: int = 5) -> np.ndarray | None:  # fmt: skip
    """Out-of-fold probabilities of the classical recipe ``ccfg`` on ``texts``: each fold's
    model learns the other folds and every ``extra`` row (rows to train on, never to score),
    as the served model learned them all. None when a label has fewer than 2 rows.

    The served recipe itself (calibrated probabilities included): a margin from another recipe
    would set a threshold the served model does not meet. Stratified folds without shuffling,
    as ``cross_val_predict`` makes them, so a pool without extra rows gets the answers it got
    before extra rows were kept out of scoring."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from zimo.classical.model import make_pipeline, normalise

    if len(set(gold.tolist())) < 2:
        return None
    folds = int(min(max_folds, np.bincount(gold).min()))
    if folds < 2:
        return None
    x, x_extra = normalise(texts), normalise(extra_texts)
    recipe = make_pipeline(ccfg)
    out = np.zeros((len(texts), int(max(gold.max(), extra_gold.max(initial=0))) + 1))
    for fit_idx, score_idx in StratifiedKFold(folds).split(np.zeros(len(gold)), gold):
        model = clone(recipe).fit([x[i] for i in fit_idx] + x_extra,
                                  np.concatenate([gold[fit_idx], extra_gold]).astype(int))  # fmt: skip
        p = model.predict_proba([x[i] for i in score_idx])
        out[np.ix_(score_idx, model.classes_)] = p
    return out


def _keep_answers(cache: UpstreamAnswers, texts: list[str], answers: list[str | None]) -> None:
    for t, a in zip(texts, answers, strict=True):
        if a is not None:
            cache.add(t, a)


def _upstream_settings(project, url: str | None):
    from zimo.serve.config import UpstreamConfig

    if url:
        return UpstreamConfig(base_url=url)
    serve = project.config.serve_settings()
    if serve.upstream is None:
        raise ConfigError("the cascade's big tier needs an upstream model",
                          "set serve.upstream.base_url in zimo.yaml or pass --upstream URL")  # fmt: skip
    return serve.upstream


def _redactor():
    from zimo.serve.service import make_redactor

    return make_redactor()


def _flywheel_rows(project) -> list[dict]:
    from zimo.teacher_rows import read_rows

    return read_rows(project.root)


# ---------------------------------------------------------------------------- serving
class LiveCascade:
    """The served cascade of one project; reloads its thresholds when ``zimo route fit`` or the
    flywheel rewrites them."""

    def __init__(self, project):
        self.project = project
        self.tiers = cascade_tiers(project)
        self.labels = project.config.labels
        self.instruction = project.config.instruction
        self.shadow_rate = project.config.route.shadow_rate if project.config.route else 0.0
        self.path = Layout(project.root).cascade
        self._mtime = None
        self.cascade = None
        self.reload()

    def reload(self) -> bool:
        from zimo.route.cascade import Cascade

        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._mtime:
            return False
        self.cascade = Cascade.load(self.path)
        self._mtime = mtime
        return True

    def threshold(self, i: int) -> float | None:
        if self.cascade is None or i >= len(self.cascade.thresholds):
            return None
        return float(self.cascade.thresholds[i])


def make_cascade_handler(live: LiveCascade):
    """A virtual-model handler ``(ChatRequest, ServeState) -> Answer`` for the cascade."""

    async def handler(req, st):
        from zimo.serve.errors import APIError
        from zimo.serve.service import Answer

        live.reload()
        if live.cascade is None:
            raise APIError(503, f"the cascade of `{req.model}` is not calibrated yet: run "
                           f"`zimo route fit {live.project.root}`", code="cascade_not_fitted")  # fmt: skip
        text = next((m.text() for m in reversed(req.messages) if m.role == "user"), None)
        if not text:
            raise APIError(400, "send the text to label as a user message", param="messages")
        trail: list[dict[str, Any]] = []
        best: tuple[float, Answer, int] | None = None
        total_cost = 0.0
        for i, tier in enumerate(live.tiers[:-1]):
            t0 = time.perf_counter()
            sub_req = req.model_copy(update={"model": tier.model})
            try:
                ans = await (st.virtual[tier.model](sub_req, st) if tier.model in st.virtual
                             else st.chat_local(tier.model, sub_req))  # fmt: skip
            except Exception as e:  # a broken local tier: the next tier answers, never a 500
                log.warning("cascade tier %s failed: %s: %s", tier.name, type(e).__name__, e)
                trail.append({"tier": tier.name, "model": tier.model, "answered": False,
                              "error": f"{type(e).__name__}: {str(e)[:200]}",
                              "latency_ms": round((time.perf_counter() - t0) * 1000, 2)})  # fmt: skip
                continue
            probs = np.array([[ans.label_probs.get(x, 0.0) for x in live.labels]])
            conf = float(_margin(probs)[0])
            thr = live.threshold(i)
            ok = thr is not None and conf >= thr
            if thr is not None and not np.isfinite(thr):
                thr = None  # a cascade file from elsewhere: JSON answers cannot carry infinity
            total_cost += ans.cost
            trail.append({"tier": tier.name, "model": tier.model, "confidence": round(conf, 4),
                          "threshold": thr, "answered": ok, "cost_usd": ans.cost,
                          "latency_ms": round((time.perf_counter() - t0) * 1000, 2)})  # fmt: skip
            if best is None or conf > best[0]:
                best = (conf, ans, i)
            if ok:
                _maybe_shadow(live, st, text, ans.text, tier)
                return _final(ans, trail, tier, i, total_cost, degraded=None)
        return await _escalate(st, live, text, trail, best, total_cost)

    return handler


async def _escalate(st, live: LiveCascade, text: str, trail: list[dict[str, Any]],
                    best: tuple[float, Any, int] | None, total_cost: float):  # fmt: skip
    """The big tier's answer, or, when the caller's budget is spent or the upstream fails,
    the most confident local tier's, marked degraded with the reason."""
    import zimo.serve.budget as budget
    from zimo.serve.errors import APIError
    from zimo.serve.service import Answer

    big = live.tiers[-1]
    t0 = time.perf_counter()

    def degrade(reason: str, message: str):
        trail.append({"tier": big.name, "model": big.model, "answered": False, "error": message,
                      "latency_ms": round((time.perf_counter() - t0) * 1000, 2)})  # fmt: skip
        if best is None:  # every local tier failed as well
            raise APIError(503, f"no tier of the cascade could answer: {message}",
                           code="cascade_unavailable")  # fmt: skip
        _, ans, i = best
        trail[i]["answered"] = True
        return _final(ans, trail, live.tiers[i], i, total_cost, degraded=reason)

    messages = _big_messages(st, live, text)
    try:
        spend = budget.reserve(st, big.cost(max_call_tokens(messages)))
    except budget.BudgetSpent as e:
        return degrade("budget", e.message)
    try:
        label, tokens = await _ask_big(st, live, big, messages)
    except APIError as e:
        spend.settle(st, None)
        return degrade("upstream", e.message[:200])
    cost = big.cost(tokens)
    spend.settle(st, cost)
    trail.append({"tier": big.name, "model": big.model, "answered": True, "cost_usd": cost,
                  "latency_ms": round((time.perf_counter() - t0) * 1000, 2)})  # fmt: skip
    ans = Answer(text=label, finish_reason="stop", prompt_tokens=tokens, completion_tokens=1,
                 answered_by=big.model, cost=total_cost + cost,
                 label_probs={x: float(x == label) for x in live.labels})  # fmt: skip
    return _final(ans, trail, big, len(live.tiers) - 1, total_cost + cost, degraded=None)


def max_call_tokens(messages: list[dict[str, str]], answer_tokens: int = 8) -> int:
    """What a budget reserves for one label call: a token per character, more than common
    tokenizers make of Latin (~4 characters a token) or Chinese text (~1), so keys rarely pass
    their budget even by the calls in flight; each call is then settled at its real cost."""
    return sum(len(m["content"]) + 4 for m in messages) + answer_tokens


def _final(ans, trail, tier: Tier, index: int, cost: float, *, degraded: str | None):
    """``degraded``: why the big tier did not answer when it should have (``budget``: the
    caller's key or the gateway has spent its upstream budget; ``upstream``: it failed or timed
    out), None when it did."""
    ans.answered_by = tier.model
    ans.cost = cost
    ans.escalated = index > 0
    ans.route = {"mode": "cascade", "tier": tier.name, "degraded": degraded is not None,
                 "cascade": trail, "score": trail[min(index, len(trail) - 1)].get("confidence")}  # fmt: skip
    if degraded is not None:
        ans.route["reason"] = degraded
    return ans


async def _ask_big(st, live: LiveCascade, big: Tier,
                   messages: list[dict[str, str]]) -> tuple[str, int]:  # fmt: skip
    """The upstream's label for the label prompt ``messages`` (see :func:`_big_messages`:
    PII already redacted), with retries and backoff."""
    from zimo.serve.errors import APIError

    if st.upstream is None:
        raise APIError(503, "no upstream model is configured", code="upstream_missing")
    body = {"model": big.model, "messages": messages, "temperature": 0, "max_tokens": 8}
    last: APIError | None = None
    for attempt in range(3):
        try:
            data = await st.upstream.post("/chat/completions", body)
            msg = (data.get("choices") or [{}])[0].get("message") or {}
            label = parse_label(msg.get("content"), live.labels)
            if label is None:
                raise APIError(502, f"the upstream answered {str(msg.get('content'))[:60]!r}, "
                               "not one of the labels", code="upstream_bad_answer")  # fmt: skip
            usage = data.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
            # No `usage` from the server: about 2 characters a token over the whole prompt.
            return label, tokens or (sum(len(m["content"]) for m in messages) // 2 + 1)
        except APIError as e:
            last = e
            if e.status < 500 and e.status != 429:
                break
            await asyncio.sleep(0.2 * 2**attempt)
    assert last is not None
    raise last


def _big_messages(st, live: LiveCascade, text: str) -> list[dict[str, str]]:
    """The label prompt the big tier gets, PII redacted."""
    redactor = st.redactor or _redactor()
    return label_messages(live.labels, live.instruction, redactor(text))


def _maybe_shadow(live: LiveCascade, st, text: str, cheap_label: str, tier: Tier) -> None:
    """Send a sample of cheap answers to the big tier too, to measure live agreement."""
    if live.shadow_rate <= 0 or st.upstream is None or random.random() >= live.shadow_rate:
        return

    async def shadow() -> None:
        import zimo.serve.budget as budget

        big = live.tiers[-1]
        messages = _big_messages(st, live, text)
        try:  # the gateway's own measurement: its budget pays, not the caller's key
            spend = budget.reserve(st, big.cost(max_call_tokens(messages)), charge_key=False)
        except budget.BudgetSpent as e:
            log.info("shadow call skipped: %s", e.message)
            return
        try:
            label, tokens = await _ask_big(st, live, big, messages)
        except Exception as e:  # a shadow call never affects serving
            spend.settle(st, None)
            log.info("shadow call failed: %s", e)
            return
        spend.settle(st, big.cost(tokens))
        if st.request_log is not None:
            st.log_request(
                endpoint="shadow", model=live.project.name, answered_by=live.tiers[-1].model,
                escalated=False, route_score=None, messages=[{"role": "user", "content": text}],
                prompt=None, params={"cheap_tier": tier.name, "cheap_label": cheap_label,
                                     "agree": cheap_label == label},
                response=label, prompt_tokens=tokens, completion_tokens=1, latency_ms=None,
                cost=live.tiers[-1].cost(tokens), status=200, error=None, stream=False,
            )  # fmt: skip

    asyncio.get_running_loop().create_task(shadow())


def install_cascades(state, projects: list[str | Path]) -> list[str]:
    """Serve each project with ``route.mode: cascade`` under its name through the cascade."""
    from zimo.config import load_project

    names = []
    for p in projects:
        project = load_project(p)
        if not project.config.is_cascade():
            continue
        live = LiveCascade(project)
        if state.upstream is None:
            log.warning("the cascade of %s has no upstream: its answers will be degraded",
                        project.name)  # fmt: skip
        if live.cascade is None:
            log.warning("the cascade of %s is not calibrated: run `zimo route fit %s`",
                        project.name, project.root)  # fmt: skip
        state.add_virtual_model(project.name, make_cascade_handler(live))
        names.append(project.name)
    return names
