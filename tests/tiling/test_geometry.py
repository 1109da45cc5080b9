"""Property tests of the pure tiling geometry (hypothesis), in the spirit of rasterio's windows."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelmill.tiling import (
    TileWindow,
    crop_box,
    grid,
    grid_shape,
    origin_step,
    scale_box,
    scaled_length,
    tile_halo,
)

sizes = st.integers(min_value=1, max_value=120)
tiles = st.integers(min_value=1, max_value=70)
halos = st.integers(min_value=0, max_value=40)
scales = st.sampled_from([Fraction(1), Fraction(2), Fraction(3), Fraction(4), Fraction(1, 2),
                          Fraction(3, 2), Fraction(2, 3), Fraction(1, 4)])


@settings(max_examples=60, deadline=None)
@given(h=sizes, w=sizes, tile=tiles, halo=halos)
def test_cores_cover_exactly_once(h, w, tile, halo):
    count = np.zeros((h, w), np.int32)
    windows = grid(h, w, tile, halo)
    for win in windows:
        ys, xs = win.slices("core")
        count[ys, xs] += 1
    assert (count == 1).all()
    rows, cols = grid_shape(h, w, tile)
    assert len(windows) == rows * cols
    assert len({(t.row, t.col) for t in windows}) == len(windows)


@settings(max_examples=60, deadline=None)
@given(h=sizes, w=sizes, tile=tiles, halo=halos)
def test_halo_contains_core_and_stays_inside(h, w, tile, halo):
    for win in grid(h, w, tile, halo):
        cy0, cy1, cx0, cx1 = win.core
        hy0, hy1, hx0, hx1 = win.halo
        assert 0 <= hy0 <= cy0 < cy1 <= hy1 <= h
        assert 0 <= hx0 <= cx0 < cx1 <= hx1 <= w
        # the context read is the halo, cut only by the image border
        top, bottom, left, right = win.margins
        assert top == min(halo, cy0) and left == min(halo, cx0)
        assert bottom == min(halo, h - cy1) and right == min(halo, w - cx1)


@settings(max_examples=50, deadline=None)
@given(h=sizes, w=sizes, tile=st.integers(min_value=3, max_value=70), halo=halos, scale=scales)
def test_scaling_then_cropping_gives_scaled_core(h, w, tile, halo, scale):
    step = origin_step(scale)
    # exact tiling of a resampling step needs a whole number of output pixels (see
    # PipelinePlan.size_problem); other sizes are processed whole
    h, w = -(-h // step) * step, -(-w // step) * step
    halo = tile_halo(halo, step)
    out_h, out_w = scaled_length(h, scale), scaled_length(w, scale)
    count = np.zeros((out_h, out_w), np.int32)
    for win in grid(h, w, tile, halo, scale):
        # origins land on whole output pixels
        for v in (*win.core[::2], *win.halo[::2]):
            assert (v * scale).denominator == 1
        hy0, hy1, hx0, hx1 = scale_box(win.halo, scale, (h, w))
        cy0, cy1, cx0, cx1 = crop_box(win, scale, (h, w))
        # the processed halo tile is as large as the op makes it from the halo box's size
        assert (hy1 - hy0, hx1 - hx0) == (
            scaled_length(win.halo[1] - win.halo[0], scale),
            scaled_length(win.halo[3] - win.halo[2], scale),
        )
        assert 0 <= cy0 <= cy1 <= hy1 - hy0 and 0 <= cx0 <= cx1 <= hx1 - hx0
        assert (hy0 + cy0, hy0 + cy1, hx0 + cx0, hx0 + cx1) == scale_box(win.core, scale, (h, w))
        oy0, oy1, ox0, ox1 = scale_box(win.core, scale, (h, w))
        count[oy0:oy1, ox0:ox1] += 1
    assert (count == 1).all()  # the scaled cores tile the output exactly once


@settings(max_examples=60, deadline=None)
@given(h=sizes, w=sizes, tile=tiles, halo=halos)
def test_wrap_windows_keep_full_halo(h, w, tile, halo):
    for win in grid(h, w, tile, halo, wrap=True):
        assert win.margins == (halo, halo, halo, halo)


def test_tile_smaller_than_halo():
    windows = grid(10, 10, 3, 8)
    assert windows[0] == TileWindow(0, 0, (0, 3, 0, 3), (0, 10, 0, 10))
    assert windows[-1].core == (9, 10, 9, 10)
    assert windows[-1].halo == (1, 10, 1, 10)


def test_origins_follow_scale_denominator():
    # ×2/3: origins on multiples of 3, so origin × 2/3 is whole
    windows = grid(20, 20, 7, 4, Fraction(2, 3))
    assert {w.core[0] for w in windows} == {0, 9, 18}
    assert tile_halo(4, 3) == 6 and tile_halo(2.2) == 3 and tile_halo(0) == 0


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_tile_raises(bad):
    with pytest.raises(ValueError, match="tile"):
        grid(10, 10, bad, 0)


def test_bad_scale_raises():
    with pytest.raises(ValueError, match="scale"):
        origin_step(0)
