"""Rebuild the shipped word lists from their public sources (run by hand, never at run time).

    python src/zimo/data/lexicons/make_lexicons.py ../shared/data

Sources (see README.md): konsheng/Sensitive-lexicon ``色情类型.txt`` (MIT) and LDNOOBW ``zh`` /
``en`` (CC BY 4.0). Political categories are not taken. Terms that also occur in ordinary
human text (the shared Chinese QA answers and instruction data, English instructions and SMS
ham) are dropped: medical and everyday words such as 月经 or "ass" in "class" would otherwise
flag clean pages; spam pages use many other terms, so little recall is lost.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _clean_texts(data: Path) -> tuple[list[str], list[str]]:
    zh = [json.loads(line)["text"] for line in open(data / "hc3_zh_qa_dev.jsonl", encoding="utf-8")]
    zh += [d["output"] for d in json.load(open(data / "alpaca_zh_1k.json", encoding="utf-8"))]
    en = [d["output"] for d in json.load(open(data / "alpaca_en_1k.json", encoding="utf-8"))]
    with open(data / "sms_spam_collection.tsv", encoding="utf-8") as f:
        en += [row[1] for row in csv.reader(f, delimiter="\t") if len(row) > 1 and row[0] == "ham"]
    return zh, en


def main(data: Path) -> None:
    lex = data / "webpages" / "lexicons"
    zh_clean, en_clean = _clean_texts(data)
    zh: set[str] = set()
    for f in (lex / "konsheng-sensitive-lexicon/Vocabulary/色情类型.txt", lex / "ldnoobw/zh"):
        for w in f.read_text(encoding="utf-8").split("\n"):
            w = w.strip()
            # One character (乳, 屄) matches inside ordinary words: keep terms of two or more.
            if len(w) >= 2 and re.search("[\u4e00-\u9fff]", w):
                zh.add(w)
    zh = {w for w in zh if not any(w in t for t in zh_clean)}
    en: set[str] = set()
    for w in (lex / "ldnoobw/en").read_text(encoding="utf-8").split("\n"):
        w = w.strip().lower()
        if len(w) >= 3:
            en.add(w)
    blob = "\n".join(en_clean).lower()
    en = {w for w in en if not re.search(rf"\b{re.escape(w)}\b", blob)}
    (HERE / "adult_zh.txt").write_text("\n".join(sorted(zh)) + "\n", encoding="utf-8")
    (HERE / "adult_en.txt").write_text("\n".join(sorted(en)) + "\n", encoding="utf-8")
    print(f"adult_zh {len(zh)} adult_en {len(en)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
