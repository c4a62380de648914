"""The step base classes, the runner, the config and the basic steps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zimo.data.curate_config import CurateConfig, build_steps
from zimo.data.pipeline import Filter, Formatter, run_steps
from zimo.records import make_record

BASIC = ["fix_unicode", "normalize", "length", "exact_dedup"]


def recs(*texts: str) -> list[dict]:
    return [make_record(t, source="mem", offset=i) for i, t in enumerate(texts)]


def test_basic_steps_fix_normalize_drop_and_dedup():
    data = recs("Hello  World ", "hello, world!", "", "ＡＢＣ１２３，中文！", "cafÃ©", "  \n\u3000")
    res = run_steps(data, build_steps({"steps": BASIC}))
    texts = [r["text"] for r in res.kept]
    assert texts == ["Hello World", "ABC123，中文！", "café"]
    reasons = sorted((r["reject_step"], r["reject_reason"]) for r in res.rejected)
    assert reasons == [("exact_dedup", "exact_duplicate"), ("length", "empty"), ("length", "empty")]
    dup = next(r for r in res.rejected if r["reject_step"] == "exact_dedup")
    assert dup["meta"]["duplicate_of"] == data[0]["id"]
    stats = {s["name"]: s for s in res.stats_dict()}
    assert stats["fix_unicode"]["changed"] == 1
    assert stats["normalize"]["changed"] == 3
    assert stats["length"]["dropped_by_reason"] == {"empty": 2}
    assert stats["exact_dedup"]["seen"] == 4 and stats["exact_dedup"]["kept"] == 3
    # the caller's records are not modified
    assert data[0]["text"] == "Hello  World "


def test_chinese_punctuation_and_quotes_survive():
    text = "他说：“今天（周一）下雨！”　ＡＩ模型，１２３。"
    res = run_steps(recs(text), build_steps({"steps": ["fix_unicode", "normalize"]}))
    assert res.kept[0]["text"] == "他说：“今天（周一）下雨！” AI模型，123。"


def test_ascii_fullwidth_punct_becomes_ascii_without_cjk():
    res = run_steps(recs("ＯＫ！　ｙｅｓ？"), build_steps({"steps": ["normalize"]}))
    assert res.kept[0]["text"] == "OK! yes?"


def test_length_counts_characters_not_words():
    zh = "这是一个没有空格的中文句子"  # 13 characters, one whitespace token
    cfg = {"steps": [{"step": "length", "min_chars": 10, "max_chars": 12}]}
    res = run_steps(recs(zh, "short", "这是十个汉字这是十个"), build_steps(cfg))
    assert [r["text"] for r in res.kept] == ["这是十个汉字这是十个"]
    assert sorted(r["reject_reason"] for r in res.rejected) == ["too_long", "too_short"]


def test_chat_records_formatted_per_message_and_deduped():
    a = make_record(
        None, source="c", offset=0, messages=[{"role": "user", "content": " hi\u3000there "}]
    )
    b = make_record(None, source="c", offset=1, messages=[{"role": "user", "content": "Hi there"}])
    c = make_record(
        None, source="c", offset=2, messages=[{"role": "assistant", "content": "hi there"}]
    )
    res = run_steps([a, b, c], build_steps({"steps": BASIC}))
    assert [r["messages"][0]["content"] for r in res.kept] == ["hi there", "hi there"]
    assert res.rejected[0]["id"] == b["id"]


def test_text_plus_label_key_keeps_conflicting_labels():
    a = make_record("win a prize", source="s", offset=0, label="spam")
    b = make_record("win a prize", source="s", offset=1, label="ham")
    res = run_steps([a, b], build_steps({"steps": [{"step": "exact_dedup", "key": "text+label"}]}))
    assert len(res.kept) == 2


def test_config_refuses_unknown_keys_and_steps():
    with pytest.raises(ValidationError, match="min_char"):
        CurateConfig.model_validate({"steps": [{"step": "length", "min_char": 3}]})
    with pytest.raises(ValidationError, match="unknown curate step"):
        CurateConfig.model_validate({"steps": ["lenght"]})
    with pytest.raises(ValidationError):
        CurateConfig.model_validate({"stepz": []})
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        CurateConfig.model_validate({"steps": [{"step": "boilerplate", "extra_patterns": ["(x"]}]})
    assert [s.step for s in CurateConfig().steps][:2] == ["fix_unicode", "normalize"]


def test_disabled_step_is_skipped():
    steps = build_steps({"steps": ["normalize", {"step": "length", "enabled": False}]})
    assert [s.name for s in steps] == ["normalize"]


def test_custom_filter_and_formatter_count():
    class Upper(Formatter):
        name = "upper"

        def format(self, text: str) -> str:
            return text.upper()

    class NoDigits(Filter):
        name = "no_digits"

        def filter(self, rec):
            if any(c.isdigit() for c in rec["text"]):
                return False, "has_digit"
            return True

    res = run_steps(recs("abc", "a1", "DEF"), [Upper(), NoDigits()])
    assert [r["text"] for r in res.kept] == ["ABC", "DEF"]
    up, nd = res.stats
    assert (up.seen, up.changed) == (3, 2)
    assert nd.dropped == {"has_digit": 1}
    assert nd.examples["has_digit"][0]["text"] == "A1"
