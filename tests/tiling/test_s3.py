"""Tiled jobs on object storage: input, tile store and outputs on s3:// (moto on loopback)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from pixelmill import regions
from pixelmill.manifest import read_manifest
from pixelmill.pipeline import load_pipeline
from pixelmill.tiled import run_tiled
from tests._s3server import s3_server

from .conftest import make_image

PIPE = [{"op": "median", "size": 3}, {"op": "gaussian", "sigma": 1.5}]


@pytest.fixture(scope="module")
def s3():
    with s3_server(buckets=["slides"]) as so:
        yield so


def test_tiled_job_on_s3(s3, inline_engine):
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    image = make_image((200, 170, 3), "uint8", seed=9)
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, tile=(64, 64), compression="zlib", photometric="rgb")
    fs.pipe("slides/in.tif", buf.getvalue())
    expected = load_pipeline(PIPE)(image)

    s = run_tiled(PIPE, "s3://slides/in.tif", "s3://slides/out.zarr", tile=64,
                  engine=inline_engine, storage_options=s3, progress=False)
    assert s.status == "ok", s.reason
    src = regions.open_source("s3://slides/out.zarr", s3)
    assert np.array_equal(regions.read_region(src, (0, 200, 0, 170)), expected)

    # a TIFF output goes through a tile store on s3 and is uploaded whole
    s = run_tiled(PIPE, "s3://slides/in.tif", "s3://slides/out.tif", tile=64,
                  engine=inline_engine, storage_options=s3, progress=False)
    assert s.status == "ok", s.reason
    assert np.array_equal(tifffile.imread(io.BytesIO(fs.cat("slides/out.tif"))), expected)
    rows = read_manifest("s3://slides/out.tif.manifest.parquet", s3)
    assert sum("#tile=" in r["key"] for r in rows) == 4 * 3
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("slides")) == [
        "in.tif", "out.tif", "out.tif.manifest.parquet", "out.zarr",
        "out.zarr.manifest.parquet"]


def test_resume_on_s3_never_takes_over_an_output_no_run_left(s3, inline_engine):
    """A file of the user's at an s3 OUTPUT, no manifest: --resume replaced it (exit 0) where
    on a local disk it is refused; an interrupted run's in-place Zarr is still taken over."""
    import s3fs

    from pixelmill.errors import UsageError

    fs = s3fs.S3FileSystem(**s3)
    image = make_image((100, 90, 3), "uint8", seed=4)
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, tile=(32, 32), photometric="rgb")
    fs.pipe("slides/in2.tif", buf.getvalue())
    fs.pipe("slides/mine.tif", b"MY OWN TIFF")
    for resume in (False, True):
        with pytest.raises(UsageError, match="no earlier run's manifest"):
            run_tiled(PIPE, "s3://slides/in2.tif", "s3://slides/mine.tif", tile=32,
                      engine=inline_engine, storage_options=s3, progress=False, resume=resume,
                      overwrite=False)
    assert fs.cat("slides/mine.tif") == b"MY OWN TIFF"
    # a Zarr holding a tiled run's plan (a killed run writes it in place) is resumable
    s = run_tiled(PIPE, "s3://slides/in2.tif", "s3://slides/o2.zarr", tile=32,
                  engine=inline_engine, storage_options=s3, progress=False)
    assert s.status == "ok", s.reason
    fs.rm("slides/o2.zarr.manifest.parquet")
    with pytest.raises(UsageError, match=r"results of an interrupted run\); use --resume"):
        run_tiled(PIPE, "s3://slides/in2.tif", "s3://slides/o2.zarr", tile=32,
                  engine=inline_engine, storage_options=s3, progress=False, overwrite=False)
    s = run_tiled(PIPE, "s3://slides/in2.tif", "s3://slides/o2.zarr", tile=32,
                  engine=inline_engine, storage_options=s3, progress=False, resume=True)
    assert s.status == "ok", s.reason
