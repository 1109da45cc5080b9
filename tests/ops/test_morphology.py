"""Morphology against scipy.ndimage's grey morphology with the same footprint and border mode,
and skeletonize against invariants (inside the shape, one pixel wide, topology kept)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pixelmill.ops import get_op
from pixelmill.ops.morphology import structuring_element

MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]


def _scipy(op_name, image, footprint, mode):
    kw = {"footprint": footprint.astype(bool), "mode": mode, "cval": 0.0}
    x = image
    ero = lambda a: ndimage.grey_erosion(a, **kw)  # noqa: E731
    dil = lambda a: ndimage.grey_dilation(a, **kw)  # noqa: E731
    wide = x.astype(np.float64)
    if op_name == "erode":
        return ero(x)
    if op_name == "dilate":
        return dil(x)
    if op_name == "opening":
        return dil(ero(x))
    if op_name == "closing":
        return ero(dil(x))
    if op_name == "gradient":
        return dil(wide) - ero(wide)
    if op_name == "tophat":
        return np.maximum(wide - dil(ero(x)), 0)
    return np.maximum(ero(dil(x)) - wide, 0)  # blackhat


OPS = ["erode", "dilate", "opening", "closing", "gradient", "tophat", "blackhat"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPS)
def test_grey_morphology_matches_scipy(image_factory, name, mode):
    for dtype, shape, size in (("uint8", "ellipse", 5), ("float32", "cross", 3),
                               ("uint16", "rect", 3)):
        image = image_factory(dtype, shape=(30, 36))
        got = get_op(name)(image, shape=shape, size=size, mode=mode)
        want = _scipy(name, image, structuring_element(shape, size), mode)
        assert got.dtype == image.dtype
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{dtype} {shape} {size}")


def test_structuring_elements():
    assert structuring_element("rect", 3).sum() == 9
    assert structuring_element("cross", 5).sum() == 9
    ell = structuring_element("ellipse", 5)
    assert ell.sum() < 25  # corners cut
    assert ell[2].all() and ell[:, 2].all() and ell[0, 0] == 0


def test_morphology_real_photo_rgb(astronaut):
    got = get_op("opening")(astronaut, shape="ellipse", size=7)
    fp = structuring_element("ellipse", 7).astype(bool)
    for c in range(3):
        want = ndimage.grey_opening(astronaut[..., c], footprint=fp, mode="reflect")
        np.testing.assert_array_equal(got[..., c], want)


def test_tophat_keeps_small_bright_spots():
    image = np.zeros((32, 32), np.uint8)
    image[5, 5] = 200  # a speck
    image[15:28, 15:28] = 100  # a large block
    got = get_op("tophat")(image, size=5)
    assert got[5, 5] == 200 and got[20, 20] == 0


def _components(mask):
    return ndimage.label(mask, np.ones((3, 3)))[1]


def test_skeletonize_invariants():
    yy, xx = np.mgrid[:64, :96]
    shape = ((yy - 30) ** 2 / 400 + (xx - 30) ** 2 / 100 < 1) | (
        (np.abs(yy - 40) < 6) & (xx > 50) & (xx < 90))
    got = get_op("skeletonize")((shape * 255).astype(np.uint8))
    skel = got > 0
    assert got.dtype == np.uint8 and set(np.unique(got)) == {0, 255}
    assert skel.sum() > 40
    assert not (skel & ~shape).any()  # inside the shape
    assert _components(skel) == _components(shape)  # topology kept
    # one pixel wide: no 2×2 block entirely on the skeleton
    blocks = skel[:-1, :-1] & skel[1:, :-1] & skel[:-1, 1:] & skel[1:, 1:]
    assert not blocks.any()
    # RGB and float inputs: any non-zero channel is foreground
    rgb = np.zeros((*shape.shape, 3), np.float32)
    rgb[..., 1] = shape
    np.testing.assert_array_equal(get_op("skeletonize")(rgb), got)
