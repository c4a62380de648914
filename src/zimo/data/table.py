"""Ingest a project's labelled table (TSV/CSV/JSONL/JSON/Parquet) into records.

A bad row never fails the run: it goes to the rejects with a reason (no tab, missing field,
label outside the declared set, undecodable bytes). A file that cannot be used at all
(missing, empty, binary) is a one-line ``DataError``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zimo.errors import ConfigError, DataError
from zimo.records import make_record

SUFFIX_FORMATS = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path.name}",
            "set `data.format:` to tsv, csv, jsonl, json or parquet in zimo.yaml",
        )
    return fmt


def _check_file(path: Path) -> bytes:
    if not path.exists():
        raise ConfigError(
            f"data file {str(path)!r} does not exist", "fix `data.path:` in zimo.yaml"
        )
    if path.is_dir():
        raise ConfigError(
            f"data path {str(path)!r} is a folder", "point `data.path:` at the data file"
        )
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"data file {path.name} is empty", "add rows or point at another file")
    if path.suffix.lower() != ".parquet" and b"\x00" in raw[:8192]:
        raise DataError(
            f"data file {path.name} looks binary (NUL bytes), not {path.suffix or 'text'}",
            "export it as UTF-8 TSV/CSV/JSONL",
        )
    return raw


def _decode_lines(raw: bytes) -> tuple[list[tuple[int, str | None]], str]:
    """Split into lines; undecodable lines come back as None so they can be quarantined.

    Whole files in another encoding (GB18030 is common for Chinese exports) are detected and
    decoded as a whole; only stray bad bytes in an otherwise UTF-8 file are per-line rejects.
    """
    try:
        text = raw.decode("utf-8-sig")
        return list(enumerate(text.splitlines())), "utf-8"
    except UnicodeDecodeError:
        pass
    lines = raw.splitlines()
    bad = 0
    out: list[tuple[int, str | None]] = []
    for i, b in enumerate(lines):
        try:
            out.append((i, b.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((i, None))
            bad += 1
    if bad > max(3, len(lines) // 10):
        from charset_normalizer import from_bytes

        best = from_bytes(raw).best()
        if best is None or best.encoding is None:
            raise DataError(
                "data file is not UTF-8 and its encoding could not be detected",
                "convert it to UTF-8 (e.g. `iconv -f GB18030 -t UTF-8`)",
            )
        text = raw.decode(best.encoding, errors="replace")
        return list(enumerate(text.splitlines())), best.encoding
    return out, "utf-8 (some lines invalid)"


def _reject(offset: int, raw: Any, reason: str, source: str) -> dict[str, Any]:
    return {
        "id": f"{Path(source).name}:{offset}",
        "text": raw if isinstance(raw, str) else None,
        "messages": None,
        "label": None,
        "meta": {"source": source, "offset": offset},
        "reject_step": "ingest",
        "reject_reason": reason,
    }


def _rows_delimited(
    lines: list[tuple[int, str | None]], delim: str, header: bool
) -> Iterator[tuple[int, dict[str, str] | None, str | None, Any]]:
    """Yield (line_no, row, error, raw). TSV rows are split on the first tabs, no quoting rules
    (SMS text is full of stray quotes); CSV uses the csv module for quoting."""
    names: list[str] | None = None
    for i, line in lines:
        if line is None:
            yield i, None, "invalid UTF-8 bytes", None
            continue
        if not line.strip():
            continue
        if delim == "\t":
            cells = line.split("\t")
        else:
            cells = next(csv.reader(io.StringIO(line)), [])
        if names is None:
            if header:
                names = [c.strip() for c in cells]
                continue
            names = [f"col{k}" for k in range(len(cells))]
        if len(cells) < len(names):
            sep = "tab" if delim == "\t" else "comma"
            yield i, None, f"expected {len(names)} columns, found {len(cells)} (no {sep})", line
            continue
        if len(cells) > len(names):  # extra separators belong to the last (text) column
            cells = cells[: len(names) - 1] + [delim.join(cells[len(names) - 1 :])]
        yield i, dict(zip(names, cells, strict=True)), None, line


def _rows_structured(path: Path, fmt: str, raw: bytes):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield i, row, None, None
        return
    lines, _ = _decode_lines(raw)
    if fmt == "json":
        text = "\n".join(line or "" for _, line in lines)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path.name} is not valid JSON (line {e.lineno}): {e.msg}", "fix or use JSONL"
            ) from None
        if not isinstance(data, list):
            raise DataError(f"{path.name} must hold a JSON list of objects", "or use JSONL")
        for i, row in enumerate(data):
            if isinstance(row, dict):
                yield i, row, None, None
            else:
                yield i, None, "row is not a JSON object", repr(row)[:200]
        return
    for i, line in lines:
        if line is None:
            yield i, None, "invalid UTF-8 bytes", None
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            yield i, None, f"invalid JSON: {e.msg}", line[:500]
            continue
        if not isinstance(row, dict):
            yield i, None, "row is not a JSON object", line[:500]
            continue
        yield i, row, None, line


def read_table(
    path: Path,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    label_field: str | None = "label",
    labels: list[str] | None = None,
    header: bool = True,
    origin: str = "human",
    generator: str | None = None,
    license: str | None = None,
    instruction_field: str | None = None,
    input_field: str | None = None,
    output_field: str | None = None,
    source_name: str | None = None,
    allow_unlabeled: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Read one table into (records, rejects, info). ``labels`` enforces the label set."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    raw = _check_file(path)
    source = source_name or path.name
    if fmt in ("tsv", "csv"):
        lines, encoding = _decode_lines(raw)
        rows = _rows_delimited(lines, "\t" if fmt == "tsv" else ",", header)
    else:
        encoding = "utf-8"
        rows = _rows_structured(path, fmt, raw)
    allowed = {lab.strip().lower(): lab for lab in labels} if labels else None
    records: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for offset, row, err, rawline in rows:
        if err:
            rejects.append(_reject(offset, rawline, err, source))
            continue
        assert row is not None
        messages = None
        if instruction_field:
            if instruction_field not in row or output_field not in row:
                miss = instruction_field if instruction_field not in row else output_field
                rejects.append(_reject(offset, rawline, f"missing field {miss!r}", source))
                continue
            prompt = str(row[instruction_field] or "").strip()
            extra = str(row.get(input_field) or "").strip() if input_field else ""
            if extra:
                prompt = f"{prompt}\n\n{extra}"
            messages = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": str(row[output_field] or "")},
            ]
            text = prompt
        else:
            if text_field not in row:
                reason = f"missing field {text_field!r} (columns: {', '.join(map(str, row))})"
                rejects.append(_reject(offset, rawline, reason, source))
                continue
            text = row[text_field]
            if text is None:
                rejects.append(_reject(offset, rawline, f"{text_field!r} is null", source))
                continue
            text = str(text)
        label = None
        if label_field and allowed is not None:
            value = row.get(label_field)
            if allow_unlabeled and (value is None or not str(value).strip()):
                value = None
                allowed_none = True
            else:
                allowed_none = False
            if value is None and not allowed_none:
                rejects.append(_reject(offset, rawline, f"missing label {label_field!r}", source))
                continue
            if value is not None:
                key = str(value).strip().lower()
                if key not in allowed:
                    reason = f"label {str(value)!r} is not in the declared labels {labels}"
                    rejects.append(_reject(offset, rawline, reason, source))
                    continue
                label = allowed[key]
        rec = make_record(
            text,
            source=source,
            offset=offset,
            label=label,
            messages=messages,
            origin=origin,
            generator=generator,
            license=license,
        )
        records.append(rec)
    if not records:
        first = rejects[0]["reject_reason"] if rejects else "no rows"
        raise DataError(
            f"no usable rows in {path.name} ({len(rejects)} rejected; first: {first})",
            "check `data.format`, `data.text_field`, `data.label_field` and `labels` in zimo.yaml",
        )
    info = {"format": fmt, "encoding": encoding, "rows": len(records), "rejected": len(rejects)}
    return records, rejects, info
