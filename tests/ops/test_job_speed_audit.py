"""Fixes from the speed audit of common batch jobs (benchmarks/bench_pipelines.py).

``threshold`` otsu on a uint8 gray image (the ``convert gray → threshold otsu`` job) took
3.5 ms of a 2-megapixel photo in skimage's ``threshold_otsu(image)``: a pass to look for a
single value, every pixel widened to int64 for ``np.bincount``, then two more passes for the
mask. It now counts with OpenCV and thresholds with ``cv2.threshold`` (0.6 ms). The masks must
stay bit for bit what ``(src > threshold_otsu(src)) * 255`` gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.filters import threshold_otsu

from pixelmill.ops.color import convert
from pixelmill.ops.segmentation import threshold


def reference(src: np.ndarray, invert: bool = False) -> np.ndarray:
    mask = src > threshold_otsu(src)
    if invert:
        mask = ~mask
    return mask.astype(np.uint8) * np.uint8(255)


def photos() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for rgb in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
        gray = convert(rgb, to="gray")
        noisy = np.clip(gray + rng.normal(0, 4, gray.shape), 0, 255).astype(np.uint8)
        out += [gray, noisy]
    out.append(data.camera())
    return out


def edge_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [
        np.full((5, 7), 0, np.uint8), np.full((5, 7), 255, np.uint8),
        np.full((4, 4), 77, np.uint8),  # one value: nothing is above it
        np.array([[3, 200]], np.uint8), np.array([[0, 255, 255, 255]], np.uint8),
        np.array([[10, 11, 12, 250]], np.uint8),
        rng.integers(100, 110, (31, 17), dtype=np.uint8),  # empty bins at both ends
        rng.integers(0, 256, (64, 48), dtype=np.uint8),
        (rng.random((50, 60)) < 0.01).astype(np.uint8) * 255,
    ]


@pytest.mark.parametrize("invert", [False, True])
def test_otsu_uint8_masks_are_bit_identical_to_skimage(invert):
    for src in photos() + edge_cases():
        got = threshold(src, method="otsu", invert=invert)
        assert got.dtype == np.uint8 and got.shape == src.shape
        assert np.array_equal(got, reference(src, invert)), src.shape


def test_otsu_of_an_hxwx1_or_strided_image_is_the_same():
    src = photos()[0]
    assert np.array_equal(threshold(src[..., None], method="otsu"), reference(src))
    view = src[::2, 1::3]
    assert np.array_equal(threshold(view, method="otsu"), reference(np.ascontiguousarray(view)))


def test_the_rgb_and_uint16_routes_are_unchanged():
    rgb = data.astronaut()
    from pixelmill.ops._common import gray_float

    g = gray_float(rgb).astype(np.float64)
    assert np.array_equal(threshold(rgb, method="otsu"),
                          (g > threshold_otsu(g)).astype(np.uint8) * 255)
    u16 = photos()[1].astype(np.uint16) * 257
    assert np.array_equal(threshold(u16, method="otsu"), reference(u16))


def test_otsu_uint8_does_not_count_pixels_through_skimage(monkeypatch):
    """Structural: the uint8 route gives skimage the histogram; skimage's own counting of the
    image (int64 widening + bincount, plus the single-value scan) must not run."""
    from skimage.filters import thresholding

    def refuse(*args, **kwargs):
        raise AssertionError("threshold otsu counted a uint8 image's pixels through skimage")

    src = photos()[0]
    expected = reference(src)
    monkeypatch.setattr(thresholding, "histogram", refuse)
    assert np.array_equal(threshold(src, method="otsu"), expected)


def test_convert_then_otsu_job_output_is_unchanged(tmp_path):
    """The benchmarked job end to end: decode, convert gray, otsu, PNG; the written mask is
    the reference mask of the op chain (nothing changed on the way through the job path)."""
    import cv2

    from pixelmill import jobs

    src_dir = tmp_path / "in"
    src_dir.mkdir()
    rgb = np.ascontiguousarray(data.coffee()[:200, :300])
    cv2.imwrite(str(src_dir / "a.png"), rgb[..., ::-1])
    summary = jobs.run([{"op": "convert", "to": "gray"}, {"op": "threshold", "method": "otsu"}],
                       str(src_dir), str(tmp_path / "out"), workers=1, format="png",
                       progress=False, report=False)
    assert summary.ok == 1
    written = cv2.imread(str(next((tmp_path / "out").rglob("a.png"))), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, reference(convert(rgb, to="gray")))
