"""Outcome data: for each prompt, how well each tier answered it.

Two sources:

- a folder of CSV files ``prompt,<tier1>,<tier2>,...`` (one file per subject or task, as in
  ``shared/data/router_mmlu/``; cells are True/False, 1/0 or a score in [0, 1]). The file stem
  is the prompt's group (subject), used for grouped splits so evaluation is on unseen groups.
- generic records (dicts): ``{"prompt": str, "outcomes": {tier: score}, "group": str?}``, which
  is what ``zimo eval`` runs, judges or logged feedback produce.

Columns are matched to the configured tiers by name; with exactly two columns and two tiers
that do not match by name, the columns are taken in order (cheap first), since outcome files
often name the concrete models (``mistralai/Mixtral-8x7B-Instruct-v0.1``) rather than tiers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zimo.errors import DataError

_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}


@dataclass
class Outcomes:
    """Prompts with a quality score per tier: ``quality[i, j]`` = tier j on prompt i."""

    prompts: list[str]
    quality: np.ndarray
    tiers: list[str]
    groups: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    columns: list[str] = field(default_factory=list)  # names in the source, if they differ

    def __post_init__(self) -> None:
        self.quality = np.asarray(self.quality, dtype=np.float64)
        if len(self.groups) == 0:
            self.groups = np.array(["all"] * len(self.prompts), dtype=object)
        self.groups = np.asarray(self.groups, dtype=object)
        if self.quality.shape != (len(self.prompts), len(self.tiers)):
            raise DataError(
                f"outcome data shape {self.quality.shape} does not match "
                f"{len(self.prompts)} prompts x {len(self.tiers)} tiers"
            )
        if not self.columns:
            self.columns = list(self.tiers)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Outcomes:
        idx = np.asarray(idx)
        return Outcomes(
            [self.prompts[i] for i in idx],
            self.quality[idx],
            list(self.tiers),
            self.groups[idx],
            list(self.columns),
        )

    def good_enough(self, tier: int = 0, tol: float = 1e-9) -> np.ndarray:
        """1 where ``tier`` is at least as good as the strongest (last) tier on that prompt."""
        return (self.quality[:, tier] >= self.quality[:, -1] - tol).astype(np.int64)

    def summary(self) -> dict:
        return {
            "prompts": len(self),
            "groups": len(set(self.groups.tolist())),
            "tiers": self.tiers,
            "mean_quality": {t: float(self.quality[:, j].mean()) for j, t in enumerate(self.tiers)},
            "oracle_quality": float(self.quality.max(axis=1).mean()),
        }

    def check_learnable(self, label: str = "good_enough") -> np.ndarray:
        """The training label for the cheap tier; refuses data with one class only."""
        y = self.good_enough(0) if label == "good_enough" else (self.quality[:, 0] >= 0.5)
        y = np.asarray(y, dtype=np.int64)
        pos = int(y.sum())
        if len(y) < 20:
            raise DataError(
                f"only {len(y)} outcome rows: too few to learn a router",
                "collect at least a few hundred prompts with per-tier outcomes",
            )
        if pos == 0 or pos == len(y):
            what = "good enough" if pos else "worse than the strongest"
            raise DataError(
                f"outcome data has one class only: the cheapest tier ({self.tiers[0]}) is never "
                f"{what} on these {len(y)} prompts, so there is nothing to learn",
                "add prompts where the tiers differ, or route everything to one tier",
            )
        return y


def _parse_cell(value, where: str) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        if np.isnan(value):
            raise DataError(f"{where}: empty outcome cell", "fill it with True/False or 0..1")
        return float(value)
    s = str(value).strip().lower()
    if s in _TRUE:
        return 1.0
    if s in _FALSE:
        return 0.0
    try:
        return float(s)
    except ValueError:
        raise DataError(
            f"{where}: outcome {value!r} is not True/False or a number",
            "outcome cells must be True/False, 1/0 or a score in [0, 1]",
        ) from None


def _match_columns(columns: list[str], tiers: Sequence[str] | None, where: str) -> list[int]:
    """Indices of the outcome columns for each tier, cheapest first."""
    if tiers is None:
        return list(range(len(columns)))
    if all(t in columns for t in tiers):
        return [columns.index(t) for t in tiers]
    if len(columns) == len(tiers):
        return list(range(len(columns)))  # positional: files name models, config names tiers
    missing = [t for t in tiers if t not in columns]
    raise DataError(
        f"{where}: tiers {missing} are not outcome columns {columns}",
        "name the CSV columns after the tiers, or give one column per tier in tier order",
    )


def load_outcome_csvs(path: str | os.PathLike, tiers: Sequence[str] | None = None) -> Outcomes:
    """Read one CSV or a folder of CSVs (``prompt,<tier>...``); the file stem is the group."""
    import pandas as pd

    root = Path(path)
    files = sorted(root.glob("*.csv")) if root.is_dir() else [root]
    if not files or not files[0].exists():
        raise DataError(
            f"no outcome CSV files at {root}", "give a CSV or a folder of prompt,<tier>... CSVs"
        )
    prompts: list[str] = []
    rows: list[list[float]] = []
    groups: list[str] = []
    names: list[str] | None = None
    for f in files:
        try:
            df = pd.read_csv(f, dtype=str, keep_default_na=False)
        except Exception as e:  # pandas raises many types; the user needs the file name
            raise DataError(f"cannot read outcome file {f}: {e}") from None
        cols = list(df.columns)
        if len(cols) < 3 or cols[0].strip().lower() != "prompt":
            raise DataError(
                f"{f}: header must be prompt,<tier1>,<tier2>[,...], got {cols[:4]}",
                "one column with the prompt, then one outcome column per tier (cheap first)",
            )
        outcome_cols = cols[1:]
        idx = _match_columns(outcome_cols, tiers, str(f))
        if names is None:
            names = [outcome_cols[i] for i in idx]
        elif tiers is None and outcome_cols != names:
            raise DataError(
                f"{f}: outcome columns {outcome_cols} differ from the first file's {names}",
                "use the same tier columns in every file",
            )
        stem = f.stem.removeprefix("mmlu_")
        for r, rec in enumerate(df.itertuples(index=False)):
            vals = list(rec)
            prompts.append(str(vals[0]))
            rows.append([_parse_cell(vals[1 + i], f"{f.name} row {r + 2}") for i in idx])
            groups.append(stem)
    tier_names = list(tiers) if tiers is not None else list(names or [])
    return Outcomes(prompts, np.array(rows), tier_names, np.array(groups, dtype=object), names)


def outcomes_from_records(
    records: Iterable[dict], tiers: Sequence[str], *, source: str = "records"
) -> Outcomes:
    """Build outcome data from ``{"prompt", "outcomes": {tier: score}, "group"?}`` dicts.

    Records that miss a tier's outcome are skipped (counted in the raised error if none is
    left), since logged feedback usually covers only some tiers.
    """
    prompts, rows, groups, skipped = [], [], [], 0
    for n, rec in enumerate(records):
        prompt = rec.get("prompt", rec.get("text"))
        outs = rec.get("outcomes") or {}
        if not isinstance(prompt, str) or not all(t in outs for t in tiers):
            skipped += 1
            continue
        prompts.append(prompt)
        rows.append([_parse_cell(outs[t], f"{source} record {n}") for t in tiers])
        groups.append(str(rec.get("group") or (rec.get("meta") or {}).get("source") or "all"))
    if not prompts:
        raise DataError(
            f"{source}: no record has a prompt and an outcome for every tier {list(tiers)} "
            f"({skipped} skipped)",
            'records need {"prompt": ..., "outcomes": {tier: score, ...}}',
        )
    return Outcomes(prompts, np.array(rows), list(tiers), np.array(groups, dtype=object))
