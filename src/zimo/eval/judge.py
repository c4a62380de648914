"""Judge-based pairwise comparison: how often a system's answer beats a reference system's.

Any OpenAI-compatible chat model can judge. For every test item the judge sees the request,
optionally the gold answer, and the two systems' answers, and names the better one or a tie.
Because LLM judges favour whichever answer comes first (position bias; Zheng et al. 2023,
"Judging LLM-as-a-judge"), every item is judged twice with the answers swapped, and a verdict
counts only when both orders agree; disagreeing orders count as a tie.

Verdict parsing tolerates chatty output (the last ``VERDICT: X`` / ``结论：X`` / ``[[X]]`` wins).
A reply without a verdict, a refusal or an API error is retried with a short follow-up turn that
asks for the verdict line only; after ``max_attempts`` the item is a *judge failure*: counted
and reported, not silently dropped, and excluded from the win rate.

Prompts are versioned (``PROMPTS``): the version is part of every cache key and of the report,
so changing a prompt never reuses old verdicts and two reports say which prompt they used.
Calls go through the synthesis stage's :class:`~zimo.synth.teacher.Teacher` (any
OpenAI-compatible endpoint): cached on disk by request hash like synth calls (a rerun costs
nothing), retried with backoff on 429/5xx, PII-redacted before leaving the machine unless the
teacher is ``local``, with usage and cost counted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ZimoError
from zimo.eval.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_mean

log = logging.getLogger(__name__)

DEFAULT_PROMPT_VERSION = "pairwise-v1"

_EN_SYSTEM = (
    "You are an impartial judge. You compare two AI assistant answers to the same user request "
    "and decide which one is better."
)
_EN_USER = """[User request]
{question}
{gold_block}
[Answer A]
{answer_a}

[Answer B]
{answer_b}

Compare Answer A and Answer B. Judge correctness first, then helpfulness, relevance to the
request, completeness and fluency in the language of the request. The order in which the answers
appear and their length must not influence you. Explain your reasoning in at most three
sentences, then end with exactly one line, one of:
VERDICT: A
VERDICT: B
VERDICT: TIE"""
_EN_GOLD = (
    "\n[Reference answer, for your information; it may not be the only good answer]\n{gold}\n"
)
_EN_RETRY = (
    "Your reply did not end with a verdict line. Reply with exactly one line and nothing else: "
    "VERDICT: A, VERDICT: B or VERDICT: TIE."
)

_ZH_SYSTEM = "你是一位公正的评审。你要比较两个 AI 助手对同一用户请求的回答，并判断哪一个更好。"
_ZH_USER = """【用户请求】
{question}
{gold_block}
【回答 A】
{answer_a}

【回答 B】
{answer_b}

请比较回答 A 和回答 B。首先看正确性，其次看是否有帮助、是否切题、是否完整，以及语言是否通顺
（使用请求所用的语言）。回答出现的先后顺序和长短不应影响你的判断。请用不超过三句话说明理由，
最后单独一行给出结论，只能是以下之一：
结论：A
结论：B
结论：平局"""
_ZH_GOLD = "\n【参考答案（仅供参考，未必是唯一的好答案）】\n{gold}\n"
_ZH_RETRY = (
    "你的回复没有以结论行结尾。请只回复一行，不要有其他内容：结论：A、结论：B 或 结论：平局。"
)


@dataclass(frozen=True)
class JudgePrompt:
    """One language's pairwise prompt: system, user template, gold-answer block, retry turn."""

    system: str
    user: str
    gold: str
    retry: str


PROMPTS: dict[str, dict[str, JudgePrompt]] = {
    "pairwise-v1": {
        "en": JudgePrompt(_EN_SYSTEM, _EN_USER, _EN_GOLD, _EN_RETRY),
        "zh": JudgePrompt(_ZH_SYSTEM, _ZH_USER, _ZH_GOLD, _ZH_RETRY),
    }
}

_VERDICT = re.compile(
    r"(?:verdict|结论|判定|裁决)\s*[:：]?\s*[\[【(（\"'`*]*\s*(?:answer|回答|答案)?\s*"
    r"(a|b|tie|平局|平手)(?![a-z])",
    re.I,
)
_BRACKETS = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.I)  # MT-bench style [[A]] / [[C]] (tie)
_BARE = re.compile(r"^[\s\"'`*【\[(（]*(a|b|tie|平局|平手)[\s\"'`*】\])）.。]*$", re.I)


def parse_verdict(text: str | None) -> str | None:
    """``"A"``, ``"B"``, ``"TIE"`` or ``None`` (no usable verdict) from a judge's reply.

    The *last* verdict marker counts, because judges often restate the options before deciding.
    """
    if not text:
        return None
    found = _VERDICT.findall(text) or _BRACKETS.findall(text) or _BARE.findall(text.strip())
    if not found:
        return None
    v = found[-1].strip().upper()
    if v in ("A", "B"):
        return v
    return "TIE"  # tie / 平局 / 平手 / C


_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """``"zh"`` when at least 20% of the non-space characters are Chinese, else ``"en"``."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return "en"
    share = sum(1 for c in chars if _CJK_RE.match(c)) / len(chars)
    return "zh" if share >= 0.2 else "en"


# ---------------------------------------------------------------------------------------------
# pairwise judging
# ---------------------------------------------------------------------------------------------

OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


@dataclass
class PairwiseItem:
    """One test item: the request, the two systems' answers (None = no answer), the gold one."""

    id: str
    question: str
    candidate: str | None
    reference: str | None
    gold: str | None = None


@dataclass
class OrderVerdict:
    """The verdict for one order of one item, and how it was reached."""

    messages: list[dict[str, str]]
    verdict: str | None = None  # "A" / "B" / "TIE"; None = no usable verdict (yet)
    attempts: int = 0
    replies: list[str] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


def build_messages(
    item: PairwiseItem,
    answer_a: str,
    answer_b: str,
    *,
    prompt_version: str = DEFAULT_PROMPT_VERSION,
    language: str = "auto",
    with_gold: bool = True,
) -> list[dict[str, str]]:
    """The judge's chat messages for one order of one item."""
    if prompt_version not in PROMPTS:
        raise ZimoError(
            f"unknown judge prompt version {prompt_version!r}",
            f"use one of {sorted(PROMPTS)}",
        )
    lang = detect_language(item.question) if language == "auto" else language
    prompt = PROMPTS[prompt_version].get(lang) or PROMPTS[prompt_version]["en"]
    gold_block = prompt.gold.format(gold=item.gold) if with_gold and item.gold else ""
    user = prompt.user.format(
        question=item.question, gold_block=gold_block, answer_a=answer_a, answer_b=answer_b
    )
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


def _retry_turn(messages: list[dict[str, str]], reply: str, language: str, version: str) -> list:
    lang = "zh" if "【用户请求】" in messages[-1]["content"] else "en"
    if language != "auto":
        lang = language
    retry = (PROMPTS[version].get(lang) or PROMPTS[version]["en"]).retry
    return messages + [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": retry},
    ]


def combine_orders(first: str | None, second: str | None) -> str:
    """Outcome for the candidate from (candidate-as-A, candidate-as-B) verdicts.

    Both orders must agree; any disagreement is a tie; a missing verdict is a failure.
    """
    if first is None or second is None:
        return "failure"
    a = {"A": "win", "B": "loss", "TIE": "tie"}[first]
    b = {"A": "loss", "B": "win", "TIE": "tie"}[second]
    return a if a == b else "tie"


def collect_verdicts(
    teacher: Any,
    orders: list[OrderVerdict],
    *,
    max_attempts: int = 3,
    language: str = "auto",
    prompt_version: str = DEFAULT_PROMPT_VERSION,
    max_tokens: int = 512,
) -> None:
    """Fill in ``orders`` in rounds: every open verdict is asked in one batch per round.

    A malformed reply is followed up in the same conversation (the judge sees its reply and a
    reminder of the format), so a deterministic judge is not just asked the same thing again;
    an API error re-sends the original messages. After ``max_attempts`` an order stays
    ``None``: a judge failure.
    """
    from zimo.synth.teacher import ChatRequest

    convos = {i: o.messages for i, o in enumerate(orders)}
    for _ in range(max(1, max_attempts)):
        open_ids = [i for i in convos if orders[i].verdict is None]
        if not open_ids:
            return
        reqs = [
            ChatRequest(
                messages=convos[i],
                template=f"judge.{prompt_version}",
                temperature=0.0,
                max_tokens=max_tokens,
            )
            for i in open_ids
        ]
        results = teacher.run(reqs)
        for i, res in zip(open_ids, results, strict=True):
            o = orders[i]
            o.attempts += 1
            o.prompt_tokens += res.prompt_tokens
            o.completion_tokens += res.completion_tokens
            o.cost += res.cost
            if not res.ok:
                o.error = res.error or "no reply"
                if res.error == "budget":
                    o.attempts = max_attempts  # no more calls once the budget is spent
                continue
            o.replies.append(res.content)
            o.verdict = parse_verdict(res.content)
            if o.verdict is None:
                o.error = "no verdict in the judge's reply"
                convos[i] = _retry_turn(o.messages, res.content, language, prompt_version)
            else:
                o.error = None
        convos = {i: c for i, c in convos.items() if orders[i].attempts < max_attempts}


def judge_pairwise(
    items: Sequence[PairwiseItem],
    teacher: Any,
    *,
    candidate: str = "candidate",
    reference: str = "reference",
    prompt_version: str = DEFAULT_PROMPT_VERSION,
    language: str = "auto",
    with_gold: bool = True,
    max_attempts: int = 3,
    max_tokens: int = 512,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Win rate of ``candidate`` against ``reference`` on ``items``, judged in both orders.

    ``teacher`` is a :class:`zimo.synth.teacher.Teacher` (or anything with the same
    ``run(list[ChatRequest]) -> list[TeacherResult]``). Win rate = (wins + ½ ties) / judged
    items, with a percentile bootstrap CI. Items where a system gave no answer are decided
    without the judge (no answer loses to an answer; two empty answers tie). Judge failures
    (no verdict after ``max_attempts`` in either order) are counted under ``failures`` and
    left out of the rate.
    """
    if not items:
        raise ZimoError("no test items to judge", "check the test split and max_test_rows")
    if prompt_version not in PROMPTS:
        raise ZimoError(
            f"unknown judge prompt version {prompt_version!r}", f"use one of {sorted(PROMPTS)}"
        )
    rows: list[dict[str, Any]] = []
    orders: list[OrderVerdict] = []
    pairs: dict[int, tuple[int, int]] = {}
    kw = dict(prompt_version=prompt_version, language=language, with_gold=with_gold)
    for n, item in enumerate(items):
        cand = (item.candidate or "").strip()
        ref = (item.reference or "").strip()
        row: dict[str, Any] = {"id": item.id}
        rows.append(row)
        if not cand or not ref:
            row["outcome"] = "tie" if not cand and not ref else ("loss" if not cand else "win")
            row["judged"] = False
            who = "both systems" if not cand and not ref else (candidate if not cand else reference)
            row["note"] = f"no answer from {who}"
            continue
        orders.append(OrderVerdict(build_messages(item, cand, ref, **kw)))
        orders.append(OrderVerdict(build_messages(item, ref, cand, **kw)))
        pairs[n] = (len(orders) - 2, len(orders) - 1)

    model = getattr(getattr(teacher, "config", None), "model", None)
    if orders:
        collect = partial(collect_verdicts, teacher, orders, max_attempts=max_attempts,
                          language=language, prompt_version=prompt_version,
                          max_tokens=max_tokens)  # fmt: skip
        progress = getattr(teacher, "progress", None)
        if callable(progress):
            with progress(None, f"judging {candidate} vs {reference}"):
                collect()
        else:
            collect()
    for n, (i, j) in pairs.items():
        v1, v2 = orders[i], orders[j]
        rows[n].update(
            outcome=combine_orders(v1.verdict, v2.verdict),
            judged=True,
            verdicts=[v1.verdict, v2.verdict],
            attempts=[v1.attempts, v2.attempts],
            errors=[e for e in (v1.error, v2.error) if e],
            replies=[
                v1.replies[-1] if v1.replies else None,
                v2.replies[-1] if v2.replies else None,
            ],
        )

    return _summary(rows, orders, candidate, reference, model, prompt_version,
                    dict(n_boot=n_boot, seed=seed, confidence=confidence))  # fmt: skip


def _summary(rows: list[dict[str, Any]], orders: list[OrderVerdict], candidate: str,
             reference: str, model: str | None, prompt_version: str,
             boot: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Win rate with its bootstrap CI, counts, and the judge's usage."""
    counts = {k: sum(1 for r in rows if r["outcome"] == k) for k in ("win", "tie", "loss")}
    failures = [r for r in rows if r["outcome"] == "failure"]
    if failures and len(failures) == len(rows):
        errs = sorted({e for r in failures for e in r.get("errors", [])})
        raise ZimoError(
            f"the judge ({model}) gave no usable verdict for any of {len(rows)} items "
            f"({errs[0] if errs else 'no verdict'})",
            "check the judge's base_url/model and that it follows the verdict format",
        )
    scores = np.array([OUTCOME_SCORE[r["outcome"]] for r in rows if r["outcome"] != "failure"])
    inconsistent = sum(
        1 for r in rows if r.get("judged") and r["outcome"] == "tie" and "TIE" not in r["verdicts"]
    )
    win_rate = bootstrap_mean(
        scores,
        **boot,
        method=f"(wins + ½ ties) / judged items; each item judged twice by {model or 'the judge'} "
        f"with the answers swapped, disagreeing orders = tie, judge failures left out; prompt "
        f"{prompt_version}; percentile bootstrap CI",
    )
    return {
        "candidate": candidate,
        "reference": reference,
        "judge_model": model,
        "prompt_version": prompt_version,
        "n": len(rows),
        "win_rate": win_rate.to_dict(),
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "failures": len(failures),
        "inconsistent_orders": inconsistent,
        "judge_usage": {
            "prompt_tokens": sum(o.prompt_tokens for o in orders),
            "completion_tokens": sum(o.completion_tokens for o in orders),
            "cost": round(sum(o.cost for o in orders), 6),
            "calls": sum(o.attempts for o in orders),
        },
        "items": rows,
    }


def make_judge(
    teacher_section: dict[str, Any] | Any,
    *,
    cache_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> Any:
    """A :class:`~zimo.synth.teacher.Teacher` for judging, from a ``teacher:``-style section.

    ``cache_path`` should be the project's teacher cache, so judge calls are cached like synth
    calls (one SQLite file, keyed by the exact request).
    """
    from zimo.synth.config import TeacherConfig
    from zimo.synth.teacher import Teacher

    cfg = (
        teacher_section
        if isinstance(teacher_section, TeacherConfig)
        else TeacherConfig.model_validate(dict(teacher_section or {}))
    )
    return Teacher(cfg, cache_path=Path(cache_path) if cache_path else None, progress=progress)
