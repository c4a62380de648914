"""Decode, check and deduplicate the listed images into one uint8 array + a record table.

Quarantine reasons (one per bad file, in ``rejects.jsonl``): missing file, not an image,
corrupt or truncated, too small, too large, label not in ``labels:``, exact duplicate,
near-duplicate. Duplicates are removed before the split, so no image (or its re-save) is in
both train and test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from zimo.errors import DataError
from zimo.image.dedup import colour_thumb, dhash, near_duplicates, pixel_sha
from zimo.image.ingest import Source, decode


@dataclass
class Curated:
    pixels: np.ndarray  # (N, 3, S, S) uint8
    records: list[dict]  # id, source, label, caption, width, height, format
    rejects: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    size: int = 0


def pick_size(sizes: list[tuple[int, int]], setting) -> int:
    """``image_size: auto``: the median short side, within [32, 96], rounded to 8."""
    if setting != "auto":
        return int(setting)
    if not sizes:
        return 64
    med = float(np.median([min(w, h) for w, h in sizes]))
    return int(min(96, max(32, round(med / 8) * 8)))


def _read(src: Source) -> bytes | None:
    try:
        return src.read()
    except OSError:
        return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header only (no pixel decode); None if unreadable."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # the full decode later names the reason
        return None


def curate_images(sources: list[Source], cfg, labels: list[str] | None,
                  tick: Callable[[int], None] | None = None) -> Curated:  # fmt: skip
    rejects: list[dict] = []
    declared = set(labels) if labels else None
    # Two passes: headers first (the size for `image_size: auto`), then the decode, reading
    # each file again rather than holding every file's bytes (a photo archive can be 100 GB).
    keep: list[Source] = []
    sizes = []
    for src in sources:
        if declared is not None and src.label is not None and src.label not in declared:
            rejects.append(
                {"source": src.ref, "reason": f"label {src.label!r} is not in `labels:`"}
            )
            continue
        data = _read(src)
        if data is None:
            rejects.append({"source": src.ref, "reason": "file not found"})
            continue
        keep.append(src)
        size = _header_size(data) if cfg.image_size == "auto" else None
        if size:
            sizes.append(size)
    side = pick_size(sizes, cfg.image_size)

    def work(src: Source):
        data = _read(src)
        if data is None:
            return None, "file not found"
        try:
            return decode(data, cfg, side), None
        except ValueError as e:
            return None, str(e)

    pixels, records, hashes, thumbs, shas = [], [], [], [], {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # Pillow decodes without the GIL
        for src, (dec, err) in zip(keep, pool.map(work, keep, chunksize=64), strict=True):
            if tick:
                tick(1)
            if err:
                rejects.append({"source": src.ref, "reason": err})
                continue
            sha = pixel_sha(dec.pixels)
            if sha in shas:
                rejects.append({"source": src.ref,
                                "reason": f"exact duplicate of {records[shas[sha]]['source']}"})  # fmt: skip
                continue
            shas[sha] = len(records)
            records.append({"id": len(records), "source": src.ref, "label": src.label,
                            "caption": src.caption, "width": dec.width, "height": dec.height,
                            "format": dec.format})  # fmt: skip
            pixels.append(dec.pixels)
            hashes.append(dhash(dec.pixels))
            thumbs.append(colour_thumb(dec.pixels))
    dups = near_duplicates(hashes, cfg.near_dup_bits, thumbs)
    for i, j in sorted(dups.items()):
        other = records[j]
        extra = "" if records[i]["label"] == other["label"] else f" (labelled {other['label']!r})"
        rejects.append({"source": records[i]["source"],
                        "reason": f"near-duplicate of {other['source']}{extra}"})  # fmt: skip
    kept = [i for i in range(len(records)) if i not in dups]
    records = [records[i] for i in kept]
    for n, r in enumerate(records):
        r["id"] = n
    arr = np.stack([pixels[i] for i in kept]) if kept else np.zeros((0, 3, side, side), np.uint8)
    found = Counter(r["label"] for r in records if r["label"] is not None)
    if labels:
        for lab in labels:
            if not found.get(lab):
                rejects.append(
                    {"source": f"{lab}/", "reason": f"no readable image for label {lab!r}"}
                )
        final = [lab for lab in labels if found.get(lab)]
    else:
        final = sorted(found)
    if not records:
        raise DataError("no readable image in the data", "see the quarantine reasons in the report")
    if len(final) < 2:
        # Captions train beside labels; a project of captions alone (search only, no labels)
        # has no eval or label head yet, so it is refused rather than half-built.
        raise DataError(
            f"images for {len(final)} label(s) only; a project needs at least two labels",
            "add a folder per label, or a label column beside the captions",
        )
    return Curated(arr, records, rejects, final, side)
