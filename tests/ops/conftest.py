"""Fixtures and helpers for the op tests: which ops are ours, example parameters, test images."""

from __future__ import annotations

import numpy as np
import pytest

from pixelmill.ops import registry

#: the op families these tests cover (features and sr are tested in tests/learn and tests/sr)
FAMILY_MODULES = ("geometry", "color", "filters", "edges", "morphology", "segmentation", "measure")

#: parameters an op needs for the smoke tests (required ones, or a non-default branch)
EXAMPLE_PARAMS: dict[str, dict] = {
    "resize": {"factor": 0.5},
    "crop": {"x": 3, "y": 2, "width": 20, "height": 10},
    "center_crop": {"width": 20, "height": 10},
    "pad": {"top": 1, "bottom": 2, "left": 3, "right": 4, "mode": "reflect"},
    "rotate": {"angle": 30.0},
    "affine": {"matrix": [1.0, 0.2, 2.0, 0.1, 0.9, -1.0]},
    "threshold": {"method": "adaptive_mean", "block_size": 7},
    "slic": {"n_segments": 20},
}

#: output dtype by op, where it is not the input's (None = the input's)
OUTPUT_DTYPE = {
    "laplacian": np.float32,
    "sobel": np.float32,
    "scharr": np.float32,
    "harris": np.float32,
    "canny": np.uint8,
    "skeletonize": np.uint8,
    "threshold": np.uint8,
}

DTYPES = ("uint8", "uint16", "float32")


def our_ops() -> list[str]:
    return sorted(
        name for name, spec in registry().items()
        if spec.func.__module__.rsplit(".", 1)[-1] in FAMILY_MODULES
    )


def make_image(rng: np.random.Generator, dtype: str, channels: int = 1,
               shape: tuple[int, int] = (48, 64), smooth: float = 0.0) -> np.ndarray:
    """A random image in the dtype's nominal range (float32 in [0, 1])."""
    from scipy import ndimage

    size = shape if channels == 1 else (*shape, channels)
    x = rng.random(size)
    if smooth:
        sig = (smooth, smooth) if channels == 1 else (smooth, smooth, 0)
        x = ndimage.gaussian_filter(x, sig)
        x = (x - x.min()) / (x.max() - x.min())
    if dtype == "uint8":
        return np.round(x * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.round(x * 65535).astype(np.uint16)
    return x.astype(np.float32)


@pytest.fixture
def image_factory(rng):
    def factory(dtype="uint8", channels=1, shape=(48, 64), smooth=0.0):
        return make_image(rng, dtype, channels, shape, smooth)

    return factory
