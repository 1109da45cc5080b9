"""Geometry ops against independent references: NumPy indexing, Pillow, scikit-image, and a
direct evaluation of the interpolation kernels OpenCV documents (Keys a=-0.75, Lanczos-4)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelmill.errors import InvalidParameterError
from pixelmill.ops import get_op
from pixelmill.ops.geometry import output_size

SK_MODE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
           "constant": "constant"}


def _kernel_resize_1d(x: np.ndarray, factor: float, kernel, taps: int, normalize: bool):
    """Resample axis 0 with half-pixel centres and clamped indices, by direct summation."""
    n = x.shape[0]
    m = round(n * factor)
    out = np.zeros((m, *x.shape[1:]))
    for i in range(m):
        src = (i + 0.5) / factor - 0.5
        x0 = math.floor(src)
        ks = np.arange(x0 - taps + 1, x0 + taps + 1)
        w = np.array([kernel(src - k) for k in ks])
        if normalize:
            w = w / w.sum()
        idx = np.clip(ks, 0, n - 1)
        out[i] = np.tensordot(w, x[idx].astype(np.float64), axes=(0, 0))
    return out


def _keys(t, a=-0.75):
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _lanczos4(t):
    return 1.0 if t == 0 else float(np.sinc(t) * np.sinc(t / 4)) if abs(t) < 4 else 0.0


def _separable(image, factor, kernel, taps, normalize):
    y = _kernel_resize_1d(image, factor, kernel, taps, normalize)
    return np.swapaxes(_kernel_resize_1d(np.swapaxes(y, 0, 1), factor, kernel, taps, normalize),
                       0, 1)


@pytest.mark.parametrize(("method", "kernel", "taps", "normalize"), [
    ("bicubic", _keys, 2, False), ("lanczos", _lanczos4, 4, True),
    ("bilinear", lambda t: max(0.0, 1 - abs(t)), 1, False)])
@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_resize_upscale_matches_kernel_definition(image_factory, method, kernel, taps, normalize,
                                                  factor):
    image = image_factory("float32", channels=3, shape=(12, 16))
    got = get_op("resize")(image, factor=factor, method=method)
    want = _separable(image, factor, kernel, taps, normalize)
    np.testing.assert_allclose(got, want, atol=2e-4)  # OpenCV stores its weights in float32


def test_resize_bilinear_matches_skimage(image_factory):
    from skimage.transform import resize as sk_resize

    image = image_factory("float32", channels=3, shape=(30, 40))
    got = get_op("resize")(image, width=100, height=75, method="bilinear")
    want = sk_resize(image, (75, 100), order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_resize_area_is_the_block_mean(image_factory, dtype):
    from skimage.transform import downscale_local_mean

    image = image_factory(dtype, channels=3, shape=(48, 64))
    got = get_op("resize")(image, factor=0.25, method="area")
    want = downscale_local_mean(image.astype(np.float64), (4, 4, 1))
    if dtype == "float32":
        np.testing.assert_allclose(got, want, atol=1e-5)
    else:
        assert np.abs(got - np.rint(want)).max() <= 1


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize(("shape", "size"), [
    ((45, 60), {"width": 32, "height": 24}),  # 15 -> 8 both ways (a 1920x1080 photo at 1/2)
    ((48, 64), {"factor": 0.75}),  # 4 -> 3
    ((40, 60), {"width": 45, "height": 20}),  # 2 -> 1 down, 4 -> 3 across
])
def test_resize_area_fractional_is_the_exact_area_mean(image_factory, dtype, channels, shape,
                                                       size):
    """A non-integer area shrink averages each output pixel's exact footprint: the same as
    repeating every pixel q times and taking the mean of p×p blocks (scikit-image), p/q the
    factor in lowest terms; and OpenCV's INTER_AREA up to a level at rare .5 ties."""
    from skimage.transform import downscale_local_mean

    from pixelmill.ops.geometry import _area_shrink

    image = image_factory(dtype, channels=channels, shape=shape)
    got = get_op("resize")(image, method="area", **size)
    oh, ow = got.shape[:2]
    (pv, qv), (pw, qw) = [(n // math.gcd(n, m), m // math.gcd(n, m))
                          for n, m in ((shape[0], oh), (shape[1], ow))]
    fine = image.astype(np.float64).repeat(qv, axis=0).repeat(qw, axis=1)
    want = downscale_local_mean(fine, (pv, pw) + (1,) * (image.ndim - 2))
    assert _area_shrink(image, oh, ow) is not None  # the block-matrix path ran
    assert got.dtype == image.dtype and got.shape == want.shape
    if dtype == "float32":
        np.testing.assert_allclose(got, want, atol=1e-5)
        return
    assert np.abs(got - np.rint(want)).max() <= 1
    assert np.mean(got != np.rint(want)) < 0.01  # only exact .5 ties may round the other way
    ref = np.stack([cv2.resize(np.ascontiguousarray(image[..., i]) if image.ndim == 3 else image,
                               (ow, oh), interpolation=cv2.INTER_AREA)
                    for i in range(channels)], -1).reshape(got.shape)
    diff = np.abs(got.astype(np.int64) - ref)
    assert diff.max() <= 1 and np.mean(diff) < 0.01


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize(("factor", "rows"), [(0.35, 20), (0.75, 4), (0.6, 5)])
def test_resize_area_pixel_does_not_depend_on_where_the_image_starts(dtype, factor, rows):
    """Float weights summed by BLAS kernels gave a pixel whose value depended on its row's
    place in the product: a uint16 image cropped by whole periods differed from the full one
    by a level (an op audit). Integer weights make every sum exact, in any order."""
    top = np.iinfo(dtype).max
    for seed in range(6):
        image = (np.random.default_rng(seed).random((120, 140, 3)) * top).astype(dtype)
        full = get_op("resize")(image, factor=factor, method="area")
        part = get_op("resize")(image[rows:], factor=factor, method="area")
        out_rows = round(rows * factor)
        np.testing.assert_array_equal(full[out_rows:], part)


def test_resize_area_block_path_only_where_it_pays():
    from pixelmill.ops.geometry import _area_shrink

    img = np.zeros((540, 960, 3), np.uint8)
    assert _area_shrink(img, 288, 512) is not None  # 15 -> 8
    assert _area_shrink(img, 270, 480) is None  # integer factor: OpenCV's vectorised path
    assert _area_shrink(img, 1080, 1920) is None  # enlarging
    assert _area_shrink(np.zeros((750, 1000, 3), np.uint8), 384, 512) is None  # 125 -> 64
    assert _area_shrink(img.astype(np.float64), 288, 512) is None


def test_resize_area_real_photo_matches_pillow_reduce(astronaut):
    got = get_op("resize")(astronaut, long_side=128, method="area")
    want = np.asarray(Image.fromarray(astronaut).reduce(4))
    assert got.shape == (128, 128, 3)
    assert np.abs(got.astype(int) - want).max() <= 1


def test_resize_nearest_is_index_selection(image_factory):
    image = image_factory("uint16", channels=3, shape=(20, 30))
    np.testing.assert_array_equal(get_op("resize")(image, factor=0.5, method="nearest"),
                                  image[1::2, 1::2])
    np.testing.assert_array_equal(get_op("resize")(image, factor=2.0, method="nearest"),
                                  image.repeat(2, axis=0).repeat(2, axis=1))


@pytest.mark.parametrize(("kw", "shape"), [
    ({"width": 50}, (25, 50)), ({"height": 10}, (10, 20)), ({"long_side": 30}, (15, 30)),
    ({"width": 7, "height": 9}, (9, 7)), ({"factor": 0.3}, (12, 24)), ({"factor": 1e-3}, (1, 1)),
])
def test_resize_sizes(kw, shape):
    image = np.zeros((40, 80), np.uint8)
    assert get_op("resize")(image, **kw).shape == shape
    assert output_size(image.shape, **kw) == shape


def test_resize_scale_declared():
    spec = get_op("resize")
    assert spec.scale(spec.bind({"factor": 0.5})) == 0.5
    assert spec.scale(spec.bind({"long_side": 64})) is None
    assert spec.halo(spec.bind({"factor": 2, "method": "lanczos"})) == 4


def test_crop_center_crop_pad(image_factory):
    image = image_factory("uint8", channels=3, shape=(20, 30))
    np.testing.assert_array_equal(get_op("crop")(image, x=5, y=3, width=10, height=4),
                                  image[3:7, 5:15])
    assert get_op("crop")(image, x=25, y=15, width=10, height=10).shape == (5, 5, 3)
    with pytest.raises(InvalidParameterError, match="outside"):
        get_op("crop")(image, x=30, y=0, width=1, height=1)
    np.testing.assert_array_equal(get_op("center_crop")(image, width=10, height=10),
                                  image[5:15, 10:20])
    assert get_op("center_crop")(image, width=100, height=8).shape == (8, 30, 3)


@pytest.mark.parametrize(("mode", "border"), [
    ("reflect", cv2.BORDER_REFLECT), ("mirror", cv2.BORDER_REFLECT_101),
    ("nearest", cv2.BORDER_REPLICATE), ("wrap", cv2.BORDER_WRAP),
    ("constant", cv2.BORDER_CONSTANT)])
def test_pad_matches_opencv_copymakeborder(image_factory, mode, border):
    image = image_factory("float32", channels=3, shape=(10, 12))
    got = get_op("pad")(image, top=1, bottom=3, left=4, right=2, mode=mode, cval=0.25)
    want = cv2.copyMakeBorder(image, 1, 3, 4, 2, border, value=(0.25, 0.25, 0.25))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
@pytest.mark.parametrize("angle", [17.0, -123.5])
def test_rotate_matches_skimage(image_factory, mode, angle):
    """OpenCV quantizes sample positions to 1/32 pixel: on a smooth image that costs < 1e-2."""
    from skimage.transform import rotate as sk_rotate

    image = image_factory("float32", channels=3, shape=(40, 56), smooth=2.0)
    got = get_op("rotate")(image, angle=angle, mode=mode, cval=0.5)
    want = sk_rotate(image, angle, order=1, mode=SK_MODE[mode], cval=0.5, preserve_range=True)
    diff = np.abs(got - want)
    assert diff.mean() < 2e-3 and diff.max() < 2e-2


def test_rotate_real_photo_matches_skimage(astronaut):
    from skimage.transform import rotate as sk_rotate

    got = get_op("rotate")(astronaut, angle=33.0, method="bicubic", mode="nearest")
    want = sk_rotate(astronaut, 33.0, order=3, mode="edge", preserve_range=True)
    assert np.abs(got.astype(float) - want).mean() < 1.5  # Keys vs B-spline cubic


def test_rotate_expand_holds_the_whole_image():
    from skimage.transform import rotate as sk_rotate

    image = np.ones((30, 50), np.float32)
    got = get_op("rotate")(image, angle=30.0, expand=True)
    want = sk_rotate(image, 30.0, resize=True, order=1)
    assert abs(got.shape[0] - want.shape[0]) <= 1 and abs(got.shape[1] - want.shape[1]) <= 1
    assert abs(got.sum() - image.sum()) < 0.01 * image.sum()  # nothing cut off


@pytest.mark.parametrize("angle", [90, 180, 270, -90, 450])
def test_rotate_right_angles_are_exact(image_factory, angle):
    from skimage.transform import rotate as sk_rotate

    image = image_factory("uint16", shape=(10, 14))
    got = get_op("rotate")(image, angle=float(angle))
    want = sk_rotate(image, angle, resize=True, order=0, preserve_range=True).astype(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_rotate_scale_declared():
    spec = get_op("rotate")
    for params, scale in (({"angle": 30}, 1.0), ({"angle": 30, "expand": True}, None),
                          ({"angle": 180}, 1.0), ({"angle": 90}, None), ({"angle": -270}, None)):
        assert spec.scale(spec.bind(params)) == scale, params
        out = spec(np.zeros((10, 20), np.uint8), **params)
        assert (out.shape == (10, 20)) == (scale == 1.0), params


@pytest.mark.parametrize(("axis", "code"), [("horizontal", 1), ("vertical", 0), ("both", -1)])
def test_flip_matches_opencv(image_factory, axis, code):
    image = image_factory("uint8", channels=3)
    np.testing.assert_array_equal(get_op("flip")(image, axis=axis), cv2.flip(image, code))


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect"])
def test_affine_matches_skimage_warp(image_factory, mode):
    from skimage.transform import AffineTransform, warp

    image = image_factory("float32", shape=(40, 50), smooth=2.0)
    m = [0.9, 0.2, 3.0, -0.15, 1.1, -2.0]
    got = get_op("affine")(image, matrix=m, mode=mode)
    tform = AffineTransform(matrix=np.array([m[:3], m[3:], [0, 0, 1]]))
    want = warp(image, tform.inverse, order=1, mode=SK_MODE[mode], preserve_range=True)
    diff = np.abs(got - want)
    assert diff.mean() < 2e-3 and diff.max() < 2e-2
