"""The fast paths of the ops (benchmarks/bench_ops.py) give exactly the results of the plain
formulas they replaced: OpenCV copies for NumPy copies, lookup tables for float64 images,
blocks of rows for whole-image passes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pixelmill.ops import get_op
from pixelmill.ops._common import LUMA_601, NUMPY_PAD, cast_like, gray_float, pad_border
from pixelmill.ops.filters import bilateral_reference
from tests.ops.conftest import make_image

MODES = list(NUMPY_PAD)
CHANNELS = (0, 1, 2, 3, 4, 5)  # 0: an H×W array


def image(dtype: str, channels: int, shape=(23, 31), seed=0) -> np.ndarray:
    img = make_image(np.random.default_rng(seed), dtype, max(channels, 1), shape, smooth=1.0)
    return img if channels == 0 else img.reshape((*shape, channels))  # make_image: 1 is H×W


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("mode", MODES)
def test_pad_border_is_numpy_pad(dtype, mode):
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (3, 5), (6, 4, 1), (4, 6, 3), (4, 6, 4), (4, 6, 5)]:
        a = (rng.random(shape) * 300).astype(dtype)
        cvals = (0.0, 5.0, -3.0, 300.5) if mode == "constant" else (0.0,)
        for cval, (t, b, left, r) in itertools.product(cvals, itertools.product((0, 2, 7), repeat=4)):
            pads = [(t, b), (left, r)] + [(0, 0)] * (a.ndim - 2)
            kw = {"constant_values": cval} if mode == "constant" else {}
            with np.errstate(all="ignore"):
                want = np.pad(a, pads, mode=NUMPY_PAD[mode], **kw)
                got = pad_border(a, (t, b, left, r), mode, cval)
            assert got.flags.c_contiguous and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("channels", CHANNELS)
def test_flip_and_right_angle_rotations_are_numpy_copies(channels):
    img = image("uint16", channels)
    for axis, axes in (("horizontal", (1,)), ("vertical", (0,)), ("both", (0, 1))):
        got = get_op("flip")(img, axis=axis)
        np.testing.assert_array_equal(got, np.flip(img, axes))
        assert got.shape == img.shape
    for angle in (90.0, 180.0, 270.0, -90.0, 720.0):
        want = np.rot90(img, int(angle // 90) % 4)
        got = get_op("rotate")(img, angle=angle)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("factor", [0.5, 0.75, 1 / 3, 0.3, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("channels", [0, 3, 5])
def test_nearest_resize_is_index_selection(factor, channels):
    from pixelmill.ops.geometry import _nearest_index

    for shape in [(23, 31), (64, 48), (7, 100)]:
        img = image("float32", channels, shape)
        rows = _nearest_index(shape[0], max(1, round(shape[0] * factor)), factor)
        cols = _nearest_index(shape[1], max(1, round(shape[1] * factor)), factor)
        got = get_op("resize")(img, factor=factor, method="nearest")
        np.testing.assert_array_equal(got, img[rows][:, cols])


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("channels", [3, 4])
def test_grayworld_tables_are_the_float64_formula(dtype, channels):
    img = image(dtype, channels, (40, 57))
    rgb = img[..., :3].astype(np.float64)
    means = rgb.reshape(-1, 3).mean(axis=0)
    gains = np.where(means > 0, means.mean() / np.where(means > 0, means, 1.0), 1.0)
    want = img.copy()
    want[..., :3] = cast_like(rgb * gains, img.dtype)
    np.testing.assert_array_equal(get_op("white_balance_grayworld")(img), want)


@pytest.mark.parametrize("channels", CHANNELS)
def test_equalize_uint8_lut_is_per_channel(channels):
    from pixelmill.ops.color import _equalize_channel

    img = image("uint8", channels)
    if channels:
        img[..., -1] = 9  # a constant channel stays as it is
    got = get_op("equalize_hist")(img)
    planes = img[..., None] if img.ndim == 2 else img
    want = np.stack([_equalize_channel(np.ascontiguousarray(planes[..., i]), 256)
                     for i in range(planes.shape[2])], -1).reshape(img.shape)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("channels", CHANNELS)
def test_tophat_blackhat_floor_at_zero(dtype, channels):
    from pixelmill.ops.morphology import _closing, _opening

    img = image(dtype, channels)
    for mode in ("reflect", "wrap", "constant"):
        opened, closed = _opening(img, "rect", 5, mode), _closing(img, "rect", 5, mode)
        if img.dtype.kind == "u":
            top = np.where(img > opened, img - opened, 0).astype(img.dtype)
            black = np.where(closed > img, closed - img, 0).astype(img.dtype)
        else:
            top, black = np.maximum(img - opened, 0), np.maximum(closed - img, 0)
        np.testing.assert_array_equal(get_op("tophat")(img, size=5, mode=mode), top)
        np.testing.assert_array_equal(get_op("blackhat")(img, size=5, mode=mode), black)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", [3, 5])
def test_joint_median_is_per_channel(dtype, channels, size):
    img = image(dtype, channels)
    got = get_op("median")(img, size=size, mode="mirror")
    if img.ndim == 2:
        want = get_op("median")(img[..., None], size=size, mode="mirror")[..., 0]
    else:
        want = np.stack([get_op("median")(np.ascontiguousarray(img[..., i]), size=size,
                                          mode="mirror") for i in range(img.shape[2])], -1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_gray_and_ycbcr_by_rows_are_the_whole_image_formulas(dtype):
    from pixelmill.ops.color import _RGB_FROM_YCBCR, _YCBCR

    img = image(dtype, 3, (150, 61))
    f = img.astype(np.float32)
    gray = f[..., 0] * LUMA_601[0] + f[..., 1] * LUMA_601[1] + f[..., 2] * LUMA_601[2]
    np.testing.assert_array_equal(gray_float(img), gray)
    np.testing.assert_array_equal(get_op("convert")(img, to="gray"), cast_like(gray, img.dtype))
    off = (127.5 + 0.5 if dtype == "uint8" else 32767.5 + 0.5) if dtype != "float32" else 0.5
    shift = np.array([0.0, off, off])
    ycc = get_op("convert")(img, to="ycbcr")
    np.testing.assert_array_equal(ycc, cast_like(img.astype(np.float64) @ _YCBCR.T + shift,
                                                 img.dtype))
    back = cast_like((ycc.astype(np.float64) - shift) @ _RGB_FROM_YCBCR.T, img.dtype)
    np.testing.assert_array_equal(get_op("convert")(ycc, to="rgb", source="ycbcr"), back)


def _bilateral_whole_image(image, diameter, sigma_color, sigma_space, mode):
    """The definition as whole-image passes (the implementation before it went by rows)."""
    r = diameter // 2
    src = image.astype(np.float64)
    if src.ndim == 2:
        src = src[..., None]
    h, w = src.shape[:2]
    padded = np.pad(src, [(r, r), (r, r), (0, 0)], mode=NUMPY_PAD[mode])
    acc, wsum = np.zeros_like(src), np.zeros((h, w, 1))
    gc, gs = -0.5 / (sigma_color * sigma_color), -0.5 / (sigma_space * sigma_space)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            d2 = dy * dy + dx * dx
            if np.sqrt(d2) > r:
                continue
            shifted = padded[r + dy : r + dy + h, r + dx : r + dx + w]
            diff = np.abs(shifted - src).sum(axis=2, keepdims=True)
            weight = np.exp(d2 * gs + diff * diff * gc)
            acc += weight * shifted
            wsum += weight
    out = acc / wsum
    return out if image.ndim == 3 else out[..., 0]


@pytest.mark.parametrize("channels", [0, 1, 3, 5])
@pytest.mark.parametrize("mode", ["reflect", "wrap"])
def test_bilateral_by_rows_is_the_whole_image_definition(channels, mode):
    img = image("float32", channels, (70, 45))
    for diameter, sigma_color in ((3, 0.1), (7, 0.3)):
        np.testing.assert_array_equal(
            bilateral_reference(img, diameter, sigma_color, 2.0, mode),
            _bilateral_whole_image(img, diameter, sigma_color, 2.0, mode))


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_gradient_magnitude_by_rows_and_in_place_unsharp(dtype):
    import cv2

    img = image(dtype, 3, (90, 41))
    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    mag = gx.astype(np.float64) ** 2 + gy.astype(np.float64) ** 2
    np.testing.assert_array_equal(get_op("sobel")(img), np.sqrt(mag).astype(np.float32))
    if dtype == "float32":
        from pixelmill.ops.filters import _gaussian_blur

        blurred = _gaussian_blur(img, 1.5, 4.0, "reflect")
        np.testing.assert_array_equal(get_op("unsharp_mask")(img, radius=1.5, amount=0.7),
                                      img + 0.7 * (img - blurred))
