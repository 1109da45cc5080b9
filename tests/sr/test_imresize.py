"""MATLAB imresize: compared with an independent per-pixel float64 evaluation of MATLAB's
formula (written out here, loop by loop, with MATLAB's mirrored border indices), with Pillow's
bicubic (same a = -0.5 kernel and antialias widening; Pillow renormalises at borders instead
of mirroring, so only interior pixels are compared), and against OpenCV's INTER_CUBIC, which
must differ."""

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


def mirror(j: int, n: int) -> int:
    """MATLAB's ``aux = [1:n, n:-1:1]; aux(mod(j - 1, 2n) + 1)``, written as a walk: reflect
    about the half-pixel edges until inside (1-based in, 1-based out)."""
    while j < 1 or j > n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j


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
            vs.append(line[mirror(j, n) - 1])  # symmetric padding, as MATLAB's imresize
        out[x - 1] = np.dot(ws, vs) / np.sum(ws)
    return out


def reference(image: np.ndarray, scale: float, round_between: bool,
              out_shape: tuple[int, int] | None = None) -> np.ndarray:
    h, w = image.shape
    oh, ow = out_shape or (math.ceil(h * scale), math.ceil(w * scale))
    sh, sw = (oh / h, ow / w) if out_shape else (scale, scale)
    a = image.astype(np.float64)

    def rows(x):  # resize along the height
        return np.stack([reference_1d(x[:, c], oh, sh) for c in range(x.shape[1])], axis=1)

    def cols(x):  # resize along the width
        return np.stack([reference_1d(x[r], ow, sw) for r in range(x.shape[0])], axis=0)

    def rnd(x):
        return np.clip(np.floor(x + 0.5), 0, 255) if round_between else x

    # MATLAB's dimensionOrder: [~, order] = sort(scale), a stable sort (height first on ties)
    first, second = (rows, cols) if sh <= sw else (cols, rows)
    return rnd(second(rnd(first(a))))


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


def test_border_taps_are_mirrored_not_clamped():
    """imresize([10 20 30 40], 2): output 1 sits at u = 0.75, taps j = -1..2 with weights
    -0.0234375, 0.2265625, 0.8671875, -0.0703125. MATLAB maps j = 0 to pixel 1 and j = -1 to
    pixel 2 (aux = [1:n, n:-1:1]), giving 9.0625; clamping j = -1 to pixel 1 would give
    9.296875. Likewise the last output is 40.9375 (40.703125 if clamped)."""
    got = imresize(np.array([[10.0, 20.0, 30.0, 40.0]]), 2)
    assert got[0, 0] == pytest.approx(9.0625, abs=1e-12)
    assert got[0, -1] == pytest.approx(40.9375, abs=1e-12)
    # a step at the border: mirrored taps read the inside of the image, so shrinking a
    # 1-pixel line next to the edge is not smeared as if the edge pixel were repeated
    line = np.zeros((1, 16))
    line[0, 1] = 1.0
    np.testing.assert_allclose(imresize(line, 1 / 4), reference(line, 1 / 4, False), atol=1e-12)


@pytest.mark.parametrize("out_shape", [(7, 20), (20, 7), (9, 9)])
def test_smaller_scale_dimension_goes_first(rng, out_shape):
    """MATLAB resizes the dimension with the smaller scale first (height on ties); with uint8
    rounding between the passes the order changes the result."""
    image = rng.integers(0, 256, (13, 11)).astype(np.uint8)
    got = imresize(image, output_shape=out_shape)
    np.testing.assert_array_equal(got, reference(image, 1.0, True, out_shape))


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


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_each_axis_is_the_tap_loop_to_the_bit(rng, dtype):
    """One axis is a sparse matrix product whose rows hold the taps in order (mirrored border
    taps kept apart, not summed): the same additions in the same order as a loop over taps,
    so every value, border ones too, is that loop's to the bit (a tile and the whole image,
    and results from before the sparse form, cannot drift apart)."""
    from pixelmill.sr.resample import _resize_axis, contributions

    def loop(image, axis, weights, indices):
        moved = np.moveaxis(image, axis, 0)
        out = np.zeros((weights.shape[0], *moved.shape[1:]))
        shape = (weights.shape[0],) + (1,) * (moved.ndim - 1)
        for k in range(weights.shape[1]):
            out += weights[:, k].reshape(shape) * moved[indices[:, k]]
        return np.moveaxis(out, 0, axis)

    top = 1.0 if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
    for shape in ((23, 17), (19, 26, 3)):
        image = (rng.random(shape) * top).astype(dtype)
        views = (image, image[::-1, 1::2])  # a non-contiguous view too
        for img in views:
            for axis in (0, 1):
                n = img.shape[axis]
                for out_len, scale, method in ((2 * n, 2.0, "bicubic"), (3 * n, 3.0, "lanczos3"),
                                               (-(-n // 3), 1 / 3, "bicubic"),
                                               (-(-n // 2), 0.5, "bilinear")):
                    w, i = contributions(n, out_len, scale, method)
                    got = _resize_axis(img, axis, w, i)
                    assert got.dtype == np.float64
                    assert got.tobytes() == loop(img, axis, w, i).tobytes(), (shape, axis, scale)


def test_inputs_outside_the_sparse_form_take_the_tap_loop(rng, monkeypatch):
    """Complex values are refused as before (float64 would drop the imaginary part), and
    where SciPy's kernel fuses multiply and add (an FMA build: other bits) the loop runs."""
    import pixelmill.sr.resample as resample

    with pytest.raises(TypeError):
        imresize(np.ones((8, 9), complex), 0.5)
    image = rng.integers(0, 256, (19, 23, 3)).astype(np.uint8)
    sparse = imresize(image, 1 / 3)
    monkeypatch.setattr(resample, "_SPARSE_UNFUSED", False)
    assert imresize(image, 1 / 3).tobytes() == sparse.tobytes()
