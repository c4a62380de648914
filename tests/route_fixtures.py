"""Small real outcome sets for the routing tests (from the shared RouteLLM MMLU data)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "router_mmlu"

SUBJECTS = [
    "moral_scenarios",
    "high_school_psychology",
    "college_computer_science",
    "miscellaneous",
    "formal_logic",
    "high_school_biology",
    "professional_accounting",
    "marketing",
]


def small_outcome_dir(tmp: Path, per_subject: int = 40, max_chars: int = 400) -> Path:
    """Copy the first ``per_subject`` short prompts of a few subjects into ``tmp``."""
    if not DATA.is_dir():
        pytest.skip(f"shared router data not found at {DATA}")
    tmp.mkdir(parents=True, exist_ok=True)
    for subject in SUBJECTS:
        src = DATA / f"mmlu_{subject}.csv"
        if not src.exists():
            continue
        with open(src, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], [r for r in rows[1:] if len(r[0]) <= max_chars][:per_subject]
        with open(tmp / src.name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *body])
    return tmp


def fit_small_router(tmp: Path, router: dict, out_dir: Path | None = None):
    """(outcomes, router): ``fit_router`` with the ``router:`` settings given, on two priced
    tiers and 15 prompts per subject of :func:`small_outcome_dir`, vectors cached under tmp."""
    from zimo.route.outcomes import load_outcome_csvs
    from zimo.route.router import fit_router

    out = load_outcome_csvs(small_outcome_dir(tmp / "d", per_subject=15), ["weak", "strong"])
    cfg = {
        "tiers": [
            {"name": "weak", "price_per_1k_tokens": 0.0006},
            {"name": "strong", "price_per_1k_tokens": 0.01},
        ],
        "target": {"quality": 0.9},
        "router": router,
    }
    return out, fit_router(out, cfg, out_dir, embed_cache_path=tmp / "e.sqlite")
