"""Memory budget arithmetic, concurrency waves and the demo hook."""

from __future__ import annotations

import os

import pytest

from pixelmill.errors import InvalidParameterError
from pixelmill.pipeline import Pipeline
from pixelmill.tiled import analyze, choose_tiling, demo, parse_memory
from pixelmill.tiled._job import _map_waves
from pixelmill.tiled._plan import WORKER_BASE_BYTES, tile_work_bytes

from .conftest import InlineEngine


@pytest.mark.parametrize(("text", "expected"), [
    ("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5G", 1_500_000_000), ("1gib", 2**30),
    (1000, 1000), ("  64 MB ", 64 * 10**6), (None, None),
])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1GB", "2 parsecs", 0, "GB"])
def test_parse_memory_rejects_with_the_field(bad):
    with pytest.raises(InvalidParameterError, match="memory"):
        parse_memory(bad)


def test_budget_picks_tile_and_concurrency_monotonically(monkeypatch):
    from pixelmill.tiled import _plan

    # the driver's own resident memory counts; fix it so the test does not depend on what
    # this pytest process has loaded before
    monkeypatch.setattr(_plan, "_driver_bytes", lambda: 100 * 2**20)
    plan = analyze(Pipeline.from_steps([{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask"}]))
    shape = (30000, 30000, 3)
    last = (0, 0)
    for mib in (600, 900, 1500, 3000, 8000):
        tile, workers = choose_tiling(plan, shape, "uint8", mib * 2**20, workers=4,
                                      assemble=False)
        assert 1 <= workers <= 4
        # what was chosen fits: the workers' share alone is below the budget
        assert workers * (WORKER_BASE_BYTES + tile_work_bytes(tile, plan.halo, 3, 1)) < mib * 2**20
        assert (workers, tile) >= last or tile >= last[1]
        last = (workers, tile)
    assert last == (4, 4096)
    with pytest.raises(InvalidParameterError, match="--memory"):
        choose_tiling(plan, shape, "uint8", 50 * 2**20, workers=2)
    # streaming a pyramid from a tile store costs the driver a band of rows
    assert choose_tiling(plan, shape, "uint8", 900 * 2**20, 4, assemble=True) < choose_tiling(
        plan, shape, "uint8", 900 * 2**20, 4, assemble=False)
    # super-resolution ×4 needs 16× the working memory per input pixel: smaller tiles
    sr = analyze(Pipeline.from_steps([{"op": "resize", "factor": 4.0, "method": "bicubic"}]))
    assert choose_tiling(sr, shape, "uint8", 1500 * 2**20, 2)[0] < choose_tiling(
        plan, shape, "uint8", 1500 * 2**20, 2)[0]


class _CountingEngine(InlineEngine):
    workers = 4

    def __init__(self):
        self.calls = []

    def map(self, fn, units, *, timeout=None, batch_size=None):
        units = list(units)
        self.calls.append(len(units))
        yield from super().map(fn, units)


def test_fewer_concurrent_tiles_than_engine_workers_runs_in_waves():
    eng = _CountingEngine()
    results = dict(_map_waves(eng, lambda u: u * 2, list(range(7)), concurrency=2))
    assert results == {i: 2 * i for i in range(7)}
    assert eng.calls == [2, 2, 2, 1]
    eng.calls.clear()
    assert len(dict(_map_waves(eng, lambda u: u, list(range(7)), concurrency=4))) == 7
    assert eng.calls == [7]


def test_demo_hook_on_a_small_mosaic(tmp_path, capsys, inline_engine):
    import tifffile

    summary = demo(str(tmp_path), inline_engine, side=700, memory="2GB")
    assert summary.status == "ok" and summary.peak_rss > 0
    text = capsys.readouterr().out
    assert "700×700" in text and "peak memory" in text
    out = tifffile.imread(tmp_path / "huge-mosaic-sharpened.tif")
    assert out.shape == (700, 700, 3) and out.std() > 10


def test_ops_that_load_models_count_their_memory_per_worker(monkeypatch):
    """super_resolve declares the resident memory of torch + a model; budgets charge it to
    every worker, so a budget that fits two plain workers fits only one SR worker."""
    from pixelmill.tiled import _plan

    monkeypatch.setattr(_plan, "_driver_bytes", lambda: 200 * 2**20)  # not this test process's

    plain = analyze(Pipeline.from_steps([{"op": "gaussian", "sigma": 1.0}]))
    sr = analyze(Pipeline.from_steps([{"op": "super_resolve", "model": "bicubic", "scale": 2}]))
    assert plain.worker_bytes == WORKER_BASE_BYTES
    assert sr.worker_bytes >= WORKER_BASE_BYTES + 400 * 2**20
    budget = 1200 * 2**20
    _, plain_workers = choose_tiling(plain, (4000, 4000, 3), "uint8", budget, workers=2, tile=256)
    _, sr_workers = choose_tiling(sr, (4000, 4000, 3), "uint8", budget, workers=2, tile=256)
    assert plain_workers == 2 and sr_workers < plain_workers
    # a network's feature maps: the declared working memory per pixel sizes SR tiles
    assert sr.pixel_bytes > 0 == plain.pixel_bytes
    assert _plan.tile_work_bytes(512, sr.halo, 3, 1, 2.0, sr.pixel_bytes) > _plan.tile_work_bytes(
        512, sr.halo, 3, 1, 2.0)


def test_max_tile_tries_that_size_first_then_smaller_ones_to_fit_the_budget():
    """`pixelmill upscale` without --tile used a fixed 512: a budget that holds 256-px tiles
    but not 512 was refused (exit 2, naming --memory) instead of using smaller tiles."""
    from pixelmill.tiled._plan import _driver_bytes

    sr = analyze(Pipeline.from_steps([{"op": "resize", "factor": 4.0, "method": "bicubic"}]))
    shape = (3000, 3000, 3)

    def need(t):
        return _driver_bytes() + sr.worker_bytes + tile_work_bytes(
            t, sr.halo, 3, 1, sr.max_scale, sr.pixel_bytes)

    assert choose_tiling(sr, shape, "uint8", 100 * need(512), 2, max_tile=512,
                         assemble=False) == (512, 2)  # room: the default size, as before
    tight = (need(256) + need(512)) // 2
    with pytest.raises(InvalidParameterError, match="--memory"):
        choose_tiling(sr, shape, "uint8", tight, 1, tile=512, assemble=False)  # --tile 512
    assert choose_tiling(sr, shape, "uint8", tight, 1, max_tile=512, assemble=False) == (256, 1)
    # an image smaller than the tile is still one tile: the tile is capped to the image
    assert choose_tiling(sr, (300, 200, 3), "uint8", 100 * need(512), 1, max_tile=512,
                         assemble=False)[0] == 300


def test_a_tile_larger_than_the_image_is_capped_before_the_memory_estimate():
    """`upscale rgb.png x.tif --tile 4096` on a 150×110 image was refused (exit 2, "--memory:
    4096 MiB is too small … 4096-pixel tiles need 13216 MiB"): the estimate was for a tile
    the image does not have."""
    from pixelmill.tiled._plan import _driver_bytes

    sr = analyze(Pipeline.from_steps([{"op": "super_resolve", "model": "espcn", "scale": 2}]))
    budget = _driver_bytes() + sr.worker_bytes + tile_work_bytes(
        150, sr.halo, 3, 1, sr.max_scale, sr.pixel_bytes) + 2**20
    assert choose_tiling(sr, (110, 150, 3), "uint8", budget, 1, tile=4096,
                         assemble=False) == (150, 1)
    assert choose_tiling(sr, (110, 150, 3), "uint8", budget, 1, max_tile=4096,
                         assemble=False) == (150, 1)


def test_a_default_budget_that_is_too_small_says_it_is_the_default():
    """Without --memory the error named --memory as if the user had given it."""
    from pixelmill.tiled._plan import DefaultMemory, default_memory

    plan = analyze(Pipeline.from_steps([{"op": "gaussian", "sigma": 2.0}]))
    assert isinstance(default_memory(), DefaultMemory)
    with pytest.raises(InvalidParameterError, match=r"the default memory budget of 50 MiB"
                       r".*pass --memory or a smaller --tile") as e:
        choose_tiling(plan, (30000, 30000, 3), "uint8", DefaultMemory(50 * 2**20), 2)
    assert e.value.field == "memory"
    with pytest.raises(InvalidParameterError, match=r"^--memory: 50 MiB is too small"):
        choose_tiling(plan, (30000, 30000, 3), "uint8", 50 * 2**20, 2)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc")
def test_every_ops_working_memory_is_within_what_the_tiler_plans_for():
    """Tiles are sized from 24 bytes of working memory per value; sobel/scharr (28), harris,
    unsharp_mask, rescale_intensity, white balance (32), watershed (35), slic (49), canny (56)
    and bilateral on float32 (64: its float64 reference) used more, so a tiled job could pass
    its --memory. Each op's peak, measured in a fresh process, must be within the plan's
    ``value_bytes`` for it (declared where above 24)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("_opmem.py")), "512"],
                         capture_output=True, text=True, env=env, timeout=300, check=True)
    rows = json.loads(out.stdout)
    assert len({r[0] for r in rows}) >= 35  # every image op of the registry but the network
    over = [r for r in rows if r[3] > r[4]]
    assert not over, over


def test_value_bytes_follow_the_dtype_through_the_steps():
    """bilateral's float64 path is taken for non-uint8 input: after sobel (float32) it is
    planned at 72 bytes a value, alone on uint8 at the generic 24; a tile for sobel is
    smaller than one for gaussian at the same budget."""
    from pixelmill.tiled._plan import BYTES_PER_VALUE

    assert analyze(Pipeline.from_steps([{"op": "bilateral"}])).value_bytes("uint8") == \
        BYTES_PER_VALUE
    both = analyze(Pipeline.from_steps([{"op": "sobel"}, {"op": "bilateral"}]))
    assert both.value_bytes("uint8") == 72
    gauss = analyze(Pipeline.from_steps([{"op": "gaussian", "sigma": 1}]))
    sobel = analyze(Pipeline.from_steps([{"op": "sobel"}]))
    args = (32, 3, 1)
    assert tile_work_bytes(512, *args, value_bytes=sobel.value_bytes("uint8")) > \
        tile_work_bytes(512, *args, value_bytes=gauss.value_bytes("uint8"))
