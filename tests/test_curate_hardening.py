"""`zimo curate` against bad and huge inputs: decompression bombs, corrupt gzip, one huge text
file without paragraph breaks. Memory is measured on the real CLI in a child process."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from zimo.data.curate import curate_path
from zimo.data.readers.files import read_path

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs `zimo curate` as a child and prints its peak RSS (KiB) on the last line: a fresh
# wrapper process, so no earlier child of the test process counts.
RSS_RUNNER = """
import resource, subprocess, sys
cmd = [sys.executable, "-c", "from zimo.cli import main; main()", "curate",
       "--input", sys.argv[1], "--output", sys.argv[2]]
r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
sys.stderr.write(r.stderr)
print(r.stdout)
print(r.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _curate_cli(src: Path, out: Path) -> tuple[dict, int]:
    """(summary, peak RSS in bytes) of `zimo curate --input src --output out`."""
    r = subprocess.run(
        [sys.executable, "-c", RSS_RUNNER, str(src), str(out)],
        env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    lines = r.stdout.rstrip("\n").split("\n")
    assert lines[-2] == "0", r.stderr[-3000:]
    return json.loads("\n".join(lines[:-2])), int(lines[-1]) * 1024


def _read_reasons(summary: dict) -> dict:
    read = next(s for s in summary["steps"] if s["name"] == "read")
    return read["dropped_by_reason"]


def _zeros_gz(path: Path, mib: int) -> None:
    z = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        for _ in range(mib):
            f.write(z)


def test_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _zeros_gz(src / "bomb.zip.gz", 1024)  # 1 GiB of zeros in about 1 MB (4.5 MB at level 1)
    (src / "fine.txt").write_text("A normal document with a few words in it.\n", "utf-8")
    summary, rss = _curate_cli(src, tmp_path / "out")
    assert rss < 1024**3, f"peak RSS {rss / 2**20:.0f} MiB"
    assert _read_reasons(summary) == {"compression_bomb": 1}
    assert summary["kept"] == 1


def test_zip_member_bomb_and_corrupt_gzip_are_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.txt", "w") as m:
            for _ in range(100):
                m.write(bytes(1 << 20))
        zf.writestr("ok.txt", "A small member that is fine to read.")
    rnd = random.Random(7)
    text = "\n".join(f"line {i} {rnd.random()}" for i in range(20_000)).encode()
    blob = bytearray(gzip.compress(text))
    mid = len(blob) // 2
    blob[mid : mid + 64] = bytes(64)  # damaged in the middle: past the sniffed head
    (tmp_path / "damaged.txt.gz").write_bytes(bytes(blob))
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(text)[: len(blob) // 2])
    recs = list(read_path(tmp_path))
    reasons = {
        r["meta"]["source"]: r["reject_reason"] for r in recs if "reject_step" in r
    }  # fmt: skip
    assert reasons == {
        "a.zip!zeros.txt": "compression_bomb",
        "damaged.txt.gz": "corrupt_gzip",
        "cut.txt.gz": "corrupt_gzip",
    }
    assert any(r["text"] == "A small member that is fine to read." for r in recs)


def _sentences_file(path: Path, mib: int, seed: int = 1) -> int:
    """Text made of sentences with no line breaks at all; returns its size in characters."""
    rnd = random.Random(seed)
    words = "the of and to in is was for on that with as by at from it were are this".split()
    sents = [
        " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 20))).capitalize() + ". "
        for _ in range(3000)
    ]
    n = i = 0
    with open(path, "w", encoding="utf-8") as f:
        while n < mib * 2**20:
            s = sents[i % len(sents)] + f"Item {i}. "
            f.write(s)
            n += len(s)
            i += 1
    return n


def _kept_chars(out: Path) -> int:
    t = pq.read_table(out / "curated.parquet", columns=["text"])
    return sum(len(x) for x in t.column("text").to_pylist())


def test_long_text_without_breaks_is_split_at_sentences_and_kept(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    n = _sentences_file(src / "one_line.txt", 5)
    out = tmp_path / "out"
    stats = curate_path(src, out, {"steps": ["normalize", "length"]}, workers=1, progress=False)
    assert stats["rejected"] == 0
    assert stats["kept"] >= 30
    assert _kept_chars(out) >= n * 0.99  # only whitespace at the cuts is dropped
    texts = pq.read_table(out / "curated.parquet", columns=["text"]).column("text").to_pylist()
    assert all(len(t) <= 150_000 for t in texts)
    assert all(t.rstrip().endswith(".") for t in texts)  # cut at sentence ends


@pytest.mark.slow
def test_300mb_text_file_stays_under_1gb_and_is_kept(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    n = _sentences_file(src / "big.txt", 300)
    summary, rss = _curate_cli(src, tmp_path / "out")
    assert rss < 1024**3, f"peak RSS {rss / 2**20:.0f} MiB"
    assert summary["rejected"] == 0
    assert _kept_chars(tmp_path / "out") >= n * 0.99
