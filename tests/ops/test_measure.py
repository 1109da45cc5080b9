"""Measurement ops against OpenCV, SciPy and Pillow, and their dtype invariance."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageStat
from scipy import fft, ndimage

from pixelmill.ops import get_op


def test_channel_stats_match_numpy(astronaut, camera, image_factory):
    got = get_op("channel_stats")(astronaut)
    flat = astronaut.reshape(-1, 3).astype(np.float64)
    for i, c in enumerate("rgb"):
        assert got[f"mean_{c}"] == pytest.approx(flat[:, i].mean(), rel=1e-9)
        assert got[f"std_{c}"] == pytest.approx(flat[:, i].std(), rel=1e-9)
    five = image_factory("float32", channels=5)
    got = get_op("channel_stats")(five)
    assert got["mean_c4"] == pytest.approx(five[..., 4].astype(np.float64).mean(), rel=1e-9)
    rgba = get_op("channel_stats")(np.dstack([astronaut, np.full(astronaut.shape[:2], 9, np.uint8)]))
    assert rgba["mean_a"] == 9 and rgba["std_a"] == 0
    gray = get_op("channel_stats")(camera.astype(np.uint16) * 257)
    assert set(gray) == {"mean", "std"}
    assert gray["mean"] == pytest.approx(camera.mean() * 257)


def test_sharpness_matches_scipy_laplace(camera):
    got = get_op("sharpness")(camera)["sharpness"]
    want = ndimage.laplace(camera.astype(np.float64), mode="reflect").var()
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("name", ["sharpness", "brightness_contrast", "blur_flag"])
def test_measures_are_dtype_invariant(camera, name):
    """The same picture as uint8, uint16 (×257) and float32 (÷255) measures the same."""
    u8 = get_op(name)(camera)
    u16 = get_op(name)(camera.astype(np.uint16) * 257)
    f32 = get_op(name)(camera.astype(np.float32) / 255)
    for key, value in u8.items():
        assert u16[key] == pytest.approx(value, rel=1e-5)
        assert f32[key] == pytest.approx(value, rel=1e-5)


def test_brightness_contrast_matches_pillow(astronaut):
    got = get_op("brightness_contrast")(astronaut)
    stat = ImageStat.Stat(Image.fromarray(astronaut).convert("L"))
    assert got["brightness"] == pytest.approx(stat.mean[0] / 255, abs=0.5 / 255)
    assert got["contrast"] == pytest.approx(stat.stddev[0] / 255, abs=0.5 / 255)


def test_blur_flag_separates_sharp_from_blurred(astronaut):
    blurred = get_op("gaussian")(astronaut, sigma=3.0)
    assert get_op("blur_flag")(astronaut) == {"blurry": False}
    assert get_op("blur_flag")(blurred) == {"blurry": True}
    s = get_op("sharpness")(blurred)["sharpness"]
    assert get_op("blur_flag")(blurred, threshold=s * 0.99) == {"blurry": False}


def _phash_reference(gray: np.ndarray, hash_size=8, factor=4) -> int:
    """imagehash's recipe with SciPy's DCT: shrink, DCT rows and columns, compare to median."""
    n = hash_size * factor
    small = cv2.resize(gray.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    coeffs = fft.dct(fft.dct(small.astype(np.float64), axis=0), axis=1)[:hash_size, :hash_size]
    bits = (coeffs > np.median(coeffs)).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_phash_matches_scipy_dct_recipe(camera):
    got = get_op("phash")(camera)["phash"]
    assert len(got) == 16 and int(got, 16) == _phash_reference(camera)


def test_phash_is_perceptual(astronaut, camera):
    from skimage import data

    base = get_op("phash")(astronaut)["phash"]
    smaller = get_op("phash")(get_op("resize")(astronaut, factor=0.37, method="area"))["phash"]
    jpeg = cv2.imdecode(cv2.imencode(".jpg", astronaut[..., ::-1],
                                     [cv2.IMWRITE_JPEG_QUALITY, 40])[1], cv2.IMREAD_COLOR)[..., ::-1]
    recoded = get_op("phash")(np.ascontiguousarray(jpeg))["phash"]
    assert _hamming(base, smaller) <= 4
    assert _hamming(base, recoded) <= 4
    for other in (camera, data.coffee(), data.chelsea()):
        assert _hamming(base, get_op("phash")(other)["phash"]) >= 16
    assert len(get_op("phash")(camera, hash_size=16)["phash"]) == 64


def test_no_data_pixels_are_left_out_of_measurements(astronaut):
    """NaN (the no-data of float rasters) and ±inf: statistics over the finite pixels, as
    NumPy's nan* functions; one NaN used to make every measurement NaN."""
    img = astronaut[::4, ::4].astype(np.float32) / 255
    holes = img.copy()
    holes[5:9, 10:30, 0] = np.nan
    holes[40, :, 2] = np.inf
    holes[60:64, 60:64, :] = np.nan
    stats = get_op("channel_stats")(holes)
    for i, c in enumerate("rgb"):
        plane = holes[..., i].astype(np.float64)
        plane = plane[np.isfinite(plane)]
        assert stats[f"mean_{c}"] == pytest.approx(plane.mean(), rel=1e-9)
        assert stats[f"std_{c}"] == pytest.approx(plane.std(), rel=1e-9)

    luma = (holes[..., 0] * 0.299 + holes[..., 1] * 0.587 + holes[..., 2] * 0.114).astype(np.float64)
    bc = get_op("brightness_contrast")(holes)
    assert bc["brightness"] == pytest.approx(np.nanmean(np.where(np.isinf(luma), np.nan, luma)),
                                             rel=1e-6)
    lap = ndimage.laplace(luma * 255, mode="reflect")
    want = lap[np.isfinite(lap)].var()  # the Laplacians whose neighbourhood is finite
    assert get_op("sharpness")(holes)["sharpness"] == pytest.approx(want, rel=1e-6)
    assert 0 < want < get_op("sharpness")(img)["sharpness"] * 2
    assert get_op("blur_flag")(holes)["blurry"] is False

    filled = np.where(np.isfinite(luma), luma, np.nanmean(np.where(np.isinf(luma), np.nan, luma)))
    got = get_op("phash")(holes)["phash"]
    assert int(got, 16) == _phash_reference((filled * 255).astype(np.float32))
    assert _hamming(got, get_op("phash")(img)["phash"]) <= 6

    empty = np.full((6, 6, 3), np.nan, np.float32)
    assert all(np.isnan(v) for v in get_op("channel_stats")(empty).values())
    assert np.isnan(get_op("sharpness")(empty)["sharpness"])
    assert get_op("blur_flag")(empty)["blurry"] is None
