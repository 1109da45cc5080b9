"""Edge ops against SciPy's derivative filters, OpenCV's Canny and a SciPy Harris."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from pixelmill.ops import get_op

MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]


def _deriv(image, smooth, axis, mode):
    """Derivative [-1, 0, 1] along ``axis`` and ``smooth`` across it (SciPy correlate1d)."""
    x = image.astype(np.float64)
    d = ndimage.correlate1d(x, [-1.0, 0.0, 1.0], axis=axis, mode=mode)
    return ndimage.correlate1d(d, smooth, axis=1 - axis, mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_sobel_matches_scipy(image_factory, mode, dtype):
    image = image_factory(dtype)
    gx = ndimage.sobel(image.astype(np.float64), axis=1, mode=mode)
    gy = ndimage.sobel(image.astype(np.float64), axis=0, mode=mode)
    tol = 1e-5 * max(1.0, float(np.abs(gx).max()))
    np.testing.assert_allclose(get_op("sobel")(image, direction="x", mode=mode), gx, atol=tol)
    np.testing.assert_allclose(get_op("sobel")(image, direction="y", mode=mode), gy, atol=tol)
    np.testing.assert_allclose(get_op("sobel")(image, mode=mode), np.hypot(gx, gy), atol=tol,
                               rtol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant"])
def test_scharr_matches_scipy_correlation(image_factory, mode):
    image = image_factory("float32", channels=3)
    got = get_op("scharr")(image, mode=mode)
    for c in range(3):
        gx = _deriv(image[..., c], [3.0, 10.0, 3.0], axis=1, mode=mode)
        gy = _deriv(image[..., c], [3.0, 10.0, 3.0], axis=0, mode=mode)
        np.testing.assert_allclose(got[..., c], np.hypot(gx, gy), atol=1e-4, rtol=1e-5)


def test_sobel_real_photo(camera):
    got = get_op("sobel")(camera)
    want = np.hypot(ndimage.sobel(camera.astype(float), 1, mode="reflect"),
                    ndimage.sobel(camera.astype(float), 0, mode="reflect"))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_canny_agrees_with_opencv(camera):
    """skimage's Canny (ours) vs OpenCV's on the same smoothed photo: the same edges within one
    pixel (the two differ in non-maximum suppression interpolation and rounding)."""
    smooth = get_op("gaussian")(camera, sigma=1.4)
    ours = get_op("canny")(smooth, sigma=0.0, low=40.0, high=100.0) > 0
    theirs = cv2.Canny(smooth, 40, 100, L2gradient=True) > 0
    near_ours = ndimage.binary_dilation(ours, iterations=1)
    near_theirs = ndimage.binary_dilation(theirs, iterations=1)
    inner = (slice(4, -4), slice(4, -4))
    assert ours[inner].sum() > 1000
    assert (theirs & near_ours)[inner].sum() > 0.9 * theirs[inner].sum()
    assert (ours & near_theirs)[inner].sum() > 0.9 * ours[inner].sum()


def test_canny_output_and_thresholds(image_factory):
    image = np.zeros((32, 32), np.uint16)
    image[:, 16:] = 40000
    got = get_op("canny")(image, sigma=1.0)
    assert got.dtype == np.uint8 and set(np.unique(got)) == {0, 255}
    assert (got[:, 15:17] == 255).sum() >= 28  # the step is found
    assert not got[:, :12].any() and not got[:, 20:].any()
    # defaults follow the dtype's white: the same step at float scale gives the same edge
    # (which of the two equal-magnitude columns wins the tie may differ)
    as_float = get_op("canny")(image.astype(np.float32) / 65535)
    np.testing.assert_array_equal(as_float[:, 15:17].max(axis=1), got[:, 15:17].max(axis=1))
    assert not as_float[:, :12].any() and not as_float[:, 20:].any()


def test_canny_given_threshold_is_never_overridden_by_a_default(camera):
    """low=80 alone (above the default high, 51 for uint8) must raise high to 80, not be
    lowered to 51: the result is skimage's canny with both thresholds at 80."""
    from skimage.feature import canny as sk_canny

    smooth = camera.astype(np.float64)
    got = get_op("canny")(camera, sigma=1.0, low=80.0) > 0
    np.testing.assert_array_equal(got, sk_canny(smooth, 1.0, 80.0, 80.0, mode="reflect"))
    assert not np.array_equal(got, sk_canny(smooth, 1.0, 51.0, 51.0, mode="reflect"))
    got = get_op("canny")(camera, sigma=1.0, high=10.0) > 0  # below the default low (25.5)
    np.testing.assert_array_equal(got, sk_canny(smooth, 1.0, 10.0, 10.0, mode="reflect"))


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
@pytest.mark.parametrize("block_size, ksize", [(3, 3), (5, 5)])
def test_harris_mode_extends_the_image(mode, block_size, ksize):
    """``mode`` extends the image: the response equals that of an image padded by ``mode``
    (cropped back), border pixels included — not OpenCV's border applied to the derivative
    products, which was up to 60 % of the response off within the radius of the edge."""
    from pixelmill.ops._common import NUMPY_PAD

    image = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    r = 16
    padded = np.pad(image, r, mode=NUMPY_PAD[mode])
    op = get_op("harris")
    want = op(padded, block_size=block_size, ksize=ksize, mode=mode)[r:-r, r:-r]
    got = op(image, block_size=block_size, ksize=ksize, mode=mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def _harris_reference(gray, block, ksize, k, mode):
    """The structure-tensor response of the image extended by ``mode`` (np.pad by the whole
    radius, then computed away from any further border and cropped back)."""
    from pixelmill.ops._common import NUMPY_PAD

    r = block // 2 + ksize // 2
    gray = np.pad(gray, r, mode=NUMPY_PAD[mode])
    scale = 1.0 / ((1 << (ksize - 1)) * block)
    smooth = {3: [1.0, 2.0, 1.0]}[ksize]
    dx = _deriv(gray, smooth, axis=1, mode="nearest") * scale
    dy = _deriv(gray, smooth, axis=0, mode="nearest") * scale

    def box(a):
        return ndimage.uniform_filter(a, size=block, mode="nearest") * block * block

    a, b, c = box(dx * dx), box(dx * dy), box(dy * dy)
    return (a * c - b * b - k * (a + c) ** 2)[r:-r, r:-r]


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
def test_harris_matches_scipy_structure_tensor(image_factory, mode):
    image = image_factory("float32", smooth=1.0)
    got = get_op("harris")(image, block_size=3, ksize=3, k=0.05, mode=mode)
    want = _harris_reference(image.astype(np.float64), 3, 3, 0.05, mode)
    np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max(), rtol=1e-4)


def test_harris_finds_the_corners_of_a_square():
    image = np.zeros((40, 40), np.uint8)
    image[10:30, 10:30] = 255
    got = get_op("harris")(image)
    peaks = np.argwhere(got > 0.5 * got.max())
    for corner in ((10, 10), (10, 29), (29, 10), (29, 29)):
        assert np.abs(peaks - corner).max(axis=1).min() <= 1
    rgb = np.repeat(image[..., None], 3, axis=2)
    np.testing.assert_allclose(get_op("harris")(rgb), got, rtol=1e-5)
