"""CSV / TSV (streamed with the csv module) and Parquet (streamed in row batches)."""

from __future__ import annotations

import csv
import io
import itertools
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import quarantine
from zimo.data.readers.json_records import record_from_obj

TEXT_COLUMNS = ("text", "content", "body", "sms", "message", "sentence", "document", "review")
LABEL_COLUMNS = ("label", "category", "class", "labels")
MAX_BAD_ROWS = 1000  # past this many broken rows the file is not really CSV


def _pick(header: list[str], wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    if wanted:
        if wanted in header:
            return wanted
        if wanted.lower() in lower:
            return lower[wanted.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


def read_csv(f: IO[str], source: str, spec: ReadSpec, fmt: str) -> Iterator[dict[str, Any]]:
    """Rows of a CSV/TSV with a header line; the text column is found by name."""
    csv.field_size_limit(min(spec.max_record_chars, sys.maxsize))
    delimiter = spec.csv_delimiter or ("\t" if fmt == "tsv" else None)
    lines: Iterable[str] = f
    if delimiter is None:
        # The stream cannot seek (gzip, zip members): sniff a sample, then replay it.
        sample = f.read(16384)
        sample += f.readline(spec.max_record_chars)
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
        lines = itertools.chain(io.StringIO(sample), f)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        yield quarantine(source, 0, "no_header", format=fmt)
        return
    text_col = _pick(header, spec.text_field, TEXT_COLUMNS)
    if text_col is None and len(header) == 1:
        text_col = header[0]
    if text_col is None:
        yield quarantine(
            source, 0, "no_text_column", f"columns: {', '.join(header[:10])}", format=fmt
        )
        return
    label_col = _pick(header, spec.label_field, LABEL_COLUMNS)
    bad = 0
    row_no = 0
    while True:
        row_no += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            bad += 1
            yield quarantine(source, row_no, "bad_csv_row", str(e), format=fmt)
            if bad > MAX_BAD_ROWS:
                yield quarantine(source, row_no, "too_many_bad_rows", format=fmt)
                return
            continue
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield quarantine(
                source, row_no, "wrong_field_count", delimiter.join(row)[:300], format=fmt
            )
            continue
        obj = dict(zip(header, row, strict=True))
        item: dict[str, Any] = {"text": obj[text_col]}
        if label_col is not None and obj.get(label_col, "") != "":
            item["label"] = obj[label_col]
        yield record_from_obj(item, source, row_no, _plain(spec), fmt)


def _plain(spec: ReadSpec) -> ReadSpec:
    # Rows were already mapped to {"text", "label"}: read them with the default field names.
    return spec.model_copy(update={"text_field": "text", "label_field": None})


def read_parquet(f: IO[bytes], source: str, spec: ReadSpec) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
        batches = pf.iter_batches(batch_size=1024)
        offset = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield record_from_obj(row, source, offset, spec, "parquet")
                offset += 1
    except Exception as e:  # noqa: BLE001 - arrow raises several types on corrupt files
        yield quarantine(
            source, None, "corrupt_parquet", f"{type(e).__name__}: {e}", format="parquet"
        )
