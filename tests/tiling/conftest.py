"""Fixtures for the tiling tests: structured test images and an in-process engine."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest


def make_image(shape: tuple[int, ...], dtype: str, seed: int = 7) -> np.ndarray:
    """A seeded image with structure (smoothed noise plus edges), in the dtype's full range."""
    rng = np.random.default_rng(seed)
    base = rng.random(shape).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 1.5).reshape(shape)
    base = 0.7 * base / max(float(base.max()), 1e-6) + 0.3 * (rng.random(shape) > 0.8)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    block = ((yy // 9 + xx // 7) % 2).astype(np.float32)
    if len(shape) == 3:
        block = block[..., None]
    img = np.clip(0.6 * base + 0.4 * block, 0, 1)
    if dtype == "float32":
        return img.astype(np.float32)
    top = np.iinfo(dtype).max
    return np.round(img * top).astype(dtype)


class InlineEngine:
    """The Engine protocol, run in this process (lets tests use memory:// stores)."""

    name = "inline"
    workers = 1

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any], *, timeout=None,
            batch_size=None) -> Iterator[tuple[int, Any]]:
        for i, unit in enumerate(list(units)):
            yield i, fn(unit)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def inline_engine() -> InlineEngine:
    return InlineEngine()
