"""Colour ops against Pillow, scikit-image and OpenCV (each a different implementation)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelmill.errors import InvalidParameterError
from pixelmill.ops import get_op
from pixelmill.pipeline import Pipeline


def test_gray_matches_pillow(astronaut):
    got = get_op("convert")(astronaut, to="gray")
    want = np.asarray(Image.fromarray(astronaut).convert("L"))
    assert got.dtype == np.uint8 and got.shape == astronaut.shape[:2]
    assert np.abs(got.astype(int) - want).max() <= 1


def test_ycbcr_matches_pillow_and_round_trips(astronaut):
    got = get_op("convert")(astronaut, to="ycbcr")
    want = np.asarray(Image.fromarray(astronaut).convert("YCbCr"))
    assert np.abs(got.astype(int) - want).max() <= 1
    back = get_op("convert")(got, to="rgb", source="ycbcr")
    assert np.abs(back.astype(int) - astronaut).max() <= 2


def test_ycbcr_uint16_and_float_agree_with_uint8(astronaut):
    f = astronaut.astype(np.float32) / 255
    got = get_op("convert")(f, to="ycbcr")
    want = get_op("convert")(astronaut, to="ycbcr").astype(np.float32) / 255
    assert np.abs(got - want).max() < 1 / 255 + 1e-6
    u16 = get_op("convert")(astronaut.astype(np.uint16) * 257, to="ycbcr")
    assert np.abs(u16 / 65535 - want).max() < 1 / 255 + 1e-6


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_hsv_matches_skimage(image_factory, dtype):
    from skimage.color import rgb2hsv

    image = image_factory(dtype, channels=3)
    got = get_op("convert")(image, to="hsv")
    white = {"uint8": 255, "uint16": 65535, "float32": 1}[dtype]
    want = rgb2hsv(image.astype(np.float64) / white)
    assert got.dtype == np.float32
    dh = np.abs(got[..., 0] / 360 - want[..., 0])
    assert np.minimum(dh, 1 - dh).max() < 1e-4
    np.testing.assert_allclose(got[..., 1:], want[..., 1:], atol=1e-5)
    back = get_op("convert")(got, to="rgb", source="hsv")
    np.testing.assert_allclose(back, image.astype(np.float64) / white, atol=1e-4)


def test_lab_matches_skimage(astronaut):
    from skimage.color import lab2rgb, rgb2lab

    got = get_op("convert")(astronaut, to="lab")
    want = rgb2lab(astronaut)
    assert got.dtype == np.float32 and got[..., 0].min() >= 0 and got[..., 0].max() <= 100
    # OpenCV's float path approximates the sRGB curve with a spline: differences stay far
    # below one just-noticeable difference (ΔE ≈ 1)
    diff = np.abs(got - want)
    assert diff.max() < 0.5 and diff.mean() < 0.05
    back = get_op("convert")(got, to="rgb", source="lab")
    assert np.abs(back - lab2rgb(want)).max() < 5e-3  # same spline, near black


def test_convert_checks_its_input():
    with pytest.raises(InvalidParameterError, match="3-channel") as info:
        get_op("convert")(np.zeros((4, 4), np.uint8), to="hsv", source="rgb")
    assert info.value.field == "source"
    with pytest.raises(InvalidParameterError, match="float32"):
        get_op("convert")(np.zeros((4, 4, 3), np.uint8), to="rgb", source="lab")
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)
    rgb = get_op("convert")(gray, to="rgb")
    assert rgb.shape == (4, 4, 3) and (rgb == gray[..., None]).all()
    gray_alpha = np.stack([gray, np.full_like(gray, 255)], -1)
    np.testing.assert_array_equal(get_op("convert")(gray_alpha, to="gray"), gray)
    np.testing.assert_array_equal(get_op("convert")(gray_alpha, to="rgb"), rgb)
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(get_op("convert")(rgba, to="rgb"), rgb)
    np.testing.assert_array_equal(get_op("convert")(rgba, to="gray"), gray)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_rescale_intensity_matches_skimage(image_factory, dtype):
    from skimage.exposure import rescale_intensity as sk_rescale

    image = image_factory(dtype, channels=3)
    white = {"uint8": 255, "uint16": 65535, "float32": 1.0}[dtype]
    lo, hi = 0.2 * white, 0.7 * white
    got = get_op("rescale_intensity")(image, in_low=lo, in_high=hi)
    want = sk_rescale(image.astype(np.float64), in_range=(lo, hi), out_range=(0, white))
    if dtype == "float32":
        np.testing.assert_allclose(got, want, atol=1e-6)
    else:
        assert np.abs(got - np.rint(want)).max() <= 1
    # without bounds: the image's own min and max, a global op
    spec = get_op("rescale_intensity")
    assert spec.halo(spec.bind({})) == float("inf")
    assert spec.halo(spec.bind({"in_low": 0, "in_high": 1})) == 0
    auto = spec(image)
    want = sk_rescale(image.astype(np.float64), in_range="image", out_range=(0, white))
    assert np.abs(auto.astype(float) - want).max() <= (1 if dtype != "float32" else 1e-6)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("g", [0.45, 2.2])
def test_gamma_matches_skimage(image_factory, dtype, g):
    from skimage.exposure import adjust_gamma

    image = image_factory(dtype, channels=3)
    got = get_op("gamma")(image, gamma=g, gain=1.0)
    white = {"uint8": 255, "uint16": 65535, "float32": 1.0}[dtype]
    want = white * (image.astype(np.float64) / white) ** g
    ref = adjust_gamma(image, g)  # skimage truncates instead of rounding for integers
    assert np.abs(ref.astype(float) - want).max() <= (1 if dtype != "float32" else 1e-5)
    if dtype == "float32":
        np.testing.assert_allclose(got, ref, atol=1e-5)
    else:
        assert np.abs(got.astype(float) - ref).max() <= 1


def test_equalize_hist_uint8_matches_opencv(camera, image_factory):
    np.testing.assert_array_equal(get_op("equalize_hist")(camera), cv2.equalizeHist(camera))
    rgb = image_factory("uint8", channels=3, smooth=2.0)
    got = get_op("equalize_hist")(rgb)
    for i in range(3):
        np.testing.assert_array_equal(got[..., i], cv2.equalizeHist(np.ascontiguousarray(
            rgb[..., i])))


def test_equalize_hist_float_is_close_to_skimage(camera):
    from skimage.exposure import equalize_hist as sk_eq

    image = camera.astype(np.float32) / 255
    got = get_op("equalize_hist")(image, bins=256)
    want = sk_eq(image, nbins=256)
    assert got.dtype == np.float32
    assert np.abs(got - want).mean() < 0.01  # skimage interpolates between bin centres


def test_equalize_hist_uint16_flattens_the_histogram(image_factory):
    image = image_factory("uint16", smooth=3.0) // 4
    got = get_op("equalize_hist")(image)
    counts, _ = np.histogram(got, bins=8, range=(0, 65536))
    assert counts.min() > 0.5 * counts.mean()


def test_clahe_correlates_with_skimage(camera):
    """OpenCV's and skimage's CLAHE differ in clipping and interpolation details; both must
    raise local contrast and agree closely."""
    from skimage.exposure import equalize_adapthist

    got = get_op("clahe")(camera, clip_limit=2.0, grid=(8, 8))
    want = equalize_adapthist(camera, kernel_size=64, clip_limit=0.01) * 255
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9
    def local_contrast(x):
        return np.abs(cv2.Sobel(x.astype(np.float32), cv2.CV_32F, 1, 0)).mean()

    assert local_contrast(got) > 1.2 * local_contrast(camera)
    u16 = get_op("clahe")(camera.astype(np.uint16) * 257)
    assert u16.dtype == np.uint16


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(512, 512), (301, 457), (123, 77), (5, 5), (2, 3), (1, 1)])
@pytest.mark.parametrize("clip_limit, grid", [(2.0, (8, 8)), (40.0, (3, 5)), (0.5, (16, 4))])
def test_clahe_reimplementation_equals_opencv(camera, dtype, shape, clip_limit, grid):
    """With one bin per level, the NumPy CLAHE behind other bin counts is OpenCV's exactly."""
    from pixelmill.ops.color import _clahe_channel

    rng = np.random.default_rng(shape[0])
    if shape == (512, 512):
        image = camera.astype(dtype) * (257 if dtype == np.uint16 else 1)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    want = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(grid[1], grid[0])).apply(image)
    got = _clahe_channel(image, clip_limit, grid, np.iinfo(dtype).max + 1)
    np.testing.assert_array_equal(got, want)


def test_clahe_uint16_matches_the_uint8_result_of_the_same_picture(camera):
    """uint16 CLAHE uses 256 bins by default (as scikit-image): the same picture stored in 16
    bits gives the 8-bit result to within one 8-bit level. OpenCV's own 65536-bin uint16 CLAHE
    (``bins=65536``) clips every bin to one count and lands ~15 levels away on average."""
    u8 = get_op("clahe")(camera)
    u16 = get_op("clahe")(camera.astype(np.uint16) * 257)
    assert u16.dtype == np.uint16
    diff = np.abs(u16.astype(np.int64) - u8.astype(np.int64) * 257)
    assert diff.max() <= 257 and diff.mean() < 0.5 * 257
    assert len(np.unique(u16)) > 2 * len(np.unique(u8))  # finer output levels, not 8-bit x 257
    opencv = get_op("clahe")(camera.astype(np.uint16) * 257, bins=65536)
    assert np.abs(opencv.astype(np.int64) - u8.astype(np.int64) * 257).mean() > 5 * 257


def test_clahe_bins(camera):
    coarse = get_op("clahe")(camera, bins=32)
    assert coarse.dtype == np.uint8 and not np.array_equal(coarse, get_op("clahe")(camera))
    np.testing.assert_array_equal(get_op("clahe")(camera, bins=4096), get_op("clahe")(camera))
    with pytest.raises(InvalidParameterError, match="bins: expected a power of two, got 100"):
        Pipeline.from_steps([{"op": "clahe", "bins": 100}])


def test_rescale_intensity_refuses_an_output_range_inverted_by_a_default():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with pytest.raises(InvalidParameterError, match="out_low 300 is not below the uint8 white"):
        get_op("rescale_intensity")(image, out_low=300.0)
    with pytest.raises(InvalidParameterError, match="out_high -1 is not above 0"):
        get_op("rescale_intensity")(image, out_high=-1.0)
    got = get_op("rescale_intensity")(image, out_low=200.0)  # below white: fine
    assert got[0, 0] == 200 and got[-1, -1] == 255


def test_white_balance_grayworld_equalizes_channel_means(astronaut):
    cast = np.clip(astronaut * np.array([1.2, 1.0, 0.7]), 0, 255).astype(np.uint8)
    got = get_op("white_balance_grayworld")(cast)
    means = got.reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 3.0  # clipping at 255 keeps it from being exact
    f = cast.astype(np.float32) / 255
    gotf = get_op("white_balance_grayworld")(f)
    m = f.reshape(-1, 3).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(gotf, f * (m.mean() / m), rtol=1e-5)
