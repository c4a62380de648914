"""Readers: every supported format, and bad input quarantined with a reason."""

from __future__ import annotations

import gzip
import io
import json
import time
import tracemalloc
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate_fixtures import minimal_pdf, news_page_en, news_page_zh
from zimo.data.curate_config import ReadSpec
from zimo.data.readers import read_file, read_path


def read_one(path: Path, **spec) -> list[dict]:
    return list(read_file(path, ReadSpec(**spec), path.parent))


def ok(recs: list[dict]) -> list[dict]:
    return [r for r in recs if "reject_step" not in r]


def bad(recs: list[dict]) -> list[str]:
    return [r["reject_reason"] for r in recs if "reject_step" in r]


# --- formats ---------------------------------------------------------------------------------


def test_txt_and_md_one_record_per_file_with_provenance(tmp_path):
    (tmp_path / "a.txt").write_text("第一段。\n\n第二段。\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nSome *markdown* text.", encoding="utf-8")
    recs = list(read_path(tmp_path))
    assert [r["text"] for r in recs] == ["第一段。\n\n第二段。", "# Title\n\nSome *markdown* text."]
    assert [r["meta"]["source"] for r in recs] == ["a.txt", "b.md"]
    assert all(r["meta"]["origin"] == "human" and r["meta"]["offset"] == 0 for r in recs)
    assert recs[0]["id"] != recs[1]["id"]


def test_long_text_is_chunked_at_blank_lines(tmp_path):
    para = "x" * 999
    (tmp_path / "long.txt").write_text("\n\n".join([para] * 30), encoding="utf-8")
    recs = read_one(tmp_path / "long.txt", max_record_chars=5000)
    assert len(recs) >= 6 and not bad(recs)
    assert all(len(r["text"]) <= 5000 for r in recs)
    assert sum(r["text"].count(para) for r in recs) == 30  # nothing lost
    assert recs[1]["meta"]["offset"] > 0


def test_gbk_and_gb18030_files_are_detected(tmp_path):
    text = "这是一份用GBK编码保存的中文文档，记录了公司第三季度的销售情况和客户反馈意见。" * 3
    (tmp_path / "gbk.txt").write_bytes(text.encode("gbk"))
    (tmp_path / "gb18030.csv").write_bytes(f"text,label\n{text},正面\n".encode("gb18030"))
    recs = list(read_path(tmp_path))
    assert [r["text"] for r in recs] == [text, text]
    assert recs[0]["meta"]["encoding"] == "gb18030"
    assert recs[0]["label"] == "正面"


def test_html_main_text_is_extracted(tmp_path):
    (tmp_path / "zh.html").write_text(news_page_zh(), encoding="utf-8")
    (tmp_path / "en.htm").write_text(news_page_en(), encoding="utf-8")
    en, zh = ok(list(read_path(tmp_path)))
    assert "前三季度全国规模以上工业增加值" in zh["text"]
    assert "首页 | 新闻" not in zh["text"]  # navigation bar is not main text
    assert "Residents who spoke" in en["text"]
    assert zh["meta"]["format"] == "html" and "工业增加值" in zh["meta"]["title"]


def test_gbk_html_page(tmp_path):
    page = news_page_zh().replace('charset="utf-8"', 'charset="gbk"').replace("©", "")
    (tmp_path / "gbk.html").write_bytes(page.encode("gbk"))
    (rec,) = read_one(tmp_path / "gbk.html")
    assert "前三季度全国规模以上工业增加值" in rec["text"]
    assert rec["meta"]["encoding"] == "gb18030"


def test_pdf_text_layer(tmp_path):
    (tmp_path / "doc.pdf").write_bytes(minimal_pdf(["Quarterly report", "Revenue grew 12%"]))
    (rec,) = read_one(tmp_path / "doc.pdf")
    assert rec["text"].split("\n") == ["Quarterly report", "Revenue grew 12%"]
    assert rec["meta"]["format"] == "pdf"


def test_jsonl_json_and_chat_logs(tmp_path):
    lines = [
        {"text": "plain", "label": 1},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {
            "request": {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "q?"}]}]
            },
            "response": {"choices": [{"message": {"role": "assistant", "content": "a."}}]},
            "origin": "log",
        },
        {"instruction": "Translate", "input": "cat", "output": "猫"},
        {"nothing": 1},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    recs = read_one(tmp_path / "a.jsonl")
    assert recs[0]["text"] == "plain" and recs[0]["label"] == "1"
    assert recs[1]["messages"][1] == {"role": "assistant", "content": "yo"}
    assert recs[2]["messages"] == [
        {"role": "user", "content": "q?"},
        {"role": "assistant", "content": "a."},
    ]
    assert recs[2]["meta"]["origin"] == "log" and recs[1]["meta"]["origin"] == "human"
    assert recs[3]["messages"][0]["content"] == "Translate\n\ncat"
    assert bad(recs) == ["no_text_field"]
    (tmp_path / "b.json").write_text(json.dumps([{"text": "x"}, {"text": "y"}]), encoding="utf-8")
    assert [r["text"] for r in read_one(tmp_path / "b.json", origin="teacher")] == ["x", "y"]
    assert read_one(tmp_path / "b.json", origin="teacher")[0]["meta"]["origin"] == "teacher"


def test_csv_tsv_parquet(tmp_path):
    (tmp_path / "s.tsv").write_text("Label\tSMS\nham\tsee you\nspam\tWIN\nno tab here\n")
    (tmp_path / "c.csv").write_text('id,body,category\n1,"hello, world",a\n2,"multi\nline",b\n')
    pq.write_table(pa.table({"content": ["p1", "p2"], "label": ["x", "y"]}), tmp_path / "p.parquet")
    recs = list(read_path(tmp_path))
    good = ok(recs)
    assert [(r["text"], r["label"]) for r in good] == [
        ("hello, world", "a"),
        ("multi\nline", "b"),
        ("p1", "x"),
        ("p2", "y"),
        ("see you", "ham"),
        ("WIN", "spam"),
    ]
    assert bad(recs) == ["wrong_field_count"]


def test_gzip_and_zip_are_opened_transparently(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'{"text": "from gzip"}\n'))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("docs/x.txt", "from zip")
        zf.writestr("docs/p.html", news_page_en())
    (tmp_path / "b.zip").write_bytes(buf.getvalue())
    recs = list(read_path(tmp_path))
    assert [r["meta"]["source"] for r in recs] == [
        "a.jsonl.gz",
        "b.zip!docs/p.html",
        "b.zip!docs/x.txt",
    ]
    assert recs[0]["text"] == "from gzip" and recs[2]["text"] == "from zip"


# --- bad input -------------------------------------------------------------------------------


def test_binary_file_quarantined(tmp_path):
    (tmp_path / "x.txt").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert bad(list(read_path(tmp_path))) == ["binary", "binary"]


def test_zero_byte_file_quarantined(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text("  \n\n \n")
    assert bad(list(read_path(tmp_path))) == ["no_text", "empty_file"]


def test_invalid_utf8(tmp_path):
    # Mostly UTF-8 with a stray bad byte: read, the byte replaced.
    (tmp_path / "mostly.txt").write_bytes("正常的中文内容。".encode() * 50 + b"\xff" + b" tail")
    # Random high bytes: no encoding makes sense of it.
    (tmp_path / "junk.txt").write_bytes(bytes(0x80 + (i * 37) % 120 for i in range(4000)))
    recs = list(read_path(tmp_path))
    assert bad(recs) == ["undecodable"]
    (good,) = ok(recs)
    assert good["text"].startswith("正常的中文内容") and "\ufffd" in good["text"]


def test_corrupt_pdf_and_zip(tmp_path):
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + b"\x00\x13" * 200)
    pdf = minimal_pdf(["ok"])
    (tmp_path / "trunc.pdf").write_bytes(pdf[: len(pdf) // 3])
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:40])
    reasons = bad(list(read_path(tmp_path)))
    assert reasons.count("corrupt_pdf") + reasons.count("no_text_layer") == 2
    assert "corrupt_zip" in reasons
    assert "corrupt_gzip" in reasons or "read_error" in reasons


def test_html_without_text(tmp_path):
    (tmp_path / "empty.html").write_text(
        "<html><head><script>var x=1;</script></head><body></body></html>"
    )
    (tmp_path / "nav.html").write_text("<html><body><nav><a href='/'>Home</a></nav></body></html>")
    assert bad(list(read_path(tmp_path))) == ["no_text", "no_text"]


def test_deeply_nested_json(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    medium = json.dumps({"text": "x", "a": json.loads("[" * 100 + "]" * 100)})
    (tmp_path / "d.jsonl").write_text(f'{deep}\n{medium}\n{{"text": "fine"}}\n')
    (tmp_path / "d.json").write_text(deep)
    recs = list(read_path(tmp_path))
    assert bad(recs) == ["json_too_deep", "json_too_deep", "json_too_deep"]
    assert [r["text"] for r in ok(recs)] == ["fine"]


def test_200mb_single_line_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.jsonl"
    chunk = b"a" * (1 << 20)
    with open(path, "wb") as f:
        f.write(b'{"text": "')
        for _ in range(200):
            f.write(chunk)
        f.write(b'"}\n{"text": "after"}\n')
    (tmp_path / "huge.txt").symlink_to(path)
    tracemalloc.start()
    t0 = time.time()
    recs, txt_chars, txt_max = [], 0, 0
    for r in read_path(tmp_path):  # the .txt's records are counted, not kept (200 MB)
        if r["meta"]["source"] == "huge.txt" and "reject_step" not in r:
            txt_chars += len(r["text"])
            txt_max = max(txt_max, len(r["text"]))
        else:
            recs.append(r)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # JSONL cannot split a record: the line is quarantined. Text can: it is kept, in pieces
    # that fit the default length step.
    assert bad(recs) == ["line_too_long"]
    assert [r["text"] for r in ok(recs)] == ["after"]
    assert txt_chars >= 200 * (1 << 20) and txt_max <= 150_000
    assert peak < 64 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    assert time.time() - t0 < 60


def test_reader_never_raises_on_garbage_in_any_extension(tmp_path):
    junk = bytes((i * 131 + 7) % 256 for i in range(5000))
    for ext in (
        "txt",
        "md",
        "html",
        "pdf",
        "jsonl",
        "json",
        "csv",
        "tsv",
        "parquet",
        "zip",
        "gz",
        "xyz",
    ):
        (tmp_path / f"junk.{ext}").write_bytes(junk)
    recs = list(read_path(tmp_path))
    assert len(recs) >= 12 and all("reject_step" in r for r in recs)
