"""Invariants that hold whatever the implementation: identities, inverses, dualities, orderings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelmill.ops import get_op


@pytest.fixture
def rgb(image_factory):
    return image_factory("uint8", channels=3, smooth=1.0)


def test_identities(rgb):
    for name, params in [("gaussian", {"sigma": 0.0}), ("gamma", {"gamma": 1.0}),
                         ("box", {"size": 1}), ("median", {"size": 1}),
                         ("bilateral", {"diameter": 1}), ("unsharp_mask", {"amount": 0.0}),
                         ("resize", {"factor": 1.0, "method": "bicubic"}),
                         ("rotate", {"angle": 360.0}), ("pad", {}),
                         ("rescale_intensity", {"in_low": 0.0, "in_high": 255.0}),
                         ("affine", {"matrix": [1, 0, 0, 0, 1, 0], "method": "nearest"}),
                         ("erode", {"size": 1}), ("convert", {"to": "rgb"})]:
        np.testing.assert_array_equal(get_op(name)(rgb, **params), rgb, err_msg=name)


def test_inverses(rgb):
    for axis in ("horizontal", "vertical", "both"):
        np.testing.assert_array_equal(get_op("flip")(get_op("flip")(rgb, axis=axis), axis=axis),
                                      rgb)
    out = rgb
    for _ in range(4):
        out = get_op("rotate")(out, angle=90.0)
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(get_op("rotate")(get_op("rotate")(rgb, angle=90.0),
                                                   angle=-90.0), rgb)
    padded = get_op("pad")(rgb, top=2, bottom=3, left=4, right=5, mode="mirror")
    np.testing.assert_array_equal(get_op("crop")(padded, x=4, y=2, width=rgb.shape[1],
                                                 height=rgb.shape[0]), rgb)
    np.testing.assert_array_equal(
        get_op("resize")(get_op("resize")(rgb, factor=3.0, method="nearest"), factor=1 / 3,
                         method="nearest"), rgb)


@pytest.mark.parametrize("mode", ["reflect", "nearest", "wrap"])
def test_morphology_duality_and_ordering(image_factory, mode):
    """erode(x) = -dilate(-x); opening <= x <= closing; opening and closing are idempotent."""
    x = image_factory("float32", smooth=1.0)
    kw = {"shape": "ellipse", "size": 5, "mode": mode}
    np.testing.assert_array_equal(get_op("erode")(x, **kw), -get_op("dilate")(-x, **kw))
    opened, closed = get_op("opening")(x, **kw), get_op("closing")(x, **kw)
    inner = (slice(4, -4), slice(4, -4))
    assert (opened[inner] <= x[inner]).all() and (x[inner] <= closed[inner]).all()
    np.testing.assert_array_equal(get_op("opening")(opened, **kw)[inner], opened[inner])
    np.testing.assert_array_equal(get_op("closing")(closed, **kw)[inner], closed[inner])
    grad = get_op("gradient")(x, **kw)
    np.testing.assert_allclose(grad, get_op("dilate")(x, **kw) - get_op("erode")(x, **kw))


def test_filters_preserve_a_constant_image():
    flat = np.full((20, 24, 3), 137, np.uint8)
    for name in ("gaussian", "box", "median", "bilateral", "unsharp_mask", "nl_means", "erode",
                 "opening", "white_balance_grayworld"):
        np.testing.assert_array_equal(get_op(name)(flat), flat, err_msg=name)
    for name in ("sobel", "scharr", "laplacian", "harris"):
        assert not get_op(name)(flat).any(), name


def test_gradients_are_antisymmetric(image_factory):
    x = image_factory("float32")
    for name in ("sobel", "scharr"):
        gx = get_op(name)(x, direction="x")
        np.testing.assert_allclose(get_op(name)(x[:, ::-1], direction="x"), -gx[:, ::-1],
                                   atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300),
       factor=st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 0.75, 1.5, 2.0, 3.0]),
       method=st.sampled_from(["nearest", "bilinear", "bicubic", "area", "lanczos"]))
def test_resize_output_size_is_round_of_size_times_factor(h, w, factor, method):
    out = get_op("resize")(np.zeros((h, w), np.uint8), factor=factor, method=method)
    assert out.shape == (max(1, round(h * factor)), max(1, round(w * factor)))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 400), w=st.integers(1, 400), side=st.integers(1, 300))
def test_resize_long_side(h, w, side):
    out = get_op("resize")(np.zeros((h, w), np.uint8), long_side=side)
    assert max(out.shape) == side
    assert abs(out.shape[0] / out.shape[1] - h / w) <= max(h / w, 1) * 2 / min(out.shape) + 1e-9
