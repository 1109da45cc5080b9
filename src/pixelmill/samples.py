"""A sample collection for demos and benchmarks, built from scikit-image's bundled photographs.

:func:`build_collection` turns the photographs that ship with scikit-image (no download)
into a few hundred images of varied size, crop, colour and format — JPEG, PNG (8 and 16
bit), TIFF, WebP — in one folder per source photograph (the folder is the label), plus a few
files that are not readable images (truncated, not an image, empty, a decompression bomb
header). Seeded: the same call builds the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BAD_FILES", "SampleCollection", "build_collection", "source_photos"]

#: the photographs used (scikit-image names); those missing from an install are skipped
_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page",
            "immunohistochemistry", "text", "brick", "grass", "gravel", "horse")

#: relpath -> why it is not a readable image
BAD_FILES = {
    "bad/truncated.jpg": "a JPEG cut after its first 300 bytes",
    "bad/not_an_image.jpg": "plain text with an image extension",
    "bad/empty.png": "an empty file",
    "bad/bomb.png": "a PNG header claiming 100000×100000 pixels",
}


@dataclass(frozen=True)
class SampleCollection:
    root: Path
    images: int  #: readable images written
    bad: int  #: unreadable files written


def source_photos() -> dict[str, np.ndarray]:
    """The bundled scikit-image photographs available here (uint8, gray or RGB)."""
    import warnings

    from skimage import data

    out = {}
    for name in _SOURCES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = np.asarray(getattr(data, name)())
        except Exception:  # not bundled in this version / needs a download
            continue
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        out[name] = np.ascontiguousarray(img.astype(np.uint8))
    return out


def _bomb_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def build_collection(root: str | Path, n: int = 300, *, seed: int = 0,
                     max_side: int = 1600) -> SampleCollection:
    """Write ``n`` varied images plus :data:`BAD_FILES` under ``root``; returns what was written.

    Sizes range from 96 px to ``max_side`` px on the long side; about 55 % JPEG, 25 % PNG
    (some 16-bit), 12 % TIFF and 8 % WebP; some are converted to gray, some rotated by 90°.
    """
    import cv2

    from pixelmill import codecs

    root = Path(root)
    rng = np.random.default_rng(seed)
    sources = source_photos()
    names = sorted(sources)
    written = 0
    for i in range(n):
        name = names[i % len(names)]
        img = sources[name]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = img[y:y + ch, x:x + cw]
        long_side = int(rng.integers(96, max_side + 1))
        s = long_side / max(ch, cw)
        size = (max(1, round(cw * s)), max(1, round(ch * s)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        if img.ndim == 3 and rng.random() < 0.1:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if rng.random() < 0.1:
            img = np.ascontiguousarray(np.rot90(img))
        r = rng.random()
        if r < 0.55:
            fmt, quality = "jpg", int(rng.integers(70, 96))
        elif r < 0.80:
            fmt, quality = "png", None
            if rng.random() < 0.3:
                img = img.astype(np.uint16) * 257
        elif r < 0.92:
            fmt, quality = "tif", None
        else:
            fmt, quality = "webp", int(rng.integers(70, 96))
        path = root / name / f"{name}_{i:04d}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(codecs.encode(img, fmt, quality=quality))
        written += 1
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    good_jpeg = codecs.encode(sources[names[0]], "jpg", quality=90)
    (root / "bad/truncated.jpg").write_bytes(good_jpeg[:300])
    (root / "bad/not_an_image.jpg").write_bytes(b"this is a text file, not a JPEG\n" * 10)
    (root / "bad/empty.png").write_bytes(b"")
    (root / "bad/bomb.png").write_bytes(_bomb_png())
    return SampleCollection(root, written, len(BAD_FILES))
