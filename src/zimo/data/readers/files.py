"""Walk an input folder and read every file by its type; gzip and zip are opened transparently.

``read_file(path, spec, root)`` never raises for bad input: unusable files come back as
quarantine records with a reason (binary, empty_file, undecodable, corrupt_zip, …).
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import SNIFF_BYTES, detect_encoding, looks_binary, open_text, quarantine

TEXT_TYPES = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".rst": "txt"}
HTML_TYPES = {".html", ".htm", ".xhtml", ".shtml"}
JSONL_TYPES = {".jsonl", ".ndjson"}
KNOWN_BINARY = {
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".bmp",
    ".webp",
    ".ico",
    ".mp3",
    ".mp4",
    ".wav",
    ".avi",
    ".mov",
    ".exe",
    ".dll",
    ".so",
    ".bin",
    ".pt",
    ".safetensors",
    ".gguf",
    ".pyc",
    ".7z",
    ".rar",
    ".tar",
    ".bz2",
    ".xz",
    ".doc",
    ".xls",
    ".ppt",
    ".docx",
    ".xlsx",
    ".pptx",
    ".db",
}
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # the most one archive member may expand to
MAX_PDF_BYTES = 256 * 1024 * 1024  # a PDF is parsed in memory
MAX_SPOOL_BYTES = 1024 * 1024 * 1024  # a compressed archive is spooled to disk up to this
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024  # ... keeping at most this much of it in memory
# Compression-bomb guard: past RATIO_GRACE_BYTES of output, a stream may not expand more than
# MAX_RATIO times its input. Real text compresses 3-20x; 1 GiB of zeros in 1 MB is 1000x.
MAX_RATIO = 200
RATIO_GRACE_BYTES = 16 * 1024 * 1024
_COPY_BYTES = 1024 * 1024


class CorruptInput(Exception):
    """Input found unusable while reading it: quarantined with ``reason``, never read_error."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


class _Inflating(io.RawIOBase):
    """A decompressing stream read through a counter: corrupt data becomes
    :class:`CorruptInput` (``corrupt_gzip`` / ``corrupt_zip``), and output past ``limit`` bytes
    or past ``MAX_RATIO`` times the compressed input (``consumed()``) stops the read, so a
    decompression bomb is refused after a bounded amount of work and memory."""

    def __init__(self, inner: IO[bytes], consumed, kind: str, limit: int) -> None:
        self._inner = inner
        self._consumed = consumed  # () -> compressed bytes read so far (or in all)
        self._kind = kind
        self._limit = limit
        self.produced = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.produced

    def readinto(self, b: Any) -> int:
        try:
            data = self._inner.read(len(b))
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            raise CorruptInput(self._kind, f"{type(e).__name__}: {e}") from None
        n = len(data)
        b[:n] = data
        self.produced += n
        if self.produced > self._limit:
            raise CorruptInput("too_large", f"expands past {self._limit} bytes")
        if self.produced > RATIO_GRACE_BYTES:
            ratio = self.produced / max(1, self._consumed())
            if ratio > MAX_RATIO:
                raise CorruptInput(
                    "compression_bomb", f"expands {ratio:.0f}x (the limit is {MAX_RATIO}x)"
                )
        return n


def _tell(f: IO[bytes]):
    def consumed() -> int:
        try:
            return int(f.tell())
        except (OSError, ValueError, AttributeError):
            return 0

    return consumed


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` in a stable order, skipping hidden files and folders."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


class _Prefixed(io.RawIOBase):
    """A stream that first replays ``head`` (the sniffed bytes) and then reads ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def _suffixes(name: str) -> tuple[str, bool]:
    """(type suffix, gzipped) — ``a.jsonl.gz`` is a gzipped ``.jsonl``."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    return os.path.splitext(lower)[1], gz


def read_stream(
    raw: IO[bytes], name: str, source: str, spec: ReadSpec, size: int | None, depth: int = 0
) -> Iterator[dict[str, Any]]:
    """Read one (possibly gzipped) file-like object by the type its ``name`` says."""
    ext, gz = _suffixes(name)
    if size == 0:
        yield quarantine(source, None, "empty_file")
        return
    if gz:
        inner = raw
        raw = io.BufferedReader(  # type: ignore[assignment]
            _Inflating(gzip.GzipFile(fileobj=inner), _tell(inner), "corrupt_gzip", MAX_SPOOL_BYTES)
        )
        size = None
    try:
        head = raw.read(SNIFF_BYTES)
    except CorruptInput as e:
        yield quarantine(source, None, e.reason, e.detail)
        return
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        yield quarantine(source, None, "corrupt_gzip" if gz else "unreadable", str(e))
        return
    if not head:
        yield quarantine(source, None, "empty_file")
        return
    if ext == ".zip" or (ext not in TEXT_TYPES and head.startswith(b"PK\x03\x04")):
        yield from _read_zip(_seekable(raw, head), source, spec, depth)
        return
    if ext == ".pdf" or head.startswith(b"%PDF"):
        data = head + raw.read(MAX_PDF_BYTES)
        if len(data) > MAX_PDF_BYTES:
            yield quarantine(source, None, "too_large", format="pdf")
            return
        from zimo.data.readers.pdf import read_pdf

        yield from read_pdf(data, source, spec)
        return
    if ext == ".parquet" or head.startswith(b"PAR1"):
        from zimo.data.readers.tabular import read_parquet

        yield from read_parquet(_seekable(raw, head), source, spec)
        return
    if ext in KNOWN_BINARY or looks_binary(head):
        yield quarantine(source, None, "binary", ext=ext or "none")
        return
    encoding, why = detect_encoding(head)
    if encoding is None:
        yield quarantine(source, None, "undecodable", head[:200].decode("latin-1"))
        return
    f = open_text(_Prefixed(head, raw), head, encoding)  # type: ignore[arg-type]
    extra = {} if encoding in ("utf-8", "utf-8-sig") else {"encoding": encoding}
    for rec in _read_text_stream(f, ext, source, spec):
        if extra:
            rec["meta"].update(extra)
        yield rec


def _read_text_stream(
    f: IO[str], ext: str, source: str, spec: ReadSpec
) -> Iterator[dict[str, Any]]:
    if ext in HTML_TYPES:
        from zimo.data.readers.html import read_html

        yield from read_html(f, source, spec)
    elif ext in JSONL_TYPES:
        from zimo.data.readers.json_records import read_jsonl

        yield from read_jsonl(f, source, spec)
    elif ext == ".json":
        from zimo.data.readers.json_records import read_json

        yield from read_json(f, source, spec)
    elif ext in (".csv", ".tsv", ".tab"):
        from zimo.data.readers.tabular import read_csv

        yield from read_csv(f, source, spec, "csv" if ext == ".csv" else "tsv")
    else:
        from zimo.data.readers.text import read_text

        yield from read_text(f, source, spec, TEXT_TYPES.get(ext, "txt"))


def _seekable(raw: IO[bytes], head: bytes) -> IO[bytes]:
    """The whole stream as a seekable file: the file itself when it can seek (no copy), else
    a copy spooled to a temporary file in bounded chunks (never the whole stream in memory)."""
    if isinstance(raw, io.BufferedReader | io.FileIO) and not isinstance(
        getattr(raw, "raw", None), _Inflating
    ):
        if raw.seekable():
            raw.seek(0)
            return raw
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    spool.write(head)
    total = len(head)
    while chunk := raw.read(_COPY_BYTES):
        total += len(chunk)
        if total > MAX_SPOOL_BYTES:
            spool.close()
            raise CorruptInput("too_large", f"an archive over {MAX_SPOOL_BYTES} bytes")
        spool.write(chunk)
    spool.seek(0)
    return spool


def _read_zip(data: IO[bytes], source: str, spec: ReadSpec, depth: int) -> Iterator[dict[str, Any]]:
    if depth >= 2:
        yield quarantine(source, None, "nested_archive_too_deep")
        return
    try:
        zf = zipfile.ZipFile(data)
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        yield quarantine(source, None, "corrupt_zip", str(e))
        return
    for info in sorted(infos, key=lambda i: i.filename):
        base = info.filename.rsplit("/", 1)[-1]
        member = f"{source}!{info.filename}"
        if base.startswith(".") or "__MACOSX" in info.filename:
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            yield quarantine(member, None, "too_large")
            continue
        if info.file_size > RATIO_GRACE_BYTES and info.file_size > MAX_RATIO * max(
            1, info.compress_size
        ):
            yield quarantine(member, None, "compression_bomb",
                             f"{info.file_size} bytes from {info.compress_size}")  # fmt: skip
            continue
        try:
            fh = zf.open(info)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as e:
            yield quarantine(member, None, "corrupt_zip", f"{type(e).__name__}: {e}")
            continue
        # Streamed, not read whole: the declared sizes may lie, so the output is counted too.
        csize = info.compress_size
        body = io.BufferedReader(
            _Inflating(fh, lambda c=csize: c, "corrupt_zip", MAX_MEMBER_BYTES), _COPY_BYTES
        )
        with fh:
            yield from _guard(
                read_stream(body, base, member, spec, info.file_size, depth + 1), member
            )


def _guard(records: Iterator[dict[str, Any]], source: str) -> Iterator[dict[str, Any]]:
    """Turn an unexpected reader exception into a quarantine record (the run goes on)."""
    try:
        yield from records
    except CorruptInput as e:
        yield quarantine(source, None, e.reason, e.detail)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - last line of defence: one bad file never fails a run
        yield quarantine(source, None, "read_error", f"{type(e).__name__}: {e}")


def read_file(
    path: Path, spec: ReadSpec | None = None, root: Path | None = None
) -> Iterator[dict[str, Any]]:
    """Records (and quarantine records) from one file; ``source`` is relative to ``root``."""
    spec = spec or ReadSpec()
    path = Path(path)
    source = path.relative_to(root).as_posix() if root is not None and root != path else path.name
    try:
        size = path.stat().st_size
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the generator is drained
    except OSError as e:
        yield quarantine(source, None, "unreadable", str(e))
        return
    with fh:
        yield from _guard(read_stream(fh, path.name, source, spec, size), source)


def read_path(root: Path, spec: ReadSpec | None = None) -> Iterator[dict[str, Any]]:
    """Every record under a folder (or from one file), in a stable order."""
    root = Path(root)
    base = root if root.is_dir() else root.parent
    for path in iter_files(root):
        yield from read_file(path, spec, base)
