"""`zimo guard score` on JSONL and Parquet: every field kept, guard fields added, reports."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from zimo.errors import DataError
from zimo.guard import GuardConfig
from zimo.guard.cli import register
from zimo.guard.score_file import record_text, score_file

ROWS = [
    {
        "id": "a",
        "text": "脂肪肝患者和正常人一样每天都要吃水果，只是量和品种稍微要调整，一般选含糖量比较低的水果。",
        "label": 0,
        "extra": {"k": 1},
    },
    {
        "id": "b",
        "text": "如果您的宝宝反复感冒咳嗽，我建议您尽快带宝宝去看医生。扁桃体变红可能是感染的症状。",
        "label": 1,
        "extra": {"k": 2},
    },
    {"id": "c", "text": "好的", "label": 0, "extra": None},
    {
        "id": "d",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "您好！请问有什么可以帮您的吗？"},
        ],
        "label": 1,
        "extra": {"k": 3},
    },
]
# A fixed threshold keeps these tests independent of the shipped calibration.
CFG = GuardConfig(model="gecko-zh", score="logrank", threshold=-2.0, min_tokens=8, bf16="off")


def test_report_and_scoring_do_not_import_each_other():
    import ast
    import inspect

    import zimo.guard.report as report

    tree = ast.parse(inspect.getsource(report))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert "zimo.guard.score_file" not in imported
    assert "zimo.guard.records" in imported


def test_record_text_prefers_text_then_assistant_turns():
    assert record_text(ROWS[0]) == ROWS[0]["text"]
    assert record_text(ROWS[3]) == "您好！请问有什么可以帮您的吗？"
    assert record_text({"x": 1}) == ""


def test_jsonl_rows_keep_every_field(tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in ROWS]
    src.write_text("\n".join(lines[:2] + ["{not json"] + lines[2:]) + "\n", encoding="utf-8")
    s = score_file(src, tmp_path / "out", CFG, show_progress=False)
    out = [json.loads(x) for x in (tmp_path / "out" / "in.guard.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["a", "b", "c", "d"]
    for r, orig in zip(out, ROWS, strict=True):
        assert {k: r[k] for k in orig} == orig
        assert isinstance(r["guard_score"], float) and isinstance(r["guard_flag"], bool)
    assert out[2]["guard_trusted"] is False and out[2]["guard_flag"] is False  # too short
    assert s["skipped_lines"][0]["line"] == 3
    rep = json.loads((tmp_path / "out" / "guard_report.json").read_text())
    assert rep["n"] == 4 and set(rep["by_origin"]) == {"label=0", "label=1"}
    html = (tmp_path / "out" / "guard_report.html").read_text()
    assert "data:image/png;base64" in html and "by origin" in html.lower()


def test_parquet_keeps_column_types_and_cli_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIMO_BF16", "0")  # skip the bf16 timing probe in a test
    t = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "messages"} for r in ROWS[:3]])
    pq.write_table(t, tmp_path / "d.parquet")
    app = typer.Typer()
    app.command()(lambda: None)  # a root command so `guard` is a subcommand group
    register(app)
    res = CliRunner().invoke(
        app,
        [
            "guard",
            "score",
            str(tmp_path / "d.parquet"),
            "-o",
            str(tmp_path / "o"),
            "--score",
            "logrank",
            "--threshold",
            "-2.0",
            "--model",
            "gecko-zh",
        ],
    )
    assert res.exit_code == 0, res.output
    back = pq.read_table(tmp_path / "o" / "d.guard.parquet")
    assert back.schema.field("extra").type == t.schema.field("extra").type
    assert back.column_names == t.column_names + [
        "guard_score",
        "guard_flag",
        "guard_trusted",
        "guard_model",
    ]
    assert "flagged" in res.output


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="no records"):
        score_file(tmp_path / "e.jsonl", tmp_path / "o", CFG)
    (tmp_path / "n.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(DataError, match="`text` field"):
        score_file(tmp_path / "n.jsonl", tmp_path / "o", CFG)
    with pytest.raises(DataError, match="unsupported"):
        (tmp_path / "x.csv").write_text("a\n")
        score_file(tmp_path / "x.csv", tmp_path / "o", CFG)
    with pytest.raises(DataError, match="curated"):
        score_file(tmp_path, tmp_path / "o", CFG)


def test_guard_records_drops_flagged_with_a_reason():
    from zimo.guard.stage import guard_records
    from zimo.records import make_record

    recs = [make_record(r["text"], source="x", offset=i) for i, r in enumerate(ROWS[:3])]
    cfg = CFG.model_copy(update={"action": "drop", "threshold": -100.0})
    kept, rejected, summary = guard_records(recs, cfg, show_progress=False)
    assert len(rejected) == 2 and [r["id"] for r in kept] == [recs[2]["id"]]  # short: kept
    assert rejected[0]["reject_step"] == "guard" and "guard_score" in rejected[0]["reject_reason"]
    assert kept[0]["meta"]["guard_flag"] is False and kept[0]["meta"]["origin"] == "human"
    assert summary["dropped"] == 2


def test_english_text_is_scored_but_said_to_be_unjudged(tmp_path, monkeypatch):
    """Asked for a score that gecko's (English) calibration has no threshold for (`combined`:
    nothing was fitted on English machine text), its records get a score, never a flag, and
    the command says so in one line instead of reporting them as checked and clean."""
    monkeypatch.setenv("ZIMO_BF16", "0")
    rows = [
        {"text": "The committee met on Tuesday to review the budget for the coming year."},
        {"text": "Photosynthesis converts light energy into chemical energy stored in glucose."},
    ]
    src = tmp_path / "en.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    app = typer.Typer()
    app.command()(lambda: None)
    register(app)
    res = CliRunner().invoke(
        app, ["guard", "score", str(src), "-o", str(tmp_path / "o"), "--score", "combined"]
    )
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in (tmp_path / "o" / "en.guard.jsonl").read_text().splitlines()]
    assert all(r["guard_model"] == "gecko" and not r["guard_flag"] for r in out)
    assert all(not r["guard_trusted"] and r["guard_score"] is not None for r in out)
    assert "not judged: 2 records scored by gecko" in " ".join(res.output.split())
