"""The worker side of a tiled job: one tile unit = read halo box, run, crop, write."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixelmill import regions
from pixelmill.errors import DecodeError, PixelmillError, TilingError
from pixelmill.pipeline import Pipeline, load_pipeline
from pixelmill.tiled._array import crop_tile
from pixelmill.tiled._plan import PipelinePlan, process_rss
from pixelmill.tiling import TileWindow, scale_box

__all__ = ["CHUNK_ROWS", "TileJob", "run_tile"]


@dataclass(frozen=True)
class TileJob:
    """What every tile unit of one job shares (picklable, small)."""

    source: regions.RegionSource
    pipeline: str  #: the pipeline as JSON
    plan_scale: tuple[int, int]
    plan_step: int
    plan_wrap: bool
    store_uri: str
    store_options: tuple[tuple[str, Any], ...]
    output_uri: str
    #: OpenCV and BLAS threads a worker process keeps; None in an engine that runs the tiles
    #: in the caller's own process (the inline engine): its settings are not the job's to change
    threads: int | None = 1
    whole: bool = False
    fingerprint: str = "{}"
    input_uri: str = ""  #: the input as the user named it (manifest keys), when spilled
    canvas: regions.TiffCanvas | None = None  #: write tiles straight into this TIFF
    store_compression: str | None = None  #: codec of the tile store a whole-image unit makes
    #: one token per run (:func:`run_tiled` call): a worker that outlives a run (an open engine
    #: given to several jobs, an in-process engine) must not write into the store an earlier
    #: run opened at the same place, whose dtype, channels and chunks may be other ones
    run_id: str = ""
    #: the planner's working memory of one tile (``tile_work_bytes``): a worker whose C heap
    #: keeps more than this beyond its resident floor gives the rest back (:func:`_settle`)
    tile_bytes: int = 0


# ---- worker side --------------------------------------------------------------------------


def _settle(job: TileJob) -> None:
    """Keep a worker within what the planner gave it: at most one tile's working memory
    (``job.tile_bytes``) resident above its floor (interpreter, model, caches: the resident
    memory right after the heap was last given back).

    Local workers run with glibc told to keep freed memory (``WORKER_ENV``: no page faults for
    the next tile), and the heap fragments as tiles of other shapes come and go: an ESPCN ×2
    worker went from ~0.5 GiB after its first 520-pixel tile to 0.6–0.8 GiB over a 256-tile
    job, 0.2–0.4 GiB of it free memory glibc kept, which is what made the job's peak vary
    (1.5–1.9 GiB). Giving it back only when it passes a tile's worth costs a few
    ``malloc_trim`` calls per job, not one per tile (that costs ~40 % of an ESPCN tile's time
    in page faults)."""
    if job.tile_bytes <= 0:
        return
    rss = process_rss()
    floor = _CACHE.get("rss_floor")
    if rss and (floor is None or rss > floor + job.tile_bytes):
        from pixelmill.engines.local import release_memory

        if release_memory():
            _CACHE["rss_floor"] = process_rss()


_CACHE: dict[str, Any] = {}
#: rows per chunk of the tile store (and per band when assembling the output)
CHUNK_ROWS = 256


def _pipeline(text: str) -> Pipeline:
    p = _CACHE.get(text)
    if p is None:
        p = _CACHE[text] = load_pipeline(json.loads(text))
    return p


def _store_array(job: TileJob):
    """The tile store's array, opened once per run in this process (a store an earlier run
    left at the same URI, since replaced by this run's, is opened again, never written to)."""
    key = "store:" + job.store_uri
    cached = _CACHE.get(key)
    if cached is None or cached[0] != job.run_id:
        arr = regions.open_zarr_array(job.store_uri, "0", dict(job.store_options), mode="r+")
        _CACHE[key] = cached = (job.run_id, arr)
    return cached[1]


def run_tile(job: TileJob, window: TileWindow) -> dict[str, Any]:
    """Process one tile unit: read its halo box, run, crop, write its chunk; return its row."""
    from fractions import Fraction

    if job.threads is not None and _CACHE.get("threads") != job.threads:
        from pixelmill.ops._common import set_native_threads

        set_native_threads(job.threads)
        _CACHE["threads"] = job.threads
    uri = job.input_uri or job.source.uri
    row: dict[str, Any] = {"key": f"{uri}#tile={window.key}", "uri": uri,
                           "output": job.output_uri, "tile_row": window.row,
                           "tile_col": window.col, "y0": window.core[0], "x0": window.core[2],
                           "height": window.core_shape[0], "width": window.core_shape[1]}
    try:
        t0 = time.perf_counter()
        try:
            region = regions.read_region(job.source, window.halo)
        except Exception as e:  # a decoder's own error class: a bad tile of a good file
            raise DecodeError(f"cannot read {window.halo}: {type(e).__name__}: {e}") from e
        t1 = time.perf_counter()
        pipeline = _pipeline(job.pipeline)
        result = pipeline.run(region)
        shape = (job.source.height, job.source.width)
        scale = Fraction(*job.plan_scale)
        if job.whole:  # a global op: the unit is the whole image, and it makes the store
            core = result.image
            if not isinstance(core, np.ndarray):
                raise TilingError("the pipeline does not return an image")
            regions.create_tile_store(
                job.store_uri, core.shape, core.dtype.name,
                (min(1024, core.shape[0]) or 1, min(1024, core.shape[1]) or 1),
                attrs={"pixelmill_plan": json.loads(job.fingerprint)},
                compression=job.store_compression, storage_options=dict(job.store_options))
            _CACHE.pop("store:" + job.store_uri, None)
            row.update(out_height=core.shape[0], out_width=core.shape[1])
            window = TileWindow(0, 0, (0, shape[0], 0, shape[1]), window.halo)
            scale = Fraction(core.shape[0], max(1, shape[0])) if shape[0] else Fraction(1)
            shape = None
        else:
            plan = PipelinePlan(pipeline, 0, scale, job.plan_step, job.plan_wrap, 1.0, None)
            core = crop_tile(result.image, window, plan, shape)
        t2 = time.perf_counter()
        target = job.canvas or _store_array(job)
        # channels of the target: a canvas is H×W[×C], a tile store C×H×W (or H×W)
        stored = (tuple(target.shape[2:]) if job.canvas is not None
                  else tuple(target.shape[:1]) if len(target.shape) == 3 else ())
        if core.dtype != np.dtype(target.dtype) or tuple(core.shape[2:]) != stored:
            raise TilingError(f"tile {window.key}: output dtype/channels {core.dtype} "
                              f"{core.shape[2:]} differ from the first tile's "
                              f"({np.dtype(target.dtype)} {stored})")
        box = ((0, core.shape[0], 0, core.shape[1]) if job.whole
               else scale_box(window.core, scale, shape))
        if job.canvas is not None:
            regions.write_canvas(job.canvas, box, core)
        else:
            regions.write_tile(target, box, core)
        t3 = time.perf_counter()
        row.update(status="ok", reason=None, t_read=t1 - t0, t_process=t2 - t1, t_write=t3 - t2)
        if job.whole:
            row.update(result.measures)
    except (PixelmillError, OSError, ValueError, MemoryError) as e:
        row.update(status="failed", reason=f"{type(e).__name__}: {e}")
    _settle(job)
    return row
