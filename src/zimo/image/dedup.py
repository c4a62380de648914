"""Exact and near-duplicate images.

Exact: SHA-256 of the decoded pixels (the same photo saved as PNG and as JPEG at full quality
is caught by the perceptual hash instead). Near: a 64-bit difference hash (dHash: is each
pixel of a 9x8 grey thumbnail brighter than its right neighbour), written here in a few lines
of PIL + numpy rather than adding the imagehash package for one function. Pairs within
``max_bits`` Hamming distance are found through band buckets (pigeonhole: with max_bits + 1
bands, two hashes that close agree exactly on at least one band), so 50,000 images do not
take 50,000² comparisons. dHash sees only grey-level structure, so two simple pictures with
the same layout (a red disc and a blue disc at one spot) can hash alike: a candidate pair is
confirmed on 8x8 colour thumbnails (mean absolute difference in 0-255 levels).
"""

from __future__ import annotations

import hashlib

import numpy as np


def dhash(pixels: np.ndarray) -> int:
    """64-bit dHash of a (3, H, W) uint8 image."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0))).convert("L")
    a = np.asarray(im.resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def colour_thumb(pixels: np.ndarray) -> np.ndarray:
    """8x8 RGB thumbnail (float32, 0-255) for confirming a near-duplicate pair."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    return np.asarray(im.resize((8, 8), Image.Resampling.BOX), dtype=np.float32)


def pixel_sha(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def near_duplicates(hashes: list[int], max_bits: int, thumbs: list[np.ndarray] | None = None,
                    max_colour_diff: float = 12.0) -> dict[int, int]:  # fmt: skip
    """{index: index of the earlier image it duplicates} for hashes within ``max_bits`` (and,
    with ``thumbs``, colour thumbnails within ``max_colour_diff`` levels on average)."""
    if max_bits <= 0 or len(hashes) < 2:
        return {}
    h = np.array(hashes, dtype=np.uint64)
    n_bands = max_bits + 1
    width = 64 // n_bands
    dup: dict[int, int] = {}
    for b in range(n_bands):
        lo = b * width
        bits = 64 - lo if b == n_bands - 1 else width
        key = (h >> np.uint64(lo)) & np.uint64((1 << bits) - 1)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        ends = np.r_[starts[1:], len(ks)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            members = np.sort(order[s:e])
            for j, i in enumerate(members[1:], 1):
                if int(i) in dup:
                    continue
                earlier = members[:j]
                dist = np.array([bin(int(x)).count("1") for x in (h[earlier] ^ h[i])])
                close = earlier[dist <= max_bits]
                close = [
                    int(c)
                    for c in close
                    if int(c) not in dup
                    and (
                        thumbs is None
                        or float(np.abs(thumbs[int(c)] - thumbs[int(i)]).mean()) <= max_colour_diff
                    )
                ]
                if close:
                    dup[int(i)] = close[0]
    return dup
