"""Regression tests from an audit of the per-image ops: edge cases the taxonomy did not reach
(byte-swapped and channel-less arrays, uint8 bilateral in every border mode, 2-channel median,
nearest resizing by non-integer factors, pad's fill value, float statistics far from zero)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from pixelmill.errors import InvalidParameterError
from pixelmill.ops import get_op
from pixelmill.ops.filters import bilateral_reference
from tests.ops.conftest import make_image


# ---- bilateral (uint8): OpenCV's accelerated path truncated in some border modes ------------
@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
def test_bilateral_uint8_gray_rounds_to_nearest_in_every_mode(mode):
    """A gray uint8 image at least 16 pixels wide went through an OpenCV path that truncated in
    the mirror, nearest and constant modes: every result off by up to 1 level, 0.47 darker on
    average than the definition it documents (reflect and wrap rounded)."""
    image = make_image(np.random.default_rng(5), "uint8", 1, (50, 60), smooth=1.0)
    got = get_op("bilateral")(image, diameter=5, sigma_color=25.0, sigma_space=2.0, mode=mode)
    want = bilateral_reference(image, 5, 25.0, 2.0, mode)
    diff = got - want
    assert np.abs(diff).max() <= 0.5 + 1e-6
    assert abs(diff.mean()) < 0.05


@pytest.mark.parametrize("mode", ["mirror", "nearest", "constant"])
def test_bilateral_uint8_tile_narrower_than_16_equals_whole(mode):
    """The same path made a tile narrower than 16 pixels (rounded) differ from the whole image
    (truncated) although it had its full halo: the tiler's contract broke."""
    spec = get_op("bilateral")
    params = {"diameter": 5, "mode": mode}
    halo = int(spec.halo(spec.bind(params)))
    image = make_image(np.random.default_rng(5), "uint8", 1, (50, 60), smooth=1.0)
    whole = spec(image, **params)
    part = spec(image[:, : 12 + halo], **params)
    np.testing.assert_array_equal(part[:, :12], whole[:, :12])
    part = spec(image[:, 20 - halo : 32 + halo], **params)
    np.testing.assert_array_equal(part[:, halo : halo + 12], whole[:, 20:32])


# ---- median: OpenCV's large-kernel path takes 1, 3 or 4 channels ------------------------------
@pytest.mark.parametrize("size", [7, 9])
@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_median_uint8_gray_alpha_large_window(size, mode):
    """uint8 gray + alpha with size > 5 raised an OpenCV assertion (medianBlur: cn == 1, 3, 4)."""
    image = make_image(np.random.default_rng(2), "uint8", 2, (20, 25))
    got = get_op("median")(image, size=size, mode=mode)
    want = ndimage.median_filter(image, size=(size, size, 1), mode=mode)
    np.testing.assert_array_equal(got, want)


# ---- resize nearest by a non-integer factor ----------------------------------------------
@pytest.mark.parametrize("factor", [0.75, 1.25, 1.5, 2.5, 0.3])
def test_resize_nearest_matches_skimage_and_scipy(factor):
    """Output pixel i takes input floor((i + 0.5) / factor). OpenCV's INTER_NEAREST_EXACT
    works in 16.16 fixed point from the two sizes and picked the other side of a pixel boundary
    for some output centres (15 of 90 columns at 0.75)."""
    from skimage.transform import rescale

    image = make_image(np.random.default_rng(0), "float32", 1, (40, 60))
    got = get_op("resize")(image, factor=factor, method="nearest")
    np.testing.assert_array_equal(got, rescale(image, factor, order=0, mode="edge",
                                               anti_aliasing=False))
    np.testing.assert_array_equal(got, ndimage.zoom(image, factor, order=0, grid_mode=True,
                                                    mode="nearest"))


@pytest.mark.parametrize("factor", [0.75, 1.5, 2.5])
def test_resize_nearest_non_integer_factor_is_local(factor):
    """A window aligned on the factor's period, from a crop with the declared halo, equals the
    whole image's window (it differed at the boundary ties: tiled != whole)."""
    from fractions import Fraction

    spec = get_op("resize")
    params = {"factor": factor, "method": "nearest"}
    step = Fraction(factor).limit_denominator(1000).denominator
    halo = math.ceil(spec.halo(spec.bind(params)) / step) * step
    image = make_image(np.random.default_rng(5), "uint8", 3, (96, 120))
    whole = spec(image, **params)
    for y0, y1, x0, x1 in ((20, 60, 40, 80), (0, 40, 0, 40), (60, 96, 80, 120)):
        y0, y1, x0, x1 = (v // step * step for v in (y0, y1, x0, x1))
        sy0, sx0 = max(0, y0 - halo), max(0, x0 - halo)
        sy1, sx1 = min(96, y1 + halo), min(120, x1 + halo)
        part = spec(image[sy0:sy1, sx0:sx1], **params)
        oy, ox = round((y0 - sy0) * factor), round((x0 - sx0) * factor)
        ny, nx = round((y1 - y0) * factor), round((x1 - x0) * factor)
        want = whole[round(y0 * factor) : round(y0 * factor) + ny,
                     round(x0 * factor) : round(x0 * factor) + nx]
        np.testing.assert_array_equal(part[oy : oy + ny, ox : ox + nx], want)


def test_resize_nearest_integer_factors_unchanged():
    image = make_image(np.random.default_rng(1), "uint16", 3, (21, 30))
    op = get_op("resize")
    np.testing.assert_array_equal(op(image, factor=0.5, method="nearest"), image[1::2, 1::2])
    np.testing.assert_array_equal(op(image, factor=1 / 3, method="nearest"), image[1::3, 1::3])
    np.testing.assert_array_equal(op(image, factor=3.0, method="nearest"),
                                  image.repeat(3, axis=0).repeat(3, axis=1))
    assert op(image, factor=1e-7, method="nearest").shape == (1, 1, 3)


# ---- pad: the fill value follows the dtype policy ----------------------------------------------
@pytest.mark.parametrize(("dtype", "cval", "want"), [
    ("uint8", -1.0, 0), ("uint8", 300.0, 255), ("uint8", 0.6, 1), ("uint8", 254.7, 255),
    ("uint16", 70000.0, 65535), ("uint16", -5.0, 0), ("float32", -2.5, -2.5),
])
def test_pad_cval_is_rounded_and_clipped(dtype, cval, want):
    """cval was cast with NumPy's astype: -1 became 255 and 300 became 44 for uint8 (rotate and
    affine, through OpenCV, already saturate)."""
    image = np.full((3, 4), 100, dtype)
    out = get_op("pad")(image, top=1, left=2, cval=cval)
    assert out.dtype == image.dtype
    assert out[0, 0] == want and out[1, 1] == want
    np.testing.assert_array_equal(out[1:, 2:], image)


# ---- channel_stats: no catastrophic cancellation ----------------------------------------------
@pytest.mark.parametrize(("dtype", "offset", "spread"), [
    ("float32", 1e4, 0.1), ("float32", 1e6, 0.1), ("uint16", 60000, 3), ("float32", 0.0, 1.0),
])
def test_channel_stats_match_float64_numpy(dtype, offset, spread):
    """cv2.meanStdDev computes sqrt(E[x²] - E[x]²): a float32 image around 1e4 got a std 50%
    off (100× at 1e6), a 16-bit image near white 10% off."""
    rng = np.random.default_rng(0)
    image = (offset + rng.random((600, 700, 3)) * spread).astype(dtype)
    if dtype == "uint16":
        image = (offset + rng.integers(0, spread, (600, 700, 3))).astype(dtype)
    got = get_op("channel_stats")(image)
    flat = image.reshape(-1, 3).astype(np.float64)
    for i, c in enumerate("rgb"):
        assert got[f"mean_{c}"] == pytest.approx(flat[:, i].mean(), rel=1e-12, abs=1e-12)
        assert got[f"std_{c}"] == pytest.approx(flat[:, i].std(), rel=1e-9)
    gray = get_op("channel_stats")(np.ascontiguousarray(image[..., 0]))
    assert gray["std"] == pytest.approx(flat[:, 0].std(), rel=1e-9)


# ---- sobel/scharr magnitude: deterministic -----------------------------------------------------
@pytest.mark.parametrize("name", ["sobel", "scharr"])
def test_gradient_magnitude_is_deterministic(name):
    """cv2.magnitude's SIMD and scalar paths differ by an ulp, so two calls on one float32
    image returned different bits depending on buffer alignment (about every other call)."""
    image = make_image(np.random.default_rng(1), "float32", 3, (30, 40), smooth=1.0)
    first = get_op(name)(image)
    buffer = np.empty(image.size + 16, np.float32)
    for i in range(40):
        off = i % 16
        view = buffer[off : off + image.size].reshape(image.shape)
        view[...] = image
        np.testing.assert_array_equal(get_op(name)(view), first)
        np.testing.assert_array_equal(get_op(name)(image), first)
    if name == "sobel":
        for c in range(3):
            plane = image[..., c].astype(np.float64)
            want = np.hypot(ndimage.sobel(plane, axis=1), ndimage.sobel(plane, axis=0))
            np.testing.assert_allclose(first[..., c], want, rtol=1e-6, atol=1e-6)


# ---- input arrays: byte order, no channels, too many channels for convert ---------------------
BYTE_ORDER_CASES = [
    ("gaussian", {}), ("box", {"size": 5}), ("median", {"size": 3}), ("sobel", {}),
    ("resize", {"factor": 0.5}), ("rotate", {"angle": 30.0}), ("erode", {}),
    ("unsharp_mask", {}), ("gamma", {"gamma": 0.5}), ("convert", {"to": "hsv"}),
    ("crop", {"x": 1, "y": 1, "width": 5, "height": 4}), ("channel_stats", {}),
    ("threshold", {}), ("laplacian", {}),
]


@pytest.mark.parametrize(("name", "params"), BYTE_ORDER_CASES,
                         ids=[n for n, _ in BYTE_ORDER_CASES])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_byte_swapped_input_gives_the_native_result(name, params, dtype):
    """A big-endian array ('>u2' from a big-endian file or buffer) passed the dtype check and
    OpenCV read its raw bytes as native numbers: garbage values, and a '>u2' dtype back from
    the NumPy-only ops."""
    image = make_image(np.random.default_rng(4), dtype, 3, (20, 24), smooth=1.0)
    swapped = image.astype(image.dtype.newbyteorder(">" if np.little_endian else "<"))
    assert not swapped.dtype.isnative and np.array_equal(swapped, image)
    want = get_op(name)(image, **params)
    got = get_op(name)(swapped, **params)
    if isinstance(want, dict):
        assert got == want
        return
    assert got.dtype == want.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["gaussian", "median", "resize", "sobel", "erode", "convert",
                                  "rotate", "nl_means", "equalize_hist", "threshold"])
def test_channel_less_image_is_refused_clearly(name):
    """H×W×0 reached OpenCV ("Bad argument"), an IndexError or a reshape error."""
    params = {"resize": {"factor": 0.5}, "rotate": {"angle": 30.0}}.get(name, {})
    with pytest.raises(InvalidParameterError, match="empty image"):
        get_op(name)(np.zeros((6, 6, 0), np.uint8), **params)


def test_convert_many_channels_does_not_blame_gray():
    with pytest.raises(InvalidParameterError, match="5-channel") as info:
        get_op("convert")(np.zeros((4, 4, 5), np.uint8), to="hsv")
    assert "'gray'" not in str(info.value) and info.value.field == "source"
