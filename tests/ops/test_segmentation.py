"""Segmentation against scikit-image (threshold_local, Otsu), OpenCV's Otsu, SciPy's label
and watershed_ift, and invariants for SLIC."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from pixelmill.ops import get_op


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two label images describe the same regions (up to renumbering), background 0 kept."""
    if ((a == 0) != (b == 0)).any():
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


def test_fixed_threshold(image_factory):
    image = image_factory("uint16", channels=1)
    got = get_op("threshold")(image, method="fixed", value=30000.0)
    np.testing.assert_array_equal(got, np.where(image > 30000, 255, 0).astype(np.uint8))
    inv = get_op("threshold")(image, method="fixed", value=30000.0, invert=True)
    np.testing.assert_array_equal(inv, 255 - got)


def test_otsu_matches_opencv(camera):
    got = get_op("threshold")(camera, method="otsu")
    _, want = cv2.threshold(camera, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert (got != want).mean() < 0.01  # thresholds may differ by one grey level


def test_otsu_rgb_uses_luma(astronaut):
    from skimage.filters import threshold_otsu

    got = get_op("threshold")(astronaut, method="otsu")
    luma = astronaut.astype(np.float64) @ [0.299, 0.587, 0.114]
    want = luma > threshold_otsu(luma)
    assert (got.astype(bool) != want).mean() < 0.001


@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror", "constant"])
@pytest.mark.parametrize("method", ["mean", "gaussian"])
def test_adaptive_matches_skimage_threshold_local(image_factory, method, mode):
    from skimage.filters import threshold_local

    image = image_factory("uint8", smooth=1.5)
    got = get_op("threshold")(image, method=f"adaptive_{method}", block_size=15, offset=2.0,
                              mode=mode)
    local = threshold_local(image.astype(np.float64), 15, method=method, offset=2.0, mode=mode)
    want = image > local
    # exact up to float ties between a pixel and its local threshold
    assert (got.astype(bool) != want).sum() <= 2


def test_adaptive_real_photo(camera):
    from skimage.filters import threshold_local

    got = get_op("threshold")(camera, method="adaptive_gaussian", block_size=35)
    want = camera > threshold_local(camera.astype(np.float64), 35, method="gaussian",
                                    mode="reflect")
    assert (got.astype(bool) != want).mean() < 1e-4


def test_threshold_halo_follows_method():
    spec = get_op("threshold")
    assert spec.halo(spec.bind({"method": "fixed", "value": 1})) == 0
    assert spec.halo(spec.bind({"method": "otsu"})) == float("inf")
    assert spec.halo(spec.bind({"method": "adaptive_mean", "block_size": 11})) == 5
    assert spec.halo(spec.bind({"method": "adaptive_gaussian", "block_size": 13})) == 8


@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_scipy_label(connectivity):
    rng = np.random.default_rng(2)
    mask = (ndimage.gaussian_filter(rng.random((60, 70)), 2) > 0.52).astype(np.uint8) * 255
    got = get_op("connected_components")(mask, connectivity=connectivity)
    structure = np.ones((3, 3)) if connectivity == 8 else None
    want, n = ndimage.label(mask > 0, structure)
    assert got.dtype == np.int32 and got.max() == n > 3
    assert _same_partition(got, want)


def test_component_stats_match_scipy(camera):
    mask = get_op("threshold")(camera, method="otsu")
    stats = get_op("component_stats")(mask, min_area=10)
    labels, _n = ndimage.label(mask > 0, np.ones((3, 3)))
    areas = np.bincount(labels.ravel())[1:]
    kept = areas[areas >= 10]
    assert stats["components"] == kept.size
    assert stats["component_area_max"] == kept.max()
    assert stats["component_area_mean"] == pytest.approx(kept.mean())
    assert stats["foreground_fraction"] == pytest.approx((mask > 0).mean())
    empty = get_op("component_stats")(np.zeros((5, 5), np.uint8))
    assert empty == {"components": 0, "component_area_mean": 0.0, "component_area_max": 0,
                     "foreground_fraction": 0.0}


def _two_disks():
    yy, xx = np.mgrid[:60, :80]
    return (((yy - 30) ** 2 + (xx - 25) ** 2 < 15**2) |
            ((yy - 30) ** 2 + (xx - 52) ** 2 < 15**2)).astype(np.uint8) * 255


def test_watershed_distance_splits_touching_disks_at_the_bisector():
    """Two equal overlapping disks: the distance watershed must split them along the
    perpendicular bisector of their centres (x = 38.5), the only symmetric answer."""
    mask = _two_disks()
    got = get_op("watershed")(mask, source="distance", h=2.0)
    assert got.dtype == np.int32 and got.max() == 2
    assert (got[mask == 0] == 0).all() and (got[mask > 0] > 0).all()
    left, right = got[30, 25], got[30, 52]
    assert left != right
    fg = mask > 0
    assert (got[:, :37][fg[:, :37]] == left).all()
    assert (got[:, 41:][fg[:, 41:]] == right).all()
    # without the h threshold every distance maximum seeds a region: at least as many
    assert get_op("watershed")(mask, source="distance").max() >= 2


def test_watershed_image_floods_from_minima():
    yy, xx = np.mgrid[:40, :60]
    relief = np.minimum((yy - 20) ** 2 + (xx - 15) ** 2, (yy - 20) ** 2 + (xx - 45) ** 2)
    relief = relief.astype(np.float32)
    got = get_op("watershed")(relief, h=1.0)
    assert got.max() == 2
    assert got[20, 15] != got[20, 45]
    assert (got[:, :29] == got[20, 15]).all() and (got[:, 31:] == got[20, 45]).all()


def test_slic_invariants(astronaut):
    small = astronaut[::4, ::4]
    labels = get_op("slic")(small, n_segments=50, compactness=10.0)
    n = labels.max()
    assert labels.dtype == np.int32 and labels.min() == 1
    assert 25 <= n <= 100
    assert set(np.unique(labels)) == set(range(1, n + 1))
    for lab in range(1, n + 1):  # each superpixel is one connected region
        assert ndimage.label(labels == lab)[1] == 1


def test_slic_respects_a_strong_edge():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = (255, 255, 255)
    labels = get_op("slic")(image, n_segments=16)
    left, right = set(np.unique(labels[:, :32])), set(np.unique(labels[:, 32:]))
    assert not left & right
    # dtype-independent: the same image as uint16 and float32 gives the same superpixels
    np.testing.assert_array_equal(get_op("slic")(image.astype(np.uint16) * 257, n_segments=16),
                                  labels)
    np.testing.assert_array_equal(
        get_op("slic")(image.astype(np.float32) / 255, n_segments=16), labels)
