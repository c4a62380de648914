"""Ingest of labelled tables: bad rows quarantined with reasons, unusable files one-line errors."""

from __future__ import annotations

import pytest

from zimo.data.table import read_table
from zimo.errors import DataError, ZimoError


def test_tsv_bad_rows_are_quarantined(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_bytes(
        b"Label\tSMS\nham\thello there\nspam\tWIN a prize now\nno tab here\n"
        b"fraud\tsend money\nham\ta\ttab\tinside\n" + b"ham\t\xff\xfe broken bytes\n"
    )
    recs, rejects, info = read_table(
        f, text_field="SMS", label_field="Label", labels=["ham", "spam"]
    )
    assert [r["label"] for r in recs] == ["ham", "spam", "ham"]
    assert recs[2]["text"] == "a\ttab\tinside"  # extra tabs belong to the text column
    reasons = sorted(r["reject_reason"] for r in rejects)
    assert any("no tab" in x for x in reasons)
    assert any("'fraud' is not in the declared labels" in x for x in reasons)
    assert any("invalid UTF-8" in x for x in reasons)
    assert info["rejected"] == 3
    assert all(r["meta"]["origin"] == "human" for r in recs)


def test_gb18030_file_is_decoded(tmp_path):
    f = tmp_path / "zh.tsv"
    rows = "Label\tSMS\n" + "".join(f"ham\t今天下午三点开会，第{i}号会议室\n" for i in range(20))
    f.write_bytes(rows.encode("gb18030"))
    recs, rejects, info = read_table(
        f, text_field="SMS", label_field="Label", labels=["ham", "spam"]
    )
    assert len(recs) == 20 and not rejects
    assert recs[0]["text"].startswith("今天下午")


@pytest.mark.parametrize(
    "content, expect",
    [(b"", "is empty"), (b"\x00\x01\x02binary\x00" * 10, "looks binary")],
)
def test_unusable_files(tmp_path, content, expect):
    f = tmp_path / "d.tsv"
    f.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_table(f, text_field="SMS", label_field="Label", labels=["ham", "spam"])
    assert expect in e.value.one_line()


def test_missing_file(tmp_path):
    with pytest.raises(ZimoError) as e:
        read_table(tmp_path / "x.tsv", labels=["a", "b"])
    assert e.value.exit_code == 2
    assert "does not exist" in e.value.one_line()


def test_jsonl_and_instruction_fields(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(
        '{"instruction": "Translate", "input": "hi", "output": "你好"}\n{bad json\n[1,2]\n',
        encoding="utf-8",
    )
    recs, rejects, _ = read_table(
        f,
        instruction_field="instruction",
        input_field="input",
        output_field="output",
        label_field=None,
        origin="teacher",
        generator="gpt-4",
    )
    assert recs[0]["messages"][1]["content"] == "你好"
    assert recs[0]["meta"]["origin"] == "teacher" and recs[0]["meta"]["generator"] == "gpt-4"
    assert len(rejects) == 2
