"""Region readers return exactly the pixels of a window, for every layout they take."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from pixelmill import regions

BOXES = [(0, 301, 0, 257), (10, 100, 20, 200), (63, 65, 63, 65), (300, 301, 256, 257)]


@pytest.fixture(scope="module", params=[(301, 257, 3), (301, 257)], ids=["rgb", "gray"])
def image(request):
    rng = np.random.default_rng(3)
    return rng.integers(0, 65535, request.param).astype(np.uint16)


@pytest.mark.parametrize("layout", [
    {"tile": (64, 64)}, {"tile": (32, 48)}, {"rowsperstrip": 16}, {"rowsperstrip": 1000},
    {"tile": (64, 64), "compression": "zlib"}, {"tile": (64, 64), "byteorder": ">"},
    {"tile": (64, 64), "bigtiff": True}, {"tile": (16, 16), "compression": "zstd"},
], ids=str)
def test_tiff_windows(tmp_path, image, layout):
    path = str(tmp_path / "in.tif")
    tifffile.imwrite(path, image, **layout)
    source = regions.open_source(path)
    assert source.shape == image.shape and source.dtype == "uint16"
    for y0, y1, x0, x1 in BOXES:
        assert np.array_equal(regions.read_region(source, (y0, y1, x0, x1)), image[y0:y1, x0:x1])


def test_pyramid_levels_and_wrapped_windows(tmp_path, image):
    path = str(tmp_path / "pyr.tif")
    half = image[::2, ::2]
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(image, tile=(64, 64), subifds=1)
        tw.write(half, tile=(64, 64), subfiletype=1)
    source = regions.open_source(path, level=1)
    assert source.shape == half.shape
    assert np.array_equal(regions.read_region(source, (0, 151, 0, 129)), half)
    # boxes outside the image wrap around, like numpy's wrap padding
    full = regions.open_source(path)
    pad = [(5, 5), (7, 7)] + ([(0, 0)] if image.ndim == 3 else [])
    padded = np.pad(image, pad, mode="wrap")
    assert np.array_equal(regions.read_region(full, (-5, 306, -7, 264)), padded)


def test_spilled_huge_strip(tmp_path, image, monkeypatch):
    path = str(tmp_path / "one-strip.tif")
    tifffile.imwrite(path, image, compression="zlib")  # one compressed strip: no random access
    monkeypatch.setattr(regions._source, "MAX_SEGMENT_BYTES", 1000)
    source = regions.open_source(path, spill_uri=str(tmp_path / "spill.npy"))
    assert source.kind == "npy"
    assert np.array_equal(regions.read_region(source, (10, 100, 20, 200)), image[10:100, 20:200])


def test_canvas_writes_tiles_in_place(tmp_path, image):
    path = str(tmp_path / "canvas.tif")
    canvas = regions.create_tiff_canvas(path, image.shape, "uint16", tile=64)
    assert canvas is not None
    for y0 in range(0, 301, 128):
        for x0 in range(0, 257, 128):
            y1, x1 = min(301, y0 + 128), min(257, x0 + 128)
            regions.write_canvas(canvas, (y0, y1, x0, x1), image[y0:y1, x0:x1])
    assert np.array_equal(tifffile.imread(path), image)
    with pytest.raises(ValueError, match="aligned"):
        regions.write_canvas(canvas, (1, 10, 0, 64), image[1:10, :64])


def test_unknown_output_kind():
    with pytest.raises(regions.UsageError, match="BigTIFF"):
        regions.output_kind("out.jpg")
