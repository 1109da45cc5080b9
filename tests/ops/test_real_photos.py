"""The ops whose main reference test uses random images, once more on a real 512-pixel photo
(scikit-image's bundled samples), against the same independent references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from pixelmill.ops import get_op
from pixelmill.ops.filters import bilateral_reference


def _box(img):
    want = np.stack([ndimage.uniform_filter(img[..., c].astype(float), 7, mode="mirror")
                     for c in range(3)], -1)
    return get_op("box")(img, size=7, mode="mirror"), want, 1.0  # fixed-point rounding


def _bilateral(img):
    crop = img[128:256, 128:256]  # the float64 definition is slow: a 128-pixel crop
    return (get_op("bilateral")(crop, diameter=5, sigma_color=20.0),
            bilateral_reference(crop, 5, 20.0, 2.0, "reflect"), 1.0)


def _scharr(img):
    gray = img.astype(np.float64) @ [0.299, 0.587, 0.114]
    gx = ndimage.correlate1d(ndimage.correlate1d(gray, [-1, 0, 1], axis=1), [3, 10, 3], axis=0)
    return get_op("scharr")(gray.astype(np.float32), direction="x"), gx, 1e-2


def _flip(img):
    return get_op("flip")(img, axis="both"), cv2.flip(img, -1), 0


def _affine(img):
    from skimage.transform import AffineTransform, warp

    m = [0.95, -0.1, 12.0, 0.12, 1.02, -8.0]
    tform = AffineTransform(matrix=np.array([m[:3], m[3:], [0, 0, 1]]))
    want = warp(img, tform.inverse, order=1, mode="edge", preserve_range=True)
    got = get_op("affine")(img, matrix=m, mode="nearest")
    return got, want, None  # mean tolerance, checked below


def _gamma(img):
    from skimage.exposure import adjust_gamma

    return get_op("gamma")(img, gamma=0.6), adjust_gamma(img, 0.6), 1.0  # skimage truncates


def _rescale(img):
    from skimage.exposure import rescale_intensity

    want = rescale_intensity(img.astype(float), in_range=(30, 220), out_range=(0, 255))
    return get_op("rescale_intensity")(img, in_low=30.0, in_high=220.0), want, 0.5


def _harris(img):
    gray = (img.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.float32)
    got = get_op("harris")(img, block_size=3, ksize=3, k=0.04)
    g = np.pad(gray.astype(np.float64), 2, mode="symmetric")  # the image extended by mode
    dx = ndimage.sobel(g, axis=1, mode="reflect") / 12
    dy = ndimage.sobel(g, axis=0, mode="reflect") / 12

    def box(a):
        return ndimage.uniform_filter(a, 3, mode="reflect") * 9

    a, b, c = box(dx * dx), box(dx * dy), box(dy * dy)
    want = (a * c - b * b - 0.04 * (a + c) ** 2)[2:-2, 2:-2]
    return got, want, 1e-5 * np.abs(want).max()


CASES = {"box": _box, "bilateral": _bilateral, "scharr": _scharr, "flip": _flip,
         "affine": _affine, "gamma": _gamma, "rescale_intensity": _rescale, "harris": _harris}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_photo_matches_reference(astronaut, name):
    got, want, atol = CASES[name](astronaut)
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.float64) - want)
    if atol is None:
        assert diff.mean() < 1.0  # interpolation at 1/32-pixel positions vs exact ones
    else:
        assert diff.max() <= atol + 1e-9 * np.abs(want).max()


def test_connected_components_of_a_real_mask(camera):
    mask = get_op("threshold")(camera, method="adaptive_mean", block_size=31, offset=5.0)
    got = get_op("connected_components")(mask, connectivity=4)
    want, n = ndimage.label(mask > 0)
    assert got.max() == n > 50
    pairs = np.unique(np.stack([got.ravel(), want.ravel()]), axis=1)
    assert pairs.shape[1] == n + 1  # a one-to-one relabelling (background included)
