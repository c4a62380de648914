"""Read a table and decide what each column is: the plan every later step follows.

A table arrives as CSV/TSV/JSONL/JSON/Parquet with raw columns. Reading is per row, so one
malformed line (wrong number of fields, undecodable bytes, a target that is not a number for a
regression) is quarantined with its reason instead of failing the run. Each column then gets a
kind — numeric, categorical, datetime, text — or is excluded with a reason a person can check
in the report (all missing, constant, an id that is different on every row, the target itself).
Pairs of latitude/longitude columns are found by name, so the distance between two places can
be a feature.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from zimo.errors import ConfigError, DataError

ColumnKind = Literal["numeric", "categorical", "datetime", "text", "excluded"]
Objective = Literal["regression", "binary", "multiclass"]

# A numeric target with at most this many distinct values is taken as classes; more is a
# quantity to regress (delivery minutes have ~45 distinct values, a 1-5 rating has 5).
MAX_CLASSES_FOR_NUMERIC_TARGET = 10
# Share of non-empty cells that must parse for a column to count as numeric or datetime; the
# rest become missing values (a stray "N/A " must not turn a numeric column into a category).
PARSE_SHARE = 0.95
ID_UNIQUE_SHARE = 0.98
TEXT_MEAN_CHARS = 40
MISSING_STRINGS = {"", "na", "n/a", "nan", "null", "none", "-", "?"}


@dataclass
class ColumnPlan:
    name: str
    kind: ColumnKind
    reason: str = ""
    dtype: str = ""  # what the raw values are: number | string | datetime


@dataclass
class TablePlan:
    target: str
    objective: Objective
    columns: list[ColumnPlan]
    classes: list[str] | None = None
    geo_pairs: list[list[str]] = field(default_factory=list)  # [[lat_a, lon_a, lat_b, lon_b]]
    notes: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> list[str]:
        """The raw columns a prediction request must carry."""
        return [c.name for c in self.columns if c.kind != "excluded"]

    def kind_of(self, name: str) -> ColumnKind:
        return next(c.kind for c in self.columns if c.name == name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TablePlan:
        cols = [ColumnPlan(**c) for c in d["columns"]]
        return cls(**{**d, "columns": cols})


# ---------------------------------------------------------------------------- reading
def read_frame(path: Path, fmt: str = "auto") -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The table as a DataFrame of raw values plus the quarantined rows ``{row, reason, raw}``.

    CSV/TSV are read with the csv module row by row (pandas would fail the whole file on one
    ragged line, or drop it silently); every cell stays a string here and is typed later.
    """
    from zimo.data.table import detect_format

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist", "fix `data.path:`")
    fmt = detect_format(path, fmt)
    rejects: list[dict[str, Any]] = []
    if fmt in ("csv", "tsv"):
        raw = path.read_bytes()
        if not raw.strip():
            raise DataError(f"data file {path.name} is empty", "add rows")
        if b"\x00" in raw[:8192]:
            raise DataError(f"data file {path.name} looks binary (NUL bytes)", "export it as CSV")
        text = raw.decode("utf-8-sig", errors="replace")
        reader = csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t")
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"data file {path.name} has no header row", "add one") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise DataError(f"column {dup!r} appears twice in {path.name}", "rename one of them")
        rows = []
        for i, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                rejects.append(
                    {
                        "row": i,
                        "reason": f"{len(row)} fields, expected {len(header)}",
                        "raw": ",".join(row)[:500],
                    }  # fmt: skip
                )
                continue
            if any("\ufffd" in c for c in row):
                rejects.append(
                    {"row": i, "reason": "undecodable bytes", "raw": ",".join(row)[:500]}
                )
                continue
            rows.append(row)
        df = pd.DataFrame(rows, columns=header, dtype=object)
    elif fmt == "parquet":
        df = pd.read_parquet(path)
    elif fmt in ("jsonl", "json"):
        try:
            df = pd.read_json(path, lines=fmt == "jsonl")
        except ValueError as e:
            raise DataError(f"cannot read {path.name} as {fmt}: {e}", "check the file") from None
    else:
        raise ConfigError(f"format {fmt!r} is not a table", "use csv, tsv, jsonl, json or parquet")
    if df.empty:
        raise DataError(f"data file {path.name} has no rows", "add rows")
    df.columns = [str(c) for c in df.columns]
    return df, rejects


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip().lower() in MISSING_STRINGS


def normalise_missing(s: pd.Series) -> pd.Series:
    """Empty strings and the usual spellings of "missing" become NaN."""
    if s.dtype != object:
        return s
    mask = s.map(_is_missing)
    return s.where(~mask, np.nan).map(lambda v: v.strip() if isinstance(v, str) else v)


def as_numeric(s: pd.Series) -> tuple[pd.Series, float]:
    """The column as floats, and the share of non-missing cells that parsed."""
    s = normalise_missing(s)
    present = s.notna().sum()
    num = pd.to_numeric(s, errors="coerce").astype(float)
    num = num.where(np.isfinite(num), np.nan)
    return num, (float(num.notna().sum() / present) if present else 0.0)


def as_datetime(s: pd.Series) -> tuple[pd.Series, float]:
    s = normalise_missing(s)
    present = s.notna().sum()
    if not present:
        return pd.Series(pd.NaT, index=s.index), 0.0
    sample = s.dropna().astype(str).head(200)
    # A column of plain numbers must not be read as dates (pandas parses "2021" or "11").
    if pd.to_numeric(sample, errors="coerce").notna().mean() > 0.5:
        return pd.Series(pd.NaT, index=s.index), 0.0
    if not sample.str.contains(r"[-/:]", regex=True).mean() > 0.9:
        return pd.Series(pd.NaT, index=s.index), 0.0
    dt = pd.to_datetime(s.astype("string"), errors="coerce", format="mixed")
    return dt, float(dt.notna().sum() / present)


# ---------------------------------------------------------------------------- the plan
_LAT = re.compile(r"(?i)(latitude|lat)")
_LON = re.compile(r"(?i)(longitude|lng|lon)")
_ID_NAME = re.compile(r"(?i)(^id$|_id$|^id_|(?<![a-z])id(?![a-z])|uuid|guid)")


def _geo_pairs(numeric: dict[str, pd.Series]) -> list[tuple[str, str]]:
    """(lat, lon) column pairs whose names differ only in the lat/lon word, values in range."""
    pairs = []
    for name, s in numeric.items():
        m = _LAT.search(name)
        if not m:
            continue
        word = m.group(1)
        partner_words = (
            ["longitude", "lng", "lon"]
            if word.lower() == "latitude"
            else ["lon", "lng", "longitude"]
        )
        for pw in partner_words:
            pw = pw.capitalize() if word[0].isupper() else pw
            other = name[: m.start()] + pw + name[m.end() :]
            if other in numeric and other != name:
                lat, lon = s.abs(), numeric[other].abs()
                if lat.max() <= 90 and lon.max() <= 180:
                    pairs.append((name, other))
                break
    return pairs


def infer_plan(
    df: pd.DataFrame,
    target: str,
    *,
    objective: str = "auto",
    kinds: dict[str, str] | None = None,
    exclude: list[str] | None = None,
) -> TablePlan:
    """Decide the objective and every column's kind; user overrides win over inference."""
    if target not in df.columns:
        close = ", ".join(df.columns[:30])
        raise ConfigError(
            f"target column {target!r} is not in the data",
            f"set `tabular.target:` to one of: {close}",
        )
    kinds = dict(kinds or {})
    for name in list(kinds) + list(exclude or []):
        if name not in df.columns:
            raise ConfigError(
                f"column {name!r} in `tabular.columns`/`exclude` is not in the data",
                f"columns are: {', '.join(df.columns[:30])}",
            )
    y_num, y_share = as_numeric(df[target])
    y_raw = normalise_missing(df[target]).dropna()
    if y_raw.empty:
        raise DataError(f"target column {target!r} has no values", "fill it in or pick another")
    if objective == "auto":
        n_unique = y_raw.nunique()
        if y_share >= PARSE_SHARE and y_num.nunique() > MAX_CLASSES_FOR_NUMERIC_TARGET:
            objective = "regression"
        else:
            objective = "binary" if n_unique == 2 else "multiclass"
    notes: list[str] = []
    classes = None
    if objective == "regression":
        if y_share < PARSE_SHARE:
            bad = normalise_missing(df[target]).dropna()
            bad = bad[pd.to_numeric(bad, errors="coerce").isna()].astype(str).head(3).tolist()
            raise DataError(
                f"target column {target!r} is not numeric (e.g. {bad}), so it cannot be regressed",
                "set `tabular.objective: multiclass` (or binary), or clean the column",
            )
        if y_num.nunique() < 2:
            raise DataError(f"target column {target!r} is constant", "nothing to predict")
    else:
        classes = sorted(y_raw.astype(str).unique().tolist())
        if len(classes) < 2:
            raise DataError(f"target column {target!r} has one class only", "nothing to predict")
        if objective == "binary" and len(classes) != 2:
            raise DataError(
                f"objective binary, but target {target!r} has {len(classes)} classes",
                "set `tabular.objective: multiclass`",
            )
    cols: list[ColumnPlan] = []
    numeric: dict[str, pd.Series] = {}
    n = len(df)
    for name in df.columns:
        if name == target:
            continue
        s = df[name]
        if name in (exclude or []) or kinds.get(name) == "exclude":
            cols.append(ColumnPlan(name, "excluded", "excluded in zimo.yaml"))
            continue
        forced = kinds.get(name)
        s_clean = normalise_missing(s)
        present = int(s_clean.notna().sum())
        if present == 0:
            cols.append(ColumnPlan(name, "excluded", "all values missing"))
            continue
        if s_clean.dropna().astype(str).nunique() < 2 and not forced:
            cols.append(ColumnPlan(name, "excluded", "constant: one value on every row"))
            continue
        num, share = as_numeric(s)
        if forced == "numeric" or (not forced and share >= PARSE_SHARE):
            unique_ints = num.dropna().nunique() == present and (num.dropna() % 1 == 0).all()
            if not forced and _ID_NAME.search(name) and unique_ints and n > 50:
                cols.append(
                    ColumnPlan(
                        name, "excluded", "id-like: a different integer on every row", "number"
                    )
                )
                continue
            cols.append(ColumnPlan(name, "numeric", "", "number"))
            numeric[name] = num
            continue
        if forced == "datetime" or not forced:
            dt, dshare = as_datetime(s)
            if forced == "datetime" or dshare >= PARSE_SHARE:
                cols.append(
                    ColumnPlan(
                        name,
                        "datetime",
                        "parts: year, month, day, weekday, hour, minute",
                        "datetime",
                    )
                )
                continue
        values = s_clean.dropna().astype(str)
        uniq = values.nunique()
        mean_len = float(values.str.len().mean())
        if forced == "text" or (
            not forced and mean_len >= TEXT_MEAN_CHARS and uniq > 0.5 * present
        ):
            cols.append(ColumnPlan(name, "text", "free text: length and word count", "string"))
            continue
        if not forced and uniq >= ID_UNIQUE_SHARE * present and n > 50:
            cols.append(
                ColumnPlan(name, "excluded", "id-like: a different value on every row", "string")
            )
            continue
        cols.append(ColumnPlan(name, "categorical", f"{uniq} distinct values", "string"))
    plan = TablePlan(target=target, objective=objective, columns=cols, classes=classes, notes=notes)
    pairs = _geo_pairs(numeric)
    if len(pairs) >= 2:
        # The distance between consecutive places (e.g. restaurant -> customer) is what a
        # delivery time depends on; trees cannot easily learn it from four raw coordinates.
        for a, b in zip(pairs[:-1], pairs[1:], strict=False):
            plan.geo_pairs.append([a[0], a[1], b[0], b[1]])
            notes.append(f"haversine distance (km) from ({a[0]}, {a[1]}) to ({b[0]}, {b[1]})")
    return plan
