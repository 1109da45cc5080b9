"""Outputs of tiled jobs checked with independent readers (tifffile, zarr), not pixelmill's:
pyramid levels (sizes, content, dtype), codecs that cannot hold an output, OME-Zarr metadata."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import tifffile
import zarr

from pixelmill import regions
from pixelmill.cli import main
from pixelmill.errors import ExitCode, InvalidParameterError
from pixelmill.pipeline import load_pipeline
from pixelmill.tiled import run_tiled

from .conftest import make_image

BLUR = [{"op": "gaussian", "sigma": 1}]
LABELS = [{"op": "threshold"}, {"op": "connected_components"}]


def _write_input(path, image: np.ndarray) -> str:
    colour = image.ndim == 3 and image.shape[2] >= 3
    alpha = image.ndim == 3 and image.shape[2] in (2, 4)
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb" if colour else "minisblack",
                     extrasamples=["unassalpha"] if alpha else None)
    return str(path)


def _half(level: np.ndarray) -> np.ndarray:
    """An independent 2x2 area average (odd last row/column left out), in float64."""
    h, w = level.shape[0] // 2, level.shape[1] // 2
    a = level[: 2 * h, : 2 * w].astype(np.float64)
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4


@pytest.mark.parametrize("shape,dtype", [((301, 517), "uint16"), ((301, 517, 4), "uint8"),
                                         ((301, 517, 3), "float32")])
def test_pyramid_levels_are_halved_area_averages(tmp_path, inline_engine, shape, dtype):
    image = make_image(shape, dtype)
    src, out = _write_input(tmp_path / "in.tif", image), str(tmp_path / "out.tif")
    run_tiled(BLUR, src, out, tile=64, engine=inline_engine, pyramid=True, progress=False)
    with tifffile.TiffFile(out) as tif:
        levels = [lev.asarray() for lev in tif.series[0].levels]
        page = tif.pages[0]
        assert (page.extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)) == (len(shape) == 3
                                                                             and shape[2] == 4)
    assert [lev.shape[:2] for lev in levels] == [(301, 517), (150, 258), (75, 129)]
    assert all(lev.dtype == np.dtype(dtype) for lev in levels)
    tol = 1e-6 if dtype == "float32" else 0.5 + 1e-9  # integer levels are rounded means
    for above, level in itertools.pairwise(levels):
        assert np.abs(level.astype(np.float64) - _half(above)).max() <= tol


def test_pyramid_of_a_label_image(tmp_path, inline_engine):
    """int32 labels (connected_components) made `--pyramid` crash in cv2.resize (no INTER_AREA
    for int32): levels now keep every other label, never an average of two."""
    image = make_image((301, 517), "uint8")
    src = _write_input(tmp_path / "in.tif", image)
    whole = load_pipeline(LABELS)(image)
    assert whole.dtype == np.int32
    out = str(tmp_path / "labels.tif")
    s = run_tiled(LABELS, src, out, engine=inline_engine, pyramid=True, progress=False)
    assert s.status == "ok"
    with tifffile.TiffFile(out) as tif:
        levels = [lev.asarray() for lev in tif.series[0].levels]
    assert np.array_equal(levels[0], whole)
    assert np.array_equal(levels[1], whole[:300:2, :516:2])
    zout = str(tmp_path / "labels.zarr")
    run_tiled(LABELS, src, zout, engine=inline_engine, pyramid=True, progress=False)
    group = zarr.open_group(zout, mode="r")
    assert np.array_equal(group["1"][:], whole[:300:2, :516:2])


@pytest.mark.parametrize("codec,dtype,channels", [("jpeg", "uint16", 3), ("jpeg", "uint16", None),
                                                  ("jpeg2000", "int32", None)])
def test_a_codec_that_garbles_the_dtype_is_refused(codec, dtype, channels):
    """tifffile writes uint16 as 12-bit JPEG (RGB uint16 came back with errors of ~50% of the
    range, and was accepted), and JPEG 2000 garbles int32: a round trip is now checked."""
    with pytest.raises(InvalidParameterError, match=f"--compression {codec}"):
        regions.check_compression(codec, "tiff", dtype, channels)


@pytest.mark.parametrize("codec,dtype,channels", [("jpeg", "uint8", 3), ("jpeg", "uint8", None),
                                                  ("zstd", "int32", None), ("lzw", "uint16", 4),
                                                  ("png", "uint16", 3), ("lerc", "float32", 3)])
def test_codecs_that_hold_the_dtype_are_kept(codec, dtype, channels):
    assert regions.check_compression(codec, "tiff", dtype, channels) == codec


def test_uint16_rgb_jpeg_is_a_usage_error_before_any_work(tmp_path, capsys):
    image = make_image((90, 70, 3), "uint16")
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, image, photometric="rgb", tile=(32, 32))
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    out = tmp_path / "out" / "o.tif"
    code = main(["tile", str(pipe), str(src), str(out), "--compression", "jpeg", "-q"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert "--compression jpeg" in err and "uint16, 3 channels" in err
    assert not out.parent.exists() or not os.listdir(out.parent)


@pytest.mark.parametrize("shape", [(301, 517), (301, 517, 3)])
def test_ome_zarr_levels_name_their_dimensions(tmp_path, inline_engine, shape):
    """OME-Zarr 0.5: each level's ``dimension_names`` must match the multiscales axes."""
    image = make_image(shape, "uint8")
    src, out = _write_input(tmp_path / "in.tif", image), str(tmp_path / "out.zarr")
    run_tiled(BLUR, src, out, tile=64, engine=inline_engine, pyramid=True,
              compression="zstd", progress=False)
    group = zarr.open_group(out, mode="r")
    ms = group.attrs["ome"]["multiscales"][0]
    names = tuple(ax["name"] for ax in ms["axes"])
    assert len(ms["datasets"]) == 3
    base = group[ms["datasets"][0]["path"]].shape
    for ds in ms["datasets"]:
        arr = group[ds["path"]]
        assert arr.metadata.dimension_names == names
        scale = ds["coordinateTransformations"][0]["scale"]
        assert [b // s for b, s in zip(base, scale, strict=True)] == list(arr.shape)
