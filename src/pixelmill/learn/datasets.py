"""Small labelled image sets made on the spot (no download): digits and generated classes.

* :func:`write_digits` writes scikit-learn's bundled ``load_digits`` (1,797 8×8 images, 10
  classes) as PNG files ``<out>/<digit>/<index>.png`` — the known-result set of the tests.
* :func:`color_classes`, :func:`texture_classes` and :func:`orientation_classes` generate
  images whose classes differ in exactly one property (colour, texture, edge orientation)
  while the others vary at random, so a feature family must separate the classes it is
  designed for and nothing else helps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "COLOR_CLASSES",
    "ORIENTATION_CLASSES",
    "TEXTURE_CLASSES",
    "color_classes",
    "color_texture_classes",
    "orientation_classes",
    "texture_classes",
    "write_digits",
    "write_labelled",
]

COLOR_CLASSES = ("red", "green", "blue", "yellow", "purple")
TEXTURE_CLASSES = ("noise", "stripes", "checker", "blobs")
ORIENTATION_CLASSES = ("deg0", "deg45", "deg90", "deg135")

_HUES = {"red": 0.0, "yellow": 60.0, "green": 120.0, "blue": 240.0, "purple": 285.0}


def write_labelled(out_dir: str, images: Sequence[np.ndarray], labels: Sequence[str],
                   fmt: str = "png") -> list[str]:
    """Write ``<out_dir>/<label>/<index>.<fmt>``; return the paths."""
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = os.path.join(out_dir, str(label))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.{fmt}")
        arr = image[:, :, ::-1] if image.ndim == 3 else image  # RGB -> BGR for OpenCV
        if not cv2.imwrite(path, np.ascontiguousarray(arr)):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def write_digits(out_dir: str, limit: int | None = None) -> list[str]:
    """Write scikit-learn's digits as 8×8 uint8 PNGs (0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = [str(t) for t in digits.target]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return write_labelled(out_dir, list(images), labels)


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A gray texture in [0, 1] with mean ~0.5."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "noise":
        t = rng.random((size, size), dtype=np.float32)
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(5.0, 9.0)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period
                               + rng.uniform(0, 2 * np.pi))
    elif kind == "checker":
        period = int(rng.integers(4, 8))
        ox, oy = rng.integers(0, period, 2)
        t = (((xx + ox) // period + (yy + oy) // period) % 2).astype(np.float32)
    elif kind == "blobs":
        small = rng.random((max(2, size // 12),) * 2, dtype=np.float32)
        t = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return t.astype(np.float32)


def _tint(gray: np.ndarray, hue: float, sat: float) -> np.ndarray:
    """Colour a gray texture with one hue: value = texture, saturation = ``sat``."""
    hsv = np.stack([np.full_like(gray, hue), np.full_like(gray, sat),
                    0.25 + 0.7 * gray], axis=2).astype(np.float32)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def color_classes(n_per_class: int, size: int = 32, seed: int = 0):
    """Images whose class is their hue; texture (any of :data:`TEXTURE_CLASSES`) is random."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_per_class):
        for name in COLOR_CLASSES:
            kind = TEXTURE_CLASSES[int(rng.integers(len(TEXTURE_CLASSES)))]
            hue = (_HUES[name] + rng.uniform(-8, 8)) % 360
            images.append(_tint(_texture(kind, size, rng), hue, rng.uniform(0.6, 0.9)))
            labels.append(name)
    return images, labels


def texture_classes(n_per_class: int, size: int = 32, seed: int = 0):
    """Images whose class is their texture; hue and saturation are random."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_per_class):
        for name in TEXTURE_CLASSES:
            images.append(_tint(_texture(name, size, rng), rng.uniform(0, 360),
                                rng.uniform(0.2, 0.9)))
            labels.append(name)
    return images, labels


def orientation_classes(n_per_class: int, size: int = 32, seed: int = 0):
    """Stripes whose class is their orientation (0°, 45°, 90°, 135°); period, phase, hue vary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images, labels = [], []
    for _ in range(n_per_class):
        for name in ORIENTATION_CLASSES:
            theta = np.deg2rad(float(name[3:]) + rng.uniform(-5, 5))
            period = rng.uniform(5.0, 10.0)
            t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period
                                   + rng.uniform(0, 2 * np.pi))
            images.append(_tint(t.astype(np.float32), rng.uniform(0, 360), rng.uniform(0.2, 0.9)))
            labels.append(name)
    return images, labels


def color_texture_classes(n_per_class: int, size: int = 32, seed: int = 0):
    """Images whose class is ``<colour>_<texture>`` (20 classes): both properties matter."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_per_class):
        for color in COLOR_CLASSES:
            for kind in TEXTURE_CLASSES:
                hue = (_HUES[color] + rng.uniform(-8, 8)) % 360
                images.append(_tint(_texture(kind, size, rng), hue, rng.uniform(0.6, 0.9)))
                labels.append(f"{color}_{kind}")
    return images, labels
