"""Relative local paths on a cluster: workers run in another folder than the driver."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from pixelmill.engines import get_engine
from pixelmill.jobs import run
from pixelmill.manifest import read_manifest

NAME = "pixelmill-relative-path-test-out"


def test_relative_output_lands_beside_the_driver_not_the_workers(dask_address, tmp_path,
                                                                 monkeypatch):
    """`pixelmill run P photos out --engine dask=...` (or spark) wrote the images into the
    workers' working folder while the manifest, in the driver's, said `ok`."""
    driver = tmp_path / "driver"
    (driver / "photos").mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(driver / "photos" / f"p{k}.png"), np.full((24, 32, 3), 40 * k, np.uint8))
    workers_cwd = Path.cwd()  # the cluster's processes were started from here
    monkeypatch.chdir(driver)
    try:
        with get_engine(f"dask={dask_address}") as engine:
            summary = run({"steps": [{"op": "gaussian", "sigma": 1.0}]}, "photos", NAME,
                          engine=engine, progress=False, report=False)
        assert summary.ok == 3
        rows = read_manifest(str(driver / NAME / "manifest.parquet"))
        for row in rows:
            assert Path(row["output"]).is_absolute() and Path(row["output"]).exists(), row
        assert sorted(p.name for p in (driver / NAME).glob("*.png")) == ["p0.png", "p1.png",
                                                                        "p2.png"]
        assert not (workers_cwd / NAME).exists()
    finally:
        shutil.rmtree(workers_cwd / NAME, ignore_errors=True)


def test_tile_with_relative_paths_on_a_cluster(dask_address, tmp_path, monkeypatch):
    """`pixelmill tile P ../big.tif out.tif --engine dask=...` failed every tile: the workers
    looked for the relative input in their own folder."""
    import tifffile

    from pixelmill.tiled import run_tiled

    driver = tmp_path / "driver"
    driver.mkdir()
    img = np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", img, tile=(64, 64))
    monkeypatch.chdir(driver)
    with get_engine(f"dask={dask_address}") as engine:
        summary = run_tiled({"steps": [{"op": "gaussian", "sigma": 1.0}]}, "../big.tif",
                            "out.tif", tile=128, engine=engine, progress=False)
    assert summary.status == "ok", summary.reason
    assert tifffile.imread(driver / "out.tif").shape == img.shape
