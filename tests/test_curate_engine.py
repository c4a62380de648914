"""curate_path end to end: outputs, report, resume after a kill, engines, big folders, CLI."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate_fixtures import EN_BODY, ZH_BODY, minimal_pdf, news_page_en, news_page_zh, shared_texts
from zimo.data.curate import curate_path
from zimo.data.record_table import read_table_records

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = {
    "steps": ["fix_unicode", "normalize", "pii", "boilerplate", "length", "exact_dedup", "near_dup"]
}


def _corpus(root: Path) -> None:
    """News pages (zh/en, one re-published with another site's chrome), docs and junk."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "news").mkdir()
    (root / "news" / "zh1.html").write_text(news_page_zh(), encoding="utf-8")
    (root / "news" / "zh2_repost.html").write_text(
        news_page_zh(site="东方财经网"), encoding="utf-8"
    )
    (root / "news" / "en1.html").write_text(news_page_en(), encoding="utf-8")
    other = [
        p.replace("国家统计局", "海关总署") + "出口数据同样显示回暖迹象。" for p in ZH_BODY[::-1]
    ]
    (root / "news" / "zh3.html").write_text(news_page_zh(body=other), encoding="utf-8")
    (root / "docs").mkdir()
    (root / "docs" / "memo.txt").write_text(
        "会议纪要\n\n请各部门负责人于周五前提交预算，联系人张经理，手机13912345678，"
        "邮箱zhang@example.com。身份证复印件请勿通过邮件发送。",
        encoding="utf-8",
    )
    (root / "docs" / "report.pdf").write_bytes(
        minimal_pdf(["Annual report 2023", "Revenue grew 12 percent on strong demand."])
    )
    texts = shared_texts(120) or [*ZH_BODY, *EN_BODY]
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in texts]
    lines += [json.dumps({"text": t}, ensure_ascii=False) for t in texts[:5]]  # exact copies
    (root / "docs" / "answers.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    (root / "junk").mkdir()
    (root / "junk" / "empty.txt").write_bytes(b"")
    (root / "junk" / "image.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(500))
    (root / "junk" / "broken.pdf").write_bytes(b"%PDF-1.7\n%broken")


def _ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


def test_curate_folder_end_to_end(tmp_path):
    _corpus(tmp_path / "in")
    stats = curate_path(tmp_path / "in", tmp_path / "out", workers=1, progress=False)
    out = tmp_path / "out"
    for name in ("curated.parquet", "rejects.parquet", "report.html", "report.json"):
        assert (out / name).stat().st_size > 0
    kept = read_table_records(out / "curated.parquet")
    rejects = read_table_records(out / "rejects.parquet")
    assert stats["kept"] == len(kept) and stats["rejected"] == len(rejects)
    by_source = {r["meta"]["source"]: r for r in kept}
    zh = by_source["news/zh1.html"]["text"]
    assert ZH_BODY[1] in zh  # body intact
    for chrome in ("关键词", "分享到", "版权", "ICP", "相关阅读", "举报电话", "责任编辑"):
        assert chrome not in zh
    en = by_source["news/en1.html"]["text"]
    assert EN_BODY[2] in en and "Share this" not in en and "Related articles" not in en
    memo = by_source["docs/memo.txt"]["text"]
    assert "13912345678" not in memo and "<PHONE>" in memo and "<EMAIL>" in memo
    assert "Revenue grew 12 percent" in by_source["docs/report.pdf"]["text"]
    # the re-posted page is a near-duplicate of the first, pointing at it
    repost = next(r for r in rejects if r["meta"]["source"] == "news/zh2_repost.html")
    assert repost["reject_reason"] in ("near_duplicate", "exact_duplicate")
    assert repost["meta"]["duplicate_of"] == by_source["news/zh1.html"]["id"]
    assert "news/zh3.html" in by_source  # similar topic, different text: kept
    reasons = {
        r["meta"]["source"]: r["reject_reason"] for r in rejects if r["reject_step"] == "read"
    }
    assert reasons == {
        "junk/empty.txt": "empty_file",
        "junk/image.jpg": "binary",
        "junk/broken.pdf": "corrupt_pdf",
    }
    # the report explains every drop
    report = json.loads((out / "report.json").read_text())
    explained = sum(sum(s["dropped_by_reason"].values()) for s in report["steps"])
    assert explained == len(rejects)
    assert report["langs"]["zh"] >= 3 and report["pii"]["cn_mobile"] >= 1
    assert report["lengths"]["before"]["n"] == stats["records_read"]
    assert report["datasheet"]["records"] == len(kept)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and repost["reject_reason"] in html
    # a second run reuses every shard and gives the same output
    again = curate_path(tmp_path / "in", out, workers=1, progress=False)
    assert again["resumed_shards"] == again["shards"]
    assert _ids(out / "curated.parquet") == [r["id"] for r in kept]


def test_parallel_workers_give_the_same_output(tmp_path):
    _corpus(tmp_path / "in")
    cfg = {**FAST, "shard_files": 2}
    one = curate_path(tmp_path / "in", tmp_path / "a", cfg, workers=1, progress=False)
    two = curate_path(tmp_path / "in", tmp_path / "b", cfg, workers=2, progress=False)
    assert one["shards"] > 3
    assert _ids(tmp_path / "a" / "curated.parquet") == _ids(tmp_path / "b" / "curated.parquet")
    assert one["rejected"] == two["rejected"]


def test_config_change_replans(tmp_path):
    _corpus(tmp_path / "in")
    curate_path(tmp_path / "in", tmp_path / "out", FAST, workers=1, progress=False)
    cfg = {"steps": ["fix_unicode", {"step": "length", "min_chars": 100000}]}
    stats = curate_path(tmp_path / "in", tmp_path / "out", cfg, workers=1, progress=False)
    assert stats["resumed_shards"] == 0 and stats["kept"] == 0


RUNNER = """
import sys
from zimo.data.curate import curate_path
curate_path(sys.argv[1], sys.argv[2], {"steps": ["normalize", "length", "exact_dedup", "near_dup"],
            "shard_files": 1}, workers=1, progress=False)
"""


def test_resume_after_kill_loses_and_doubles_nothing(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    texts = shared_texts(400) or [f"document number {i} " * 20 for i in range(400)]
    for i in range(16):
        chunk = texts[i * 20 : (i + 1) * 20] + texts[:2]  # cross-shard exact duplicates too
        (src / f"part{i:02d}.jsonl").write_text(
            "\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in chunk), encoding="utf-8"
        )
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC), "ZIMO_TEST_SHARD_DELAY_S": "0.3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(src), str(out)], env=env, start_new_session=True
    )
    work = out / ".work"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(work.glob("shard-?????"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(list(work.glob("shard-?????")))
    assert 4 <= done < 16, done
    assert not (out / "curated.parquet").exists()
    resumed = curate_path(
        src,
        out,
        {"steps": ["normalize", "length", "exact_dedup", "near_dup"], "shard_files": 1},
        workers=1,
        progress=False,
    )
    assert resumed["resumed_shards"] >= 4
    fresh = curate_path(
        src,
        tmp_path / "fresh",
        {"steps": ["normalize", "length", "exact_dedup", "near_dup"], "shard_files": 1},
        workers=1,
        progress=False,
    )
    ids = _ids(out / "curated.parquet")
    assert len(ids) == len(set(ids))  # nothing doubled
    assert ids == _ids(tmp_path / "fresh" / "curated.parquet")  # nothing lost
    assert resumed["rejected"] == fresh["rejected"]
    assert resumed["kept"] + resumed["rejected"] == 16 * 22


def _many_tiny_files(root: Path, n: int) -> None:
    for i in range(n):
        sub = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        fd = os.open(sub / f"f{i:05d}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, f"note {i}: meeting moved to room {i % 97}".encode())
        os.close(fd)


def _tiny_files_run(tmp_path: Path, n: int) -> None:
    import resource

    _many_tiny_files(tmp_path / "in", n)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = curate_path(
        tmp_path / "in",
        tmp_path / "out",
        {"steps": ["normalize", "length", "exact_dedup"], "shard_files": 2000},
        progress=False,
    )
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert stats["files"] == n and stats["kept"] == n and stats["shards"] == -(-n // 2000)
    assert grown_mb < 400, grown_mb


def test_folder_of_5000_tiny_files(tmp_path):
    _tiny_files_run(tmp_path, 5000)


@pytest.mark.slow
def test_folder_of_50000_tiny_files(tmp_path):
    _tiny_files_run(tmp_path, 50_000)


@pytest.mark.slow  # starting a local Ray cluster takes 30-60 s on 2 busy cores
def test_ray_engine_gives_the_same_output(tmp_path):
    pytest.importorskip("ray", reason="ray is optional (pip install 'ray[data]')")
    _corpus(tmp_path / "in")
    cfg = {**FAST, "shard_files": 3}
    local = curate_path(tmp_path / "in", tmp_path / "local", cfg, workers=2, progress=False)
    ray_run = curate_path(
        tmp_path / "in", tmp_path / "ray", cfg, engine="ray", workers=2, progress=False
    )
    assert ray_run["engine"] == "ray"
    assert _ids(tmp_path / "local" / "curated.parquet") == _ids(
        tmp_path / "ray" / "curated.parquet"
    )
    assert local["rejected"] == ray_run["rejected"]


def test_bad_arguments_are_one_line_errors(tmp_path):
    from zimo.errors import ConfigError, DataError

    with pytest.raises(DataError, match="does not exist"):
        curate_path(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError, match="unknown engine"):
        curate_path(tmp_path / "in", tmp_path / "out", engine="spark")


def test_cli_register_and_config_file(tmp_path):
    from typer.testing import CliRunner

    from zimo.cli import app  # the shipped CLI

    _corpus(tmp_path / "in")
    (tmp_path / "zimo.yaml").write_text("curate:\n  steps: [normalize, length, exact_dedup]\n")
    res = CliRunner().invoke(
        app,
        [
            "curate",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "zimo.yaml"),
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)  # the JSON on stdout; the summary table went to stderr
    assert "exact_dedup" in res.stderr and (tmp_path / "out" / "report.html").exists()
    assert stats["kept"] >= 1 and [s["name"] for s in stats["steps"]][-1] == "exact_dedup"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["name"] for s in report["steps"]] == ["read", "normalize", "length", "exact_dedup"]

    (tmp_path / "bad.yaml").write_text("curate:\n  steps: [{step: length, min_char: 3}]\n")
    from zimo.data.cli import load_curate_config
    from zimo.errors import ConfigError

    with pytest.raises(ConfigError, match="curate.steps.0.length.min_char"):
        load_curate_config(tmp_path / "bad.yaml")
