"""Read an organisation's images: a folder of label folders, a CSV/JSONL manifest of
``path,label`` or ``path,caption``, or a zip of either. Every file is decoded with Pillow and
checked; what cannot be used is quarantined with a reason, never fails the run.

Only decoded pixels go on: the source bytes, and with them EXIF (GPS position, camera serial
numbers, owner names are personal data), are not copied into the artifacts. EXIF orientation
is applied first, so a phone photo taken upright stays upright.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from zimo.errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MANIFEST_EXTS = {".csv", ".tsv", ".jsonl"}


@dataclass
class Source:
    """One image to read: where it is (for reasons and the report) and how to get its bytes."""

    ref: str
    label: str | None
    caption: str | None
    read: object  # () -> bytes; raises OSError when missing


def _file_reader(path: Path):
    return lambda: path.read_bytes()


def _manifest_rows(text: str, suffix: str) -> Iterator[tuple[int, dict]]:
    if suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    yield i, {"__error__": "not valid JSON"}
                    continue
                yield i, row if isinstance(row, dict) else {"__error__": "not a JSON object"}
    else:
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        for i, row in enumerate(reader, 2):
            yield i, row


def _from_manifest(text: str, suffix: str, name: str, resolve, cfg, label_field: str,
                   rejects: list[dict]) -> list[Source]:  # fmt: skip
    out = []
    for line, row in _manifest_rows(text, suffix):
        where = f"{name}:{line}"
        if "__error__" in row:
            rejects.append({"source": where, "reason": f"manifest row {row['__error__']}"})
            continue
        rel = row.get(cfg.path_field)
        if not rel:
            rejects.append({"source": where, "reason": f"no `{cfg.path_field}` in the row"})
            continue
        label = row.get(label_field) if label_field else None
        caption = row.get(cfg.caption_field)
        label = str(label).strip() if label not in (None, "") else None
        caption = str(caption).strip() if caption not in (None, "") else None
        if label is None and caption is None:
            rejects.append({"source": where, "reason": "row has neither a label nor a caption"})
            continue
        out.append(Source(str(rel), label, caption, resolve(str(rel))))
    return out


def _find_manifest(names: list[str]) -> str | None:
    top = [n for n in names if "/" not in n.strip("/") and PurePosixPath(n).suffix in MANIFEST_EXTS]
    return sorted(top)[0] if top else None


def list_sources(path: Path, cfg, label_field: str | None) -> tuple[list[Source], list[dict]]:
    """Every image the data path names, with its label or caption, and the rejected rows."""
    rejects: list[dict] = []
    label_field = label_field or "label"
    if not path.exists():
        raise DataError(f"data path {str(path)!r} does not exist", "check `data.path`")
    if path.is_file() and path.suffix.lower() == ".zip":
        return _from_zip(path, cfg, label_field, rejects), rejects
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_EXTS:
            raise DataError(f"{path.name} is neither a folder, a manifest nor a zip",
                            "give a folder of label folders, a .csv/.jsonl manifest or a .zip")  # fmt: skip
        base = path.parent

        def resolve(rel: str, base=base):
            p = Path(rel) if os.path.isabs(rel) else base / rel
            return _file_reader(p)

        text = path.read_text(encoding="utf-8-sig")
        return _from_manifest(text, path.suffix.lower(), path.name, resolve, cfg, label_field,
                              rejects), rejects  # fmt: skip
    manifests = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_EXTS)
    if manifests:
        return list_sources(manifests[0], cfg, label_field)
    out = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            rejects.append({"source": f"{sub.name}/", "reason": "label folder is empty"})
        for f in files:
            out.append(Source(str(f.relative_to(path)), sub.name, None, _file_reader(f)))
    loose = [f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS]
    for f in loose:
        rejects.append({"source": f.name, "reason": "image outside a label folder (no label)"})
    return out, rejects


def _from_zip(path: Path, cfg, label_field: str, rejects: list[dict]) -> list[Source]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(
            f"{path.name} is not a readable zip file", "re-create the archive"
        ) from None
    names = [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]

    def reader(name: str):
        def read() -> bytes:
            try:
                return zf.read(name)
            except KeyError:
                raise FileNotFoundError(name) from None

        return read

    manifest = _find_manifest(names)
    if manifest:
        text = zf.read(manifest).decode("utf-8-sig")
        return _from_manifest(text, PurePosixPath(manifest).suffix, manifest,
                              lambda rel: reader(rel.lstrip("./")), cfg, label_field, rejects)  # fmt: skip
    # A zip of one top folder holding the label folders is as common as label folders at the top.
    parts = [PurePosixPath(n).parts for n in names]
    strip = (
        1 if parts and len({p[0] for p in parts}) == 1 and all(len(p) >= 3 for p in parts) else 0
    )
    out = []
    for n, p in zip(names, parts, strict=True):
        p = p[strip:]
        if len(p) < 2:
            rejects.append({"source": n, "reason": "image outside a label folder (no label)"})
            continue
        out.append(Source(n, p[0], None, reader(n)))
    return out


@dataclass
class Decoded:
    pixels: np.ndarray  # (3, S, S) uint8
    width: int
    height: int
    format: str


def decode(data: bytes, cfg, size: int | None) -> Decoded:
    """Pillow decode, checks, EXIF orientation, RGB, resize (short side) + centre crop.

    Raises ``ValueError`` with the quarantine reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > cfg.max_file_mb * 1e6:
        raise ValueError(f"file over max_file_mb ({len(data) / 1e6:.1f} MB > {cfg.max_file_mb})")
    try:
        im = Image.open(io.BytesIO(data))
        fmt = im.format or "unknown"
        w, h = im.size
        if w * h > cfg.max_pixels:
            raise ValueError(f"image too large ({w}x{h} > max_pixels {cfg.max_pixels})")
        if min(w, h) < cfg.min_side:
            raise ValueError(f"image too small ({w}x{h}; min_side {cfg.min_side})")
        im.load()  # the full decode: a truncated file fails here, not at open()
        im = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read (unsupported or not an image)") from None
    except Image.DecompressionBombError:
        raise ValueError("image too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, struct_error()) as e:
        raise ValueError(f"corrupt or truncated image ({str(e)[:80]})") from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels over white, as a viewer shows them, not over black.
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    im = im.convert("RGB")
    if size is None:
        return Decoded(np.zeros((3, 0, 0), np.uint8), w, h, fmt)
    return Decoded(to_square(im, size), w, h, fmt)


def struct_error():
    import struct

    return struct.error


def to_square(im, size: int) -> np.ndarray:
    """Short side to ``size`` (antialiased), centre crop: (3, size, size) uint8."""
    from PIL import Image, ImageOps

    im = im.convert("RGB")
    if min(im.size) > 2 * size:  # JPEG draft / box pre-shrink: a 4000 px photo decodes fast
        im.thumbnail((im.width * 2 * size // min(im.size), im.height * 2 * size // min(im.size)),
                     Image.Resampling.BOX)  # fmt: skip
    im = ImageOps.fit(im, (size, size), method=Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
