"""Judge-based pairwise win rate against a real local OpenAI-compatible server."""

from __future__ import annotations

import re

import pytest

from fake_openai import FakeOpenAI, last_user_text
from zimo.errors import ZimoError
from zimo.eval.judge import (
    PairwiseItem,
    build_messages,
    combine_orders,
    detect_language,
    judge_pairwise,
    make_judge,
    parse_verdict,
)
from zimo.synth.config import TeacherConfig
from zimo.synth.teacher import Teacher

RETRY_MARKERS = ("Reply with exactly one line", "请只回复一行")


def _answers(body: dict) -> tuple[str, str]:
    """Answer A and B as the judge prompt shows them (English or Chinese template)."""
    text = [m["content"] for m in body["messages"] if m["role"] == "user"][0]
    m = re.search(
        r"(?:\[Answer A\]|【回答 A】)\n(.*?)\n\n(?:\[Answer B\]|【回答 B】)\n(.*?)\n\n", text, re.S
    )
    assert m, text
    return m.group(1), m.group(2)


def content_judge(body: dict) -> str:
    """Prefers the answer that contains GOOD; refuses when the request says REFUSE."""
    first_user = [m["content"] for m in body["messages"] if m["role"] == "user"][0]
    if "REFUSE" in first_user:
        return "I'm sorry, I cannot evaluate this."
    a, b = _answers(body)
    zh = "【回答 A】" in first_user
    if ("GOOD" in a) == ("GOOD" in b):
        return "两者相当。\n结论：平局" if zh else "Both are similar.\nVERDICT: TIE"
    winner = "A" if "GOOD" in a else "B"
    return f"理由略。\n结论：{winner}" if zh else f"Answer {winner} is correct.\nVERDICT: {winner}"


def _teacher(srv: FakeOpenAI, tmp_path, **kw) -> Teacher:
    cfg = TeacherConfig(
        base_url=srv.base_url,
        model=srv.models[0],
        api_key_env=None,
        max_retries=1,
        backoff_base=0.01,
        backoff_max=0.05,
        **kw,
    )
    return Teacher(
        cfg, cache_path=tmp_path / "judge_cache.sqlite", progress=False, api_key=srv.api_key
    )


def _items(n_win: int, n_loss: int, n_tie: int, zh: bool = False) -> list[PairwiseItem]:
    q = "把这句话翻译成英文：你好" if zh else "Translate 'bonjour' to English."
    items = []
    for i in range(n_win):
        items.append(PairwiseItem(f"w{i}", q, f"GOOD answer {i}", f"meh answer {i}", gold="hello"))
    for i in range(n_loss):
        items.append(PairwiseItem(f"l{i}", q, f"bad answer {i}", f"GOOD reply {i}", gold="hello"))
    for i in range(n_tie):
        items.append(PairwiseItem(f"t{i}", q, f"meh {i}", f"so-so {i}", gold="hello"))
    return items


def test_parse_verdict_variants():
    assert parse_verdict("Reasoning...\nVERDICT: A") == "A"
    assert parse_verdict("verdict: b.") == "B"
    assert parse_verdict("**Verdict:** Tie") == "TIE"
    assert parse_verdict("结论：A") == "A"
    assert parse_verdict("结论: 平局") == "TIE"
    assert parse_verdict("My final verdict is [[B]]") == "B"
    assert parse_verdict("[[C]]") == "TIE"
    assert parse_verdict("B") == "B"
    # the last marker wins (judges restate the options first)
    assert parse_verdict("Options are VERDICT: A or VERDICT: B ... VERDICT: B") == "B"
    for bad in (None, "", "I cannot help with that.", "Answer A is nice", "VERDICT: maybe"):
        assert parse_verdict(bad) is None, bad


def test_combine_orders_position_swap():
    assert combine_orders("A", "B") == "win"  # candidate first wins, candidate second wins
    assert combine_orders("B", "A") == "loss"
    assert combine_orders("TIE", "TIE") == "tie"
    assert combine_orders("A", "A") == "tie"  # position bias: inconsistent → tie
    assert combine_orders("A", "TIE") == "tie"
    assert combine_orders(None, "B") == "failure"


def test_language_and_prompt_versions():
    assert detect_language("请把下面的句子翻译成英文") == "zh"
    assert detect_language("Summarise this paragraph") == "en"
    item = PairwiseItem("x", "写一首诗", "a", "b", gold="g")
    zh = build_messages(item, "甲", "乙")
    assert "【回答 A】\n甲" in zh[1]["content"] and "【参考答案" in zh[1]["content"]
    en = build_messages(item, "x", "y", language="en", with_gold=False)
    assert "[Answer A]\nx" in en[1]["content"] and "Reference answer" not in en[1]["content"]
    with pytest.raises(ZimoError):
        build_messages(item, "a", "b", prompt_version="pairwise-v999")


def test_pairwise_win_rate_with_swaps(tmp_path):
    with FakeOpenAI(responder=content_judge) as srv:
        res = judge_pairwise(
            _items(6, 2, 2), _teacher(srv, tmp_path), candidate="finetuned", reference="base"
        )
        calls = srv.count("/v1/chat/completions")
    assert (res["wins"], res["losses"], res["ties"], res["failures"]) == (6, 2, 2, 0)
    assert res["win_rate"]["value"] == pytest.approx((6 + 0.5 * 2) / 10)
    assert res["win_rate"]["low"] <= res["win_rate"]["value"] <= res["win_rate"]["high"]
    assert calls == 20  # both orders for every item
    # every item was shown once with the candidate first and once second
    assert all(r["verdicts"] in (["A", "B"], ["B", "A"], ["TIE", "TIE"]) for r in res["items"])

    # a rerun is answered from the cache: no new calls
    with FakeOpenAI(responder=content_judge) as srv2:
        t2 = _teacher(srv2, tmp_path)
        res2 = judge_pairwise(_items(6, 2, 2), t2, candidate="finetuned", reference="base")
        assert srv2.count("/v1/chat/completions") == 0
    assert res2["win_rate"] == res["win_rate"]


def test_position_biased_judge_gives_ties(tmp_path):
    with FakeOpenAI(responder=lambda body: "First one is better.\nVERDICT: A") as srv:
        res = judge_pairwise(_items(3, 3, 0), _teacher(srv, tmp_path))
    assert res["ties"] == 6 and res["wins"] == res["losses"] == 0
    assert res["inconsistent_orders"] == 6
    assert res["win_rate"]["value"] == pytest.approx(0.5)


def test_chinese_prompt_and_verdicts(tmp_path):
    with FakeOpenAI(responder=content_judge) as srv:
        res = judge_pairwise(_items(3, 1, 1, zh=True), _teacher(srv, tmp_path))
        sent = [last_user_text(r["body"]) for r in srv.requests]
    assert all("【回答 A】" in s for s in sent)
    assert (res["wins"], res["losses"], res["ties"]) == (3, 1, 1)


def test_malformed_verdicts_retried_then_counted(tmp_path):
    def flaky(body: dict) -> str:
        last = last_user_text(body)
        if any(m in last for m in RETRY_MARKERS):
            # the follow-up turn carries the judge's own earlier reply
            assert body["messages"][-2]["role"] == "assistant"
            if "REFUSE" in body["messages"][1]["content"]:
                return "I still cannot do that."
            return content_judge({"messages": body["messages"][:2]}).splitlines()[-1]
        if "REFUSE" in last:
            return "I'm sorry, I cannot evaluate this."
        return "Both answers have merits."  # no verdict: malformed

    items = _items(2, 1, 0)
    items.append(PairwiseItem("r0", "REFUSE this one", "GOOD a", "b", gold="g"))
    with FakeOpenAI(responder=flaky) as srv:
        res = judge_pairwise(items, _teacher(srv, tmp_path), max_attempts=3)
        calls = srv.count("/v1/chat/completions")
    assert (res["wins"], res["losses"], res["failures"]) == (2, 1, 1)
    # 3 items × 2 orders × 2 attempts + the refused item's 2 orders × 3 attempts
    assert calls == 3 * 2 * 2 + 2 * 3
    failed = [r for r in res["items"] if r["outcome"] == "failure"][0]
    assert failed["id"] == "r0" and failed["attempts"] == [3, 3]
    assert res["win_rate"]["n"] == 3  # failures are counted, not in the rate


def test_no_answer_is_decided_without_judge(tmp_path):
    items = [
        PairwiseItem("a", "q", None, "GOOD"),
        PairwiseItem("b", "q", "GOOD", ""),
        PairwiseItem("c", "q", None, None),
        PairwiseItem("d", "q", "GOOD x", "y"),
    ]
    with FakeOpenAI(responder=content_judge) as srv:
        res = judge_pairwise(items, _teacher(srv, tmp_path))
        assert srv.count("/v1/chat/completions") == 2
    outcomes = {r["id"]: r["outcome"] for r in res["items"]}
    assert outcomes == {"a": "loss", "b": "win", "c": "tie", "d": "win"}


def test_judge_that_never_answers_is_an_error(tmp_path):
    with FakeOpenAI(responder=lambda body: "no idea") as srv:
        with pytest.raises(ZimoError, match="no usable verdict"):
            judge_pairwise(_items(2, 0, 0), _teacher(srv, tmp_path), max_attempts=2)
    with pytest.raises(ZimoError):
        judge_pairwise([], None)


def test_make_judge_from_teacher_section(tmp_path):
    with FakeOpenAI(responder=content_judge, api_key="") as srv:
        section = {"base_url": srv.base_url, "model": srv.models[0], "api_key_env": None}
        judge = make_judge(section, cache_path=tmp_path / "c.sqlite", progress=False)
        res = judge_pairwise(_items(1, 0, 0), judge)
    assert res["wins"] == 1 and res["judge_model"] == srv.models[0]
