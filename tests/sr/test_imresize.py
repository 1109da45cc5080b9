"""MATLAB imresize: compared with an independent per-pixel float64 evaluation of MATLAB's
formula (written out here, loop by loop), with Pillow's bicubic (same a = -0.5 kernel and
antialias widening; Pillow renormalises at borders instead of clamping, so only interior
pixels are compared), and against OpenCV's INTER_CUBIC, which must differ."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelmill.errors import InvalidParameterError
from pixelmill.sr.resample import imresize, resize_opencv_cubic


def keys_cubic(x: float) -> float:
    # Keys (1981) with a = -0.5, as printed in MATLAB's imresize.m
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def reference_1d(line: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """One axis, per output pixel, straight from the formula (1-based like MATLAB)."""
    n = len(line)
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros(out_len)
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        lo = math.floor(u - width / 2)
        ws, vs = [], []
        for j in range(lo, lo + math.ceil(width) + 2):
            w = scale * keys_cubic(scale * (u - j)) if scale < 1 else keys_cubic(u - j)
            ws.append(w)
            vs.append(line[min(max(j, 1), n) - 1])  # replicated end-points
        out[x - 1] = np.dot(ws, vs) / np.sum(ws)
    return out


def reference(image: np.ndarray, scale: float, round_between: bool) -> np.ndarray:
    h, w = image.shape
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    a = image.astype(np.float64)
    tmp = np.stack([reference_1d(a[:, c], oh, scale) for c in range(w)], axis=1)
    if round_between:
        tmp = np.clip(np.floor(tmp + 0.5), 0, 255)
    out = np.stack([reference_1d(tmp[r], ow, scale) for r in range(oh)], axis=0)
    return np.clip(np.floor(out + 0.5), 0, 255) if round_between else out


@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 2, 1 / 3, 1 / 4])
def test_float_matches_per_pixel_formula(rng, scale):
    image = rng.random((13, 17))
    got = imresize(image, scale)
    np.testing.assert_allclose(got, reference(image, scale, round_between=False), atol=1e-12)


@pytest.mark.parametrize("scale", [2, 1 / 3])
def test_uint8_rounds_between_passes(rng, scale):
    image = rng.integers(0, 256, (15, 12)).astype(np.uint8)
    got = imresize(image, scale)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, reference(image, scale, round_between=True))


def test_uint8_rounding_between_passes_matters(rng):
    image = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    once = np.clip(np.floor(reference(image, 0.5, round_between=False) + 0.5), 0, 255)
    assert not np.array_equal(imresize(image, 0.5), once)


@pytest.mark.parametrize("scale", [2.0, 0.5, 0.25])
def test_interior_matches_pillow_bicubic(astronaut, scale):
    gray = astronaut[..., 1].astype(np.float32)[:128, :160]
    h, w = gray.shape
    size = (math.ceil(w * scale), math.ceil(h * scale))
    pil = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.BICUBIC), np.float64)
    ours = imresize(gray.astype(np.float64), scale)
    m = math.ceil(2 * max(scale, 1 / scale)) + 2  # stay clear of the border treatment
    np.testing.assert_allclose(ours[m:-m, m:-m], pil[m:-m, m:-m], atol=2e-3)


def test_opencv_cubic_is_a_different_filter(astronaut):
    image = astronaut[:64, :64]
    ours = imresize(image, 2)
    cv = resize_opencv_cubic(image, 2)
    np.testing.assert_array_equal(cv, cv2.resize(image, (128, 128), interpolation=cv2.INTER_CUBIC))
    assert ours.shape == cv.shape
    assert np.abs(ours.astype(int) - cv.astype(int)).max() > 2


def test_rgb_channels_are_independent(astronaut):
    image = astronaut[:40, :50]
    got = imresize(image, 1 / 3)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], imresize(image[..., c], 1 / 3))
    assert got.shape == (14, 17, 3)  # ceil(40/3), ceil(50/3), as MATLAB


def test_constant_image_is_preserved_and_lanczos_runs():
    flat = np.full((9, 11), 77, np.uint16)
    for method in ("bicubic", "lanczos2", "lanczos3", "bilinear"):
        assert np.all(imresize(flat, 0.37, method=method) == 77)
        assert np.all(imresize(flat, 2.5, method=method) == 77)


def test_lanczos3_matches_pillow_interior(astronaut):
    gray = astronaut[..., 0].astype(np.float32)[:96, :96]
    pil = np.asarray(Image.fromarray(gray, mode="F").resize((48, 48), Image.LANCZOS), np.float64)
    ours = imresize(gray.astype(np.float64), 0.5, method="lanczos3")
    np.testing.assert_allclose(ours[8:-8, 8:-8], pil[8:-8, 8:-8], atol=5e-3)


def test_output_shape_and_errors(rng):
    image = rng.random((10, 20)).astype(np.float32)
    out = imresize(image, output_shape=(5, 7))
    assert out.shape == (5, 7) and out.dtype == np.float32
    with pytest.raises(InvalidParameterError, match="method"):
        imresize(image, 2, method="bicubik")
    with pytest.raises(InvalidParameterError, match="scale"):
        imresize(image, 0)
