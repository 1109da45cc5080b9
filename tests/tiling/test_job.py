"""The tiled job end to end: readers, writers, manifest rows, global ops, failures, the CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
import zarr

from pixelmill import regions
from pixelmill.errors import TilingError, UsageError
from pixelmill.manifest import read_manifest
from pixelmill.pipeline import load_pipeline
from pixelmill.tiled import run_tiled

from .conftest import make_image

PIPE = [{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask", "radius": 1.0}]


def _read_out(uri: str) -> np.ndarray:
    if uri.endswith(".zarr"):
        src = regions.open_source(uri)
        return regions.read_region(src, (0, src.height, 0, src.width))
    return tifffile.imread(uri)


def _tiff(path, image, **kw):
    tifffile.imwrite(path, image, photometric="rgb" if image.ndim == 3 else "minisblack", **kw)
    return str(path)


@pytest.fixture(scope="module")
def rgb():
    return make_image((301, 263, 3), "uint8", seed=5)


@pytest.mark.parametrize("out_ext", [".tif", ".zarr"])
@pytest.mark.parametrize("kind", ["tiled-bigtiff", "striped-tiff", "npy", "zarr", "ome-zarr",
                                  "png"])
def test_every_reader_and_writer_gives_the_whole_image_result(tmp_path, rgb, kind, out_ext,
                                                              inline_engine):
    if kind == "tiled-bigtiff":
        src = _tiff(tmp_path / "in.tif", rgb, tile=(64, 64), bigtiff=True, compression="zlib")
    elif kind == "striped-tiff":
        src = _tiff(tmp_path / "in.tif", rgb, rowsperstrip=16)
    elif kind == "npy":
        src = str(tmp_path / "in.npy")
        np.save(src, rgb)
    elif kind == "zarr":  # a plain array, H×W×C
        src = str(tmp_path / "in.zarr")
        zarr.create_array(src, shape=rgb.shape, chunks=(50, 50, 3), dtype="uint8")[:] = rgb
    elif kind == "ome-zarr":  # a multiscale group, C×Y×X
        src = str(tmp_path / "in.zarr")
        group = regions.create_tile_store(src, rgb.shape, "uint8", (64, 64))
        regions.write_tile(group["0"], (0, 301, 0, 263), rgb)
        regions.build_pyramid(group, 2)
    else:
        from PIL import Image

        src = str(tmp_path / "in.png")
        Image.fromarray(rgb).save(src)
    out = str(tmp_path / f"out{out_ext}")
    summary = run_tiled(PIPE, src, out, tile=64, engine=inline_engine, progress=False)
    assert summary.status == "ok", summary.reason
    assert summary.tiles == 5 * 5 and summary.ok == 25
    expected = load_pipeline(PIPE)(rgb)
    result = _read_out(out)
    assert result.shape == expected.shape
    assert np.abs(result.astype(int) - expected).max() <= 1  # unsharp: float rounding
    assert np.count_nonzero(result != expected) <= expected.size // 1000
    # nothing but the output and its manifest is left beside it
    left = sorted(os.listdir(tmp_path))
    assert [n for n in left if n.startswith(".")] == [], left


def test_pyramidal_tiff_in_and_out(tmp_path, rgb, inline_engine):
    out = str(tmp_path / "pyr.tif")
    s = run_tiled([{"op": "median", "size": 3}], _tiff(tmp_path / "in.tif", rgb, tile=(32, 32)),
                  out, tile=100, engine=inline_engine, pyramid=True, progress=False)
    assert s.status == "ok"
    with tifffile.TiffFile(out) as tif:
        levels = tif.series[0].levels
        assert [lev.shape for lev in levels] == [(301, 263, 3), (150, 131, 3)]
        assert tif.pages[0].is_tiled and tif.is_bigtiff
        base, half = levels[0].asarray(), levels[1].asarray()
    import cv2

    assert np.array_equal(half, cv2.resize(base[:300, :262], (131, 150),
                                           interpolation=cv2.INTER_AREA))
    # the reduced level can be the input of another job
    out2 = str(tmp_path / "from-level1.zarr")
    s2 = run_tiled([{"op": "sobel"}], out, out2, tile=64, level=1, engine=inline_engine,
                   progress=False)
    assert s2.status == "ok" and (s2.width, s2.height) == (131, 150)
    np.testing.assert_allclose(_read_out(out2), load_pipeline([{"op": "sobel"}])(half),
                               rtol=1e-5, atol=1e-3)


def test_scale_changing_pipeline_and_memory_urls(rgb, inline_engine):
    import fsspec

    fs = fsspec.filesystem("memory")
    src = "memory://tiled-test/in.npy"
    with fs.open("/tiled-test/in.npy", "wb") as f:
        np.save(f, rgb[:300, :262])
    pipe = [{"op": "resize", "factor": 2.0, "method": "bicubic"}, {"op": "gaussian"}]
    for out in ("memory://tiled-test/out.zarr", "memory://tiled-test/out.tif"):
        s = run_tiled(pipe, src, out, tile=50, engine=inline_engine, progress=False)
        assert s.status == "ok" and (s.out_width, s.out_height) == (524, 600)
        if out.endswith(".zarr"):
            result = _read_out(out)
        else:
            with fs.open("/tiled-test/out.tif", "rb") as f:
                result = tifffile.imread(f)
        assert np.array_equal(result, load_pipeline(pipe)(rgb[:300, :262]))
    rows = read_manifest("memory://tiled-test/out.tif.manifest.parquet")
    tiles = [r for r in rows if "#tile=" in r["key"]]
    assert len(tiles) == 6 * 6 and {r["status"] for r in tiles} == {"ok"}
    assert tiles[0]["key"].startswith(src + "#tile=")
    image_row = next(r for r in rows if r["key"] == src)
    assert image_row["out_width"] == 524 and image_row["status"] == "ok"


def test_global_op_runs_whole_when_it_fits_and_is_refused_otherwise(tmp_path, rgb,
                                                                   inline_engine):
    src = _tiff(tmp_path / "in.tif", rgb, tile=(64, 64))
    pipe = [{"op": "gaussian"}, {"op": "equalize_hist"}, {"op": "sharpness"}]
    out = str(tmp_path / "eq.tif")
    s = run_tiled(pipe, src, out, engine=inline_engine, memory="4GB", progress=False)
    assert s.status == "ok" and s.tiles == 1
    result = load_pipeline(pipe).run(rgb)
    assert np.array_equal(tifffile.imread(out), result.image)
    assert s.measures and set(result.measures) <= set(s.measures)
    with pytest.raises(TilingError, match="equalize_hist"):
        run_tiled(pipe, src, str(tmp_path / "no.tif"), engine=inline_engine, memory="50MB",
                  progress=False)
    assert not os.path.exists(tmp_path / "no.tif")
    assert not os.path.exists(tmp_path / ".no.tif.pixelmill-tiles.zarr")


def test_usage_errors_before_any_work(tmp_path, rgb, inline_engine):
    src = _tiff(tmp_path / "in.tif", rgb, tile=(64, 64))
    with pytest.raises(UsageError, match="OUTPUT"):
        run_tiled(PIPE, src, str(tmp_path / "out.png"), engine=inline_engine)
    with pytest.raises(UsageError, match="memory"):
        run_tiled(PIPE, src, str(tmp_path / "out.tif"), memory="lots", engine=inline_engine)
    with pytest.raises(UsageError, match="memory"):
        run_tiled(PIPE, src, str(tmp_path / "out.tif"), memory="10MB", engine=inline_engine)
    with pytest.raises(UsageError, match=r"steps\[0\]\.sigma"):
        run_tiled([{"op": "gaussian", "sigma": -1}], src, str(tmp_path / "out.tif"),
                  engine=inline_engine)
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_a_corrupt_tile_fails_the_image_with_its_name(tmp_path, rgb, inline_engine):
    src = _tiff(tmp_path / "in.tif", rgb, tile=(64, 64), compression="zlib")
    with tifffile.TiffFile(src) as tif:
        offset = tif.pages[0].dataoffsets[7]  # the tile at row 1, col 2 of the file
    with open(src, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 64)
    out = str(tmp_path / "out.tif")
    s = run_tiled(PIPE, src, out, tile=64, engine=inline_engine, progress=False)
    assert s.status == "failed" and s.output is None and not os.path.exists(out)
    assert s.failed >= 1 and "tile" in s.reason and "resume" in s.reason
    rows = {r["key"]: r for r in read_manifest(out + ".manifest.parquet")}
    assert rows[src]["status"] == "failed"
    bad = [k for k, r in rows.items() if r["status"] == "failed" and "#tile=" in k]
    assert f"{src}#tile=1,2" in bad


def test_local_engine_and_cli(tmp_path, rgb):
    from click.testing import CliRunner

    from pixelmill.cli import cli

    src = _tiff(tmp_path / "in.tif", rgb, tile=(64, 64), bigtiff=True)
    (tmp_path / "p.yaml").write_text("steps:\n  - op: gaussian\n    sigma: 2\n  - op: median\n")
    out = str(tmp_path / "out.tif")
    res = CliRunner().invoke(cli, ["tile", str(tmp_path / "p.yaml"), src, out, "--tile", "96",
                                   "--workers", "2", "--memory", "2GB", "--quiet"])
    assert res.exit_code == 0, res.output
    expected = load_pipeline(str(tmp_path / "p.yaml"))(rgb)
    assert np.array_equal(tifffile.imread(out), expected)
    res = CliRunner().invoke(cli, ["tile", str(tmp_path / "p.yaml"), src, out, "--memory",
                                   "2 parsecs"])
    assert res.exit_code != 0 and "memory" in str(res.exception or res.output)


def test_no_more_workers_than_tiles(tmp_path, rgb):
    """A 1-tile job asked for 3 workers started 3 (each importing the pipeline's libraries:
    torch for an upscale) and gave 2 of them nothing to do."""
    src = _tiff(tmp_path / "in.tif", rgb, tile=(64, 64), bigtiff=True)
    summary = run_tiled(PIPE, src, str(tmp_path / "out.tif"), tile=512, workers=3,
                        engine="local", progress=False)
    assert (summary.status, summary.tiles, summary.workers) == ("ok", 1, 1)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), load_pipeline(PIPE)(rgb))
