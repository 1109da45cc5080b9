"""Inputs above tile_threshold go to the tiled runner, with the job's engine and manifest."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pixelmill import codecs
from pixelmill.jobs import run
from pixelmill.manifest import read_manifest
from tests._images import bomb_png

tiled = pytest.importorskip("pixelmill.tiled")


def test_big_inputs_are_tiled_and_equal_the_untiled_result(collection, tmp_path, engine,
                                                            blur_pipeline):
    import tifffile

    root, _ = collection
    out = tmp_path / "out"
    import psutil

    # the budget holds this (test) process too, which other tests may have grown
    memory = psutil.Process().memory_info().rss + 2**30
    summary = run(blur_pipeline, str(root), str(out), engine=engine, progress=False,
                  report=False, tile_threshold=200_000, memory=memory)
    rows = {r["relpath"]: r for r in read_manifest(str(out / "manifest.parquet"))
            if "#" not in r["key"]}
    # astronaut 512x512 and coffee 600x400 are above 200k pixels; chelsea 451x300 is not
    for big in ("people/astronaut.jpg", "coffee.jpg"):
        assert rows[big].get("tiled"), rows[big]["reason"]
    assert not rows["cats/chelsea.jpg"].get("tiled")
    assert rows["coffee.jpg"]["output"].endswith("coffee.tif")
    assert (summary.ok, summary.invalid, summary.failed) == (5, 2, 0)
    src = codecs.decode((root / "coffee.jpg").read_bytes())
    expected = cv2.sepFilter2D(src, -1, k := cv2.getGaussianKernel(13, 1.5), k,
                                   borderType=cv2.BORDER_REFLECT)
    got = tifffile.imread(out / "coffee.tif")
    np.testing.assert_array_equal(got, expected)


def _image_rows(out) -> dict[str, dict]:
    """The manifest's rows of whole images (not of their tiles), by relative path."""
    return {r["relpath"]: r for r in read_manifest(str(out / "manifest.parquet"))
            if "#" not in r["key"]}


def test_the_pixel_limit_holds_on_the_tiled_route(tmp_path, engine, blur_pipeline):
    """An image above tile_threshold went to the tiled runner before the pixel limit was
    checked: a PNG claiming 100000×100000 was decoded whole and the OOM killer took the job
    (no manifest). Whole-decoded formats keep the default limit there; --max-pixels holds
    for every format."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "bomb.png").write_bytes(bomb_png(100_000, 100_000, color=0))
    cv2.imwrite(str(src / "ok.png"), np.full((64, 64, 3), 90, np.uint8))
    out = tmp_path / "out"
    summary = run(blur_pipeline, str(src), str(out), engine=engine, progress=False,
                  report=False, tile_threshold=1000)
    rows = _image_rows(out)
    assert rows["bomb.png"]["status"] == "invalid"
    assert "exceeds the pixel limit" in rows["bomb.png"]["reason"]
    assert rows["ok.png"]["status"] == "ok" and rows["ok.png"]["tiled"]
    assert (summary.ok, summary.invalid) == (1, 1)
    summary = run(blur_pipeline, str(src / "ok.png"), str(tmp_path / "o2"), engine=engine,
                  progress=False, report=False, tile_threshold=1000, max_pixels=2000)
    assert summary.invalid == 1  # an explicit limit holds on the tiled route too


def test_tiled_outputs_do_not_replace_each_other(tmp_path, engine, blur_pipeline):
    """a.jpg and a.png above tile_threshold were both written to a.tif: one result lost,
    both rows ok."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), np.full((64, 64, 3), 90, np.uint8))
    cv2.imwrite(str(src / "a.png"), np.full((64, 64, 3), 30, np.uint8))
    out = tmp_path / "out"
    summary = run(blur_pipeline, str(src), str(out), engine=engine, progress=False,
                  report=False, tile_threshold=1000)
    rows = _image_rows(out)
    assert rows["a.jpg"]["status"] == "ok" and rows["a.jpg"]["output"].endswith("a.tif")
    assert rows["a.png"]["status"] == "failed" and "would replace the output of" in (
        rows["a.png"]["reason"])
    assert (summary.ok, summary.failed) == (1, 1)
    summary = run(blur_pipeline, str(src), str(tmp_path / "named"), engine=engine,
                  progress=False, report=False, tile_threshold=1000, name_template="{stem}-{suffix}")
    assert summary.ok == 2


def test_inputs_above_the_threshold_that_cannot_be_tiled_must_fit_the_budget(tmp_path, engine):
    """A measure-only job (or a pipeline that cannot be tiled) read a huge input whole whatever
    the budget: a 390 KB PNG of 400 MP took 10 GB in `run --measure-only` with `sharpness`."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((2000, 2500), np.uint8)).save(src / "big.png")
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(src / "small.png")
    for output, steps in ((None, [{"op": "sharpness"}]),
                          (tmp_path / "out", [{"op": "equalize_hist"}])):
        manifest = tmp_path / f"m-{output is None}.parquet"
        s = run({"steps": steps}, str(src), output and str(output), engine=engine,
                manifest=str(manifest), tile_threshold=1_000_000, memory="30MB",
                progress=False, report=False)
        rows = {r["relpath"]: r for r in read_manifest(str(manifest))}
        assert (s.ok, s.invalid) == (1, 1), s.reasons
        assert rows["small.png"]["status"] == "ok"
        reason = rows["big.png"]["reason"]
        assert "2500x2000 is above --tile-threshold" in reason and "--memory: 29 MiB" in reason  # 30 MB
        # with room enough, the same input is processed whole
        s = run({"steps": steps}, str(src), output and str(tmp_path / "out2"), engine=engine,
                manifest=str(tmp_path / "m2.parquet"), tile_threshold=1_000_000,
                memory="2GB", progress=False, report=False, overwrite=True)
        assert s.ok == 2, s.reasons


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"),
                    reason="needs Linux /proc/self/io")
def test_a_tiff_above_the_threshold_is_routed_from_its_header(tmp_path, blur_pipeline):
    """A TIFF is read by region on the tiled route, but the worker first read the whole file
    into memory only to learn its size (a 10 GB BigTIFF: 10 GB in one worker). Its header and
    IFDs are enough now."""
    import tifffile

    from pixelmill.jobs._plan import WorkUnit
    from pixelmill.jobs._worker import TILED_ROUTE, JobSpec, process_unit
    from pixelmill.pipeline import load_pipeline

    def bytes_read() -> int:
        with open("/proc/self/io") as f:
            return int(next(x for x in f if x.startswith("rchar:")).split()[1])

    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (2500, 2500, 3), np.uint8),
                     tile=(256, 256))  # 19 MB
    spec = JobSpec(load_pipeline(blur_pipeline), tile_threshold=1_000_000)
    unit = WorkUnit(0, str(path), "slide.tif", path.stat().st_size, str(tmp_path / "o.tif"),
                    "tif")
    before = bytes_read()
    row = process_unit(spec, unit)
    assert bytes_read() - before < 1_000_000
    assert row["_route"] == TILED_ROUTE and (row["width"], row["height"]) == (2500, 2500)
    assert row["bytes"] == path.stat().st_size
    small = JobSpec(load_pipeline(blur_pipeline), tile_threshold=10_000_000)
    assert process_unit(small, unit)["status"] == "ok"  # below the threshold: in memory
