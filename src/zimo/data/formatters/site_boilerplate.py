"""Site chrome found by repetition: short lines that recur on many pages of the same site.

Rules (``boilerplate``) know the *kinds* of chrome; this step finds the chrome of sites it has
never seen — a menu, a slogan, a keyboard-help box, a footer in a site's own words — because
such a line appears on a large share of that site's pages while article text does not.

It needs the whole corpus, so it is a global step: ``signature`` hashes each record's short
lines, ``select`` counts per site in how many pages each line occurs (and drops records that
would be left empty), and ``transform`` removes the frequent lines when the output is written.
A site is the page's ``meta.sitename`` / URL host, else the folder its file came from.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from zimo.data.pipeline import EXAMPLE_CHARS, GlobalStep, Reject, Step
from zimo.data.step_spec import StepSpec

MAX_LINE = 200


def _h(s: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


def _candidate(line: str) -> bool:
    return len(line) <= MAX_LINE and len(_WORDISH.findall(line)) >= 3


_WORDISH = re.compile(r"[^\W\d_]")


def site_of(rec: dict[str, Any]) -> str:
    meta = rec.get("meta") or {}
    if meta.get("sitename"):
        return str(meta["sitename"])
    url = meta.get("url")
    if url:
        m = re.match(r"^[a-z]+://([^/]+)", str(url), re.I)
        if m:
            return m.group(1).lower()
    source = str(meta.get("source") or "")
    return str(Path(source.split("!")[0]).parent) + (
        "!" + str(Path(source.split("!")[1]).parent) if "!" in source else ""
    )


class SiteBoilerplate(GlobalStep):
    """Remove lines (≤ 200 chars) found on at least ``min_share`` of a site's pages and on at
    least ``min_pages`` pages; records left empty are dropped as ``only_boilerplate``."""

    name = "site_boilerplate"
    kind = "formatter"

    def __init__(
        self, min_pages: int = 3, min_share: float = 0.3, formats: list[str] | None = None
    ) -> None:
        super().__init__()
        self.min_pages = min_pages
        self.min_share = min_share
        self.formats = set(formats) if formats else None
        self.boiler: dict[int, set[int]] = {}

    def _applies(self, rec: dict[str, Any]) -> bool:
        if rec.get("text") is None:
            return False
        return self.formats is None or (rec.get("meta") or {}).get("format") in self.formats

    def signature(self, rec: dict[str, Any]) -> np.ndarray:
        """``[site hash, number of other lines, candidate-line hashes…]`` (empty: not applicable).

        Candidates are short lines with some letters that occur once in the page: chrome
        appears once per page, while code (``}``, ``fn main() {``) and list markers repeat.
        """
        if not self._applies(rec):
            return np.empty(0, dtype=np.uint64)
        counts = Counter(ln.strip() for ln in rec["text"].split("\n") if ln.strip())
        cands = {_h(ln) for ln, c in counts.items() if c == 1 and _candidate(ln)}
        other = sum(counts.values()) - len(cands)
        return np.array([_h(site_of(rec)), other, *sorted(cands)], dtype=np.uint64)

    def select(self, items: list[tuple[int, str, Any]]) -> dict[int, tuple[str, str]]:
        pages: Counter = Counter()
        df: dict[int, Counter] = {}
        for _, _, sig in items:
            if len(sig) < 2:
                continue
            site = int(sig[0])
            pages[site] += 1
            df.setdefault(site, Counter()).update(int(x) for x in sig[2:])
        self.boiler = {}
        for site, counts in df.items():
            need = max(self.min_pages, self.min_share * pages[site])
            frequent = {h for h, c in counts.items() if c >= need}
            if frequent:
                self.boiler[site] = frequent
        drops: dict[int, tuple[str, str]] = {}
        for idx, rid, sig in items:
            if len(sig) >= 2 and int(sig[1]) == 0 and len(sig) > 2:
                chrome = self.boiler.get(int(sig[0]), set())
                if all(int(x) in chrome for x in sig[2:]):
                    drops[idx] = ("only_boilerplate", rid)
        self.stats.extra["sites"] = len(pages)
        self.stats.extra["lines_marked"] = sum(len(v) for v in self.boiler.values())
        return drops

    def transform(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Remove the site's frequent lines (called on kept records, after ``select``)."""
        if not self._applies(rec):
            return rec
        chrome = self.boiler.get(_h(site_of(rec)))
        if not chrome:
            return rec
        lines = rec["text"].split("\n")
        out = [
            ln
            for ln in lines
            if not (ln.strip() and len(ln.strip()) <= MAX_LINE and _h(ln.strip()) in chrome)
        ]
        if len(out) != len(lines):
            new = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
            self.stats.changed += 1
            self.stats.extra["lines_removed"] += len(lines) - len(out)
            self.stats.add_example(
                "changed",
                {
                    "id": str(rec.get("id")),
                    "before": rec["text"][:EXAMPLE_CHARS],
                    "after": new[:EXAMPLE_CHARS],
                },
            )
            rec["text"] = new
        return rec

    def dump_signatures(self, sigs: list[np.ndarray], path: Path) -> None:
        counts = np.array([len(s) for s in sigs], dtype=np.int64)
        flat = np.concatenate(sigs) if sigs else np.empty(0, dtype=np.uint64)
        with open(path, "wb") as f:
            np.savez(f, counts=counts, flat=flat.astype(np.uint64))

    def load_signatures(self, path: Path) -> list[np.ndarray]:
        with np.load(path, allow_pickle=False) as z:
            counts, flat = z["counts"], z["flat"]
        return np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        buf = list(records)
        self.stats.seen += len(buf)
        items = [(i, str(r.get("id")), self.signature(r)) for i, r in enumerate(buf)]
        drops = self.select(items)
        for i, rec in enumerate(buf):
            if i in drops:
                self.drop(rec, drops[i][0], reject)
            else:
                self.stats.kept += 1
                yield self.transform(rec)


class SiteBoilerplateSpec(StepSpec):
    """Remove lines that recur on many pages of the same site (chrome of unseen sites)."""

    step: Literal["site_boilerplate"] = "site_boilerplate"
    min_pages: int = Field(default=3, ge=2)
    min_share: float = Field(default=0.3, gt=0, le=1)
    # Only documents: in JSONL/CSV rows a repeated line is usually data, not chrome.
    formats: list[str] = Field(default_factory=lambda: ["html", "txt", "md", "pdf"])

    def build(self) -> Step:
        return SiteBoilerplate(self.min_pages, self.min_share, self.formats)


# Document formats: pages and files. Records from JSONL/CSV/Parquet tables (SMS, labelled rows)
# are data, not pages; the page steps leave them untouched.
