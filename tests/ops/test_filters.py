"""Filter ops against independent references (SciPy, scikit-image, a second OpenCV path).

Tolerances: float32 results agree to ~1e-5 (float32 rounding of separable sums); uint8/uint16
results to 1 level (OpenCV rounds fixed-point intermediates, the reference rounds once).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from pixelmill.ops import get_op
from pixelmill.ops.filters import bilateral_reference

MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]


def _close(got, want, dtype):
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(got, want, atol=2e-5)
    else:
        assert np.abs(got.astype(np.int64) - np.rint(want).astype(np.int64)).max() <= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_gaussian_matches_scipy(image_factory, mode, dtype):
    image = image_factory(dtype, channels=3)
    got = get_op("gaussian")(image, sigma=1.7, mode=mode)
    want = ndimage.gaussian_filter(image.astype(np.float64), sigma=(1.7, 1.7, 0), mode=mode)
    _close(got, want, dtype)


@pytest.mark.parametrize("shape", [(4, 4), (5, 7, 3), (6, 9), (31, 12)])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_gaussian_wrap_with_a_kernel_longer_than_the_image_is_the_periodic_blur(shape, dtype):
    """The kernel folded onto the image's period (sigma 200 on 1000² took 155 s padded by the
    full radius) against the definition: a sum of rolled copies, in float64."""
    image = np.random.default_rng(3).integers(0, 60000, shape).astype(dtype)
    sigma, r = 9.0, 36
    k = cv2.getGaussianKernel(2 * r + 1, sigma).ravel()
    want = np.zeros(shape)
    f = image.astype(np.float64)
    for dy in range(-r, r + 1):
        rolled = np.roll(f, -dy, axis=0)
        for dx in range(-r, r + 1):
            want += k[dy + r] * k[dx + r] * np.roll(rolled, -dx, axis=1)
    got = get_op("gaussian")(image, sigma=sigma, mode="wrap")
    assert got.shape == image.shape and got.dtype == image.dtype
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=0.05)
    else:
        np.testing.assert_array_equal(got, np.rint(want))


@pytest.mark.parametrize("n", [1, 2, 5, 8, 73, 200])
def test_folded_kernel_keeps_every_tap_in_at_most_n_plus_one(n):
    from pixelmill.ops._common import fold_periodic

    k = np.random.default_rng(n).random(73)  # offsets -36..36
    folded = fold_periodic(k, n)
    assert folded.size % 2 == 1 and folded.size <= min(n + 1, k.size)
    q = folded.size // 2
    for c in range(n):  # each residue class holds the sum of its taps
        want = sum(k[d + 36] for d in range(-36, 37) if d % n == c)
        got = sum(folded[j + q] for j in range(-q, q + 1) if j % n == c)
        assert got == pytest.approx(want, rel=1e-12)


def test_gaussian_real_photo(astronaut):
    got = get_op("gaussian")(astronaut, sigma=2.0)
    want = ndimage.gaussian_filter(astronaut.astype(np.float64), sigma=(2, 2, 0), mode="reflect")
    _close(got, want, "uint8")
    # rounded as the exact result is, not merely within a level (OpenCV's 8-bit GaussianBlur
    # is a level off at ~8 % of the pixels)
    assert np.mean(got != np.rint(want)) < 1e-3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_box_matches_scipy_uniform_filter(image_factory, mode, dtype):
    image = image_factory(dtype)
    got = get_op("box")(image, size=5, mode=mode)
    want = ndimage.uniform_filter(image.astype(np.float64), size=5, mode=mode)
    _close(got, want, dtype)


@pytest.mark.parametrize(("dtype", "size"), [("uint8", 7), ("uint16", 5), ("float32", 3),
                                             ("uint16", 7), ("float32", 9)])
@pytest.mark.parametrize("mode", ["reflect", "nearest", "wrap", "constant"])
def test_median_matches_a_sliding_window_median(image_factory, dtype, size, mode):
    """Both the OpenCV path (uint8, size <= 5) and the SciPy path, against NumPy's median."""
    image = image_factory(dtype, channels=3, shape=(24, 30))
    got = get_op("median")(image, size=size, mode=mode)
    r = size // 2
    numpy_mode = {"reflect": "symmetric", "nearest": "edge", "wrap": "wrap",
                  "constant": "constant"}[mode]
    padded = np.pad(image, [(r, r), (r, r), (0, 0)], mode=numpy_mode)
    windows = sliding_window_view(padded, (size, size), axis=(0, 1))
    want = np.median(windows, axis=(-2, -1)).astype(image.dtype)
    np.testing.assert_array_equal(got, want)


def test_median_real_photo_matches_scipy(camera):
    got = get_op("median")(camera, size=5)
    np.testing.assert_array_equal(got, ndimage.median_filter(camera, size=5, mode="reflect"))


def test_bilateral_uint8_opencv_matches_the_definition(image_factory):
    """uint8 runs OpenCV; the float64 definition (used for other dtypes) must agree with it."""
    for channels in (1, 3):
        image = image_factory("uint8", channels=channels, smooth=1.0)
        got = get_op("bilateral")(image, diameter=5, sigma_color=30.0, sigma_space=2.0)
        want = bilateral_reference(image, 5, 30.0, 2.0, "reflect")
        assert np.abs(got.astype(float) - want).max() <= 1.0


def test_bilateral_uint8_other_channel_counts_go_channel_by_channel(image_factory):
    """OpenCV takes 1 or 3 channels: gray + alpha (which raised an OpenCV assertion) and RGBA
    are filtered one channel at a time, each equal to the gray filter of that channel."""
    op = get_op("bilateral")
    for channels in (2, 4):
        image = image_factory("uint8", channels=channels, smooth=1.0)
        got = op(image, diameter=5, sigma_color=30.0, sigma_space=2.0)
        assert got.shape == image.shape and got.dtype == np.uint8
        for c in range(channels):
            plane = np.ascontiguousarray(image[..., c])
            np.testing.assert_array_equal(
                got[..., c], op(plane, diameter=5, sigma_color=30.0, sigma_space=2.0))
        assert np.abs(got.astype(int) - image).max() > 0  # it did filter


def test_bilateral_float_definition_matches_opencv_float_path(image_factory):
    """OpenCV's float32 path interpolates its colour weights from a table: agreement ~1e-3."""
    image = image_factory("float32", smooth=1.0)
    got = get_op("bilateral")(image, diameter=7, sigma_color=0.2, sigma_space=3.0)
    want = cv2.bilateralFilter(image, 7, 0.2, 3.0, borderType=cv2.BORDER_REFLECT)
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert np.abs(got - image).max() > 0.01  # it did filter


def test_bilateral_preserves_a_step_edge_better_than_gaussian():
    step = np.zeros((32, 32), np.uint8)
    step[:, 16:] = 200
    noisy = np.clip(step + np.random.default_rng(0).normal(0, 5, step.shape), 0, 255).astype(
        np.uint8)
    bil = get_op("bilateral")(noisy, diameter=7, sigma_color=20.0, sigma_space=3.0)
    gau = get_op("gaussian")(noisy, sigma=1.5)
    assert abs(int(bil[16, 15]) - 0) < 10 and abs(int(bil[16, 16]) - 200) < 10
    assert abs(int(gau[16, 15]) - 0) > 30


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_unsharp_mask_matches_skimage(image_factory, dtype):
    from skimage.filters import unsharp_mask as sk_unsharp

    image = image_factory(dtype, channels=3, smooth=1.0)
    got = get_op("unsharp_mask")(image, radius=1.5, amount=0.8)
    # channel by channel (skimage 0.26's channel_axis=-1 path disagrees with its own 2-D path)
    want = np.stack([sk_unsharp(image[..., i], radius=1.5, amount=0.8, preserve_range=True)
                     for i in range(3)], -1)
    if dtype == "uint8":
        want = np.clip(want, 0, 255)
    _close(got, want, dtype)


def test_unsharp_mask_real_photo_sharpens(camera):
    from skimage.filters import unsharp_mask as sk_unsharp

    got = get_op("unsharp_mask")(camera, radius=2.0, amount=1.0, mode="reflect")
    want = np.clip(sk_unsharp(camera, radius=2.0, amount=1.0, preserve_range=True), 0, 255)
    _close(got, want, "uint8")


def test_nl_means_denoises_like_skimage(camera):
    """Different algorithms (OpenCV's fast NLM vs scikit-image's): both must remove most of the
    noise and agree with each other far better than with the noisy input."""
    from skimage.restoration import denoise_nl_means

    clean = camera[128:384, 128:384]
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    got = get_op("nl_means")(noisy, h=14.0, template_size=7, search_size=21)
    ref = denoise_nl_means(noisy.astype(np.float64), h=12.0, patch_size=7, patch_distance=10,
                           fast_mode=True)

    def rmse(a, b):
        return math.sqrt(np.mean((a.astype(float) - b.astype(float)) ** 2))

    assert rmse(got, clean) < 0.7 * rmse(noisy, clean)
    assert rmse(got, ref) < 0.7 * rmse(noisy, ref)


def test_nl_means_uint16(image_factory):
    image = image_factory("uint16", channels=3, smooth=2.0)
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 2000, image.shape), 0,
                    65535).astype(np.uint16)
    got = get_op("nl_means")(noisy, h=3000.0)
    assert np.abs(got.astype(float) - image).mean() < np.abs(noisy.astype(float) - image).mean()


@pytest.mark.parametrize("mode", MODES)
def test_laplacian_matches_scipy_laplace(image_factory, mode):
    image = image_factory("uint16", channels=3)
    got = get_op("laplacian")(image, ksize=1, mode=mode)
    want = ndimage.laplace(image.astype(np.float64), mode=mode)
    want = np.stack([ndimage.laplace(image[..., i].astype(np.float64), mode=mode)
                     for i in range(3)], -1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-2)


def test_laplacian_ksize3_matches_scipy_correlate(camera):
    got = get_op("laplacian")(camera, ksize=3)
    kernel = np.array([[2, 0, 2], [0, -8, 0], [2, 0, 2]], np.float64)
    want = ndimage.correlate(camera.astype(np.float64), kernel, mode="reflect")
    np.testing.assert_allclose(got, want, atol=1e-3)
