"""Small generated images for the image sub-model tests: Pillow-drawn shapes whose colour and
form give the label (so a model can learn them in seconds), saved as real JPEG and PNG files,
plus the bad files a real photo folder has."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

LABELS = ("red_circle", "blue_square", "green_triangle")


def shape_image(label: str, seed: int, size: int = 40) -> Image.Image:
    rng = random.Random(seed)
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    s = rng.randint(size // 3, size // 2)
    x, y = rng.randint(1, size - s - 1), rng.randint(1, size - s - 1)
    jitter = lambda c: tuple(max(0, min(255, v + rng.randint(-30, 30))) for v in c)  # noqa: E731
    if label == "red_circle":
        d.ellipse([x, y, x + s, y + s], fill=jitter((210, 30, 30)))
    elif label == "blue_square":
        d.rectangle([x, y, x + s, y + s], fill=jitter((30, 40, 210)))
    else:
        d.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=jitter((30, 170, 40)))
    for _ in range(rng.randint(0, 3)):  # clutter, so the task is not a single pixel check
        cx, cy = rng.randint(0, size), rng.randint(0, size)
        d.point((cx, cy), fill=(rng.randint(0, 255), 0, rng.randint(0, 255)))
    return im


def encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def exif_with_gps() -> bytes:
    ex = Image.Exif()
    ex[0x010F] = "ACME Camera"  # Make
    ex[0xA431] = "SERIAL-123456"  # BodySerialNumber
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    ex[0x8825] = gps
    return ex.tobytes()


def make_image_folder(root: Path, per_label: int = 30, size: int = 40,
                      bad: bool = True) -> Path:  # fmt: skip
    """``root/<label>/*.jpg|png`` (+ bad files when ``bad``); returns ``root``."""
    for li, label in enumerate(LABELS):
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            im = shape_image(label, seed=li * 10_000 + i, size=size)
            if i % 3 == 0:
                (d / f"{label}_{i}.png").write_bytes(encode(im, "PNG"))
            else:
                (d / f"{label}_{i}.jpg").write_bytes(encode(im, "JPEG", quality=92))
    if bad:
        red = root / LABELS[0]
        good = (red / f"{LABELS[0]}_1.jpg").read_bytes()
        (red / "truncated.jpg").write_bytes(good[: len(good) // 2])
        (red / "notes.jpg").write_bytes(b"this is a text file, not a photo\n")
        (red / "tiny.png").write_bytes(encode(Image.new("RGB", (4, 4), (200, 0, 0)), "PNG"))
        (red / "copy_of_1.jpg").write_bytes(good)  # an exact duplicate
        near = Image.open(io.BytesIO(good)).convert("RGB")
        (red / "resaved_1.png").write_bytes(encode(near, "PNG"))  # a near-duplicate re-save
        gps = shape_image(LABELS[1], seed=999_999, size=size)
        (root / LABELS[1] / "with_gps.jpg").write_bytes(encode(gps, "JPEG", exif=exif_with_gps()))
        (root / "empty_label").mkdir(exist_ok=True)
    return root
