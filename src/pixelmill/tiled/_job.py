"""The tiled job: plan tile units, run them on an engine, write a tile store, assemble, resume.

Flow (nothing ever holds the whole image, and no pixels cross the driver):

1. the input is probed (headers only) into a :class:`~pixelmill.regions.RegionSource`;
   formats without random access are decoded once into a disk-backed ``.npy`` beside the output;
2. the pipeline's halo/scale give the tile grid; the memory budget gives tile size and
   concurrency (:func:`~pixelmill.tiled._plan.choose_tiling`);
3. every tile is a small picklable unit run by the engine: the worker reads its halo box,
   runs the pipeline, crops the core and writes it as exactly one chunk of a Zarr *tile store*
   beside the output (chunk writes are atomic); each finished tile becomes a manifest row
   ``URI#tile=r,c``;
4. the driver assembles the output from the store band by band: a tiled BigTIFF (optionally
   with a pyramid) or, for ``.zarr`` outputs, the store itself becomes the OME-Zarr output.

A killed job leaves the store and the manifest rows of its finished tiles: ``resume=True``
reruns only the tiles without an ``ok`` row and gives the same output as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from pixelmill import regions, storage
from pixelmill.engines import Engine, UnitFailure, default_workers, get_engine
from pixelmill.errors import DecodeError, PixelmillError, TilingError
from pixelmill.pipeline import Pipeline, load_pipeline
from pixelmill.tiled._array import crop_tile
from pixelmill.tiled._plan import (
    PipelinePlan,
    analyze,
    check_whole,
    choose_tiling,
    default_memory,
    parse_memory,
)
from pixelmill.tiling import TileWindow, grid, scale_box, scaled_shape

__all__ = ["TileJob", "TiledSummary", "run_tile", "run_tiled"]


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
    threads: int = 1
    whole: bool = False
    fingerprint: str = "{}"
    input_uri: str = ""  #: the input as the user named it (manifest keys), when spilled
    canvas: regions.TiffCanvas | None = None  #: write tiles straight into this TIFF


@dataclass
class TiledSummary:
    """The outcome of one tiled job."""

    input: str
    output: str | None
    status: str
    reason: str | None = None
    tiles: int = 0
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    tile: int = 0
    workers: int = 0
    memory: int = 0
    peak_rss: int = 0
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    out_width: int = 0
    out_height: int = 0
    t_tiles: float = 0.0  #: seconds running the tile units
    t_assemble: float = 0.0  #: seconds writing the output from the tile store
    measures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- worker side --------------------------------------------------------------------------

_CACHE: dict[str, Any] = {}
#: rows per chunk of the tile store (and per band when assembling the output)
CHUNK_ROWS = 256


def _pipeline(text: str) -> Pipeline:
    p = _CACHE.get(text)
    if p is None:
        p = _CACHE[text] = load_pipeline(json.loads(text))
    return p


def _store_array(job: TileJob):
    key = "store:" + job.store_uri
    arr = _CACHE.get(key)
    if arr is None:
        arr = _CACHE[key] = regions.open_zarr_array(job.store_uri, "0", dict(job.store_options),
                                                    mode="r+")
    return arr


def run_tile(job: TileJob, window: TileWindow) -> dict[str, Any]:
    """Process one tile unit: read its halo box, run, crop, write its chunk; return its row."""
    from fractions import Fraction

    if _CACHE.get("threads") != job.threads:
        import cv2

        cv2.setNumThreads(job.threads)
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
                storage_options=dict(job.store_options))
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
        if core.dtype != target.dtype or (core.ndim == 3) != (len(target.shape) == 3):
            raise TilingError(f"tile {window.key}: output dtype/channels {core.dtype} "
                              f"{core.shape[2:]} differ from the first tile's")
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
    return row


# ---- driver side --------------------------------------------------------------------------

class PeakRSS:
    """Samples the resident memory of this process and its children; ``.peak`` in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def __enter__(self) -> PeakRSS:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _sidecar(output_uri: str, suffix: str) -> str:
    out = output_uri.rstrip("/")
    if "://" in out:
        head, _, name = out.rpartition("/")
        return f"{head}/.{name}.{suffix}"
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(folder, f".{name}.{suffix}")


def _probe_output(pipeline: Pipeline, source: regions.RegionSource, plan: PipelinePlan):
    """Run the pipeline on a small corner to learn the output dtype and channels (fail fast)."""
    side = min(max(source.height, 1), max(16, 2 * plan.halo + 16))
    sidew = min(max(source.width, 1), max(16, 2 * plan.halo + 16))
    sample = regions.read_region(source, (0, side, 0, sidew))
    out = pipeline(sample)
    if not isinstance(out, np.ndarray):
        raise TilingError("the pipeline does not return an image")
    return out.dtype.name, (out.shape[2] if out.ndim == 3 else None)


def _progress(total: int, enabled: bool):
    try:
        from pixelmill.progress import Progress

        return Progress(total, what="tiles", enabled=enabled)
    except ImportError:  # pragma: no cover - progress.py is optional for this module
        import contextlib

        class _Quiet(contextlib.nullcontext):
            def advance(self, status: str = "ok") -> None:
                pass

        return _Quiet()


def _map_waves(engine: Engine, fn, units: list, concurrency: int) -> Iterator[tuple[int, Any]]:
    """``engine.map`` in waves of ``concurrency`` units when the budget allows fewer workers
    than the engine has."""
    if concurrency >= getattr(engine, "workers", concurrency) or not units:
        yield from engine.map(fn, units, batch_size=1)
        return
    for start in range(0, len(units), concurrency):
        for i, res in engine.map(fn, units[start:start + concurrency], batch_size=1):
            yield start + i, res


def run_tiled(
    pipeline: Pipeline | Any,
    input_uri: str,
    output_uri: str,
    *,
    tile: int | None = None,
    memory: int | str | None = None,
    engine: Engine | str | None = None,
    workers: int | None = None,
    manifest: Any = None,
    resume: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    pyramid: bool = False,
    compression: str | None = None,
    level: int = 0,
) -> TiledSummary:
    """Process one huge image tile by tile, within a memory budget, resumably.

    Parameters
    ----------
    pipeline : Pipeline, dict, list or path
        The pipeline; its ops' halo and scale decide the overlap.
    input_uri, output_uri : str
        fsspec URLs. Inputs: TIFF/BigTIFF (tiled, striped, pyramidal: ``level`` picks one),
        Zarr/OME-Zarr, ``.npy``, or any image Pillow decodes (decoded once, spilled to disk).
        Outputs: ``.tif``/``.tiff`` (tiled BigTIFF) or ``.zarr`` (OME-Zarr).
    tile : int, optional
        Core size in input pixels; by default the largest that fits ``memory``.
    memory : int or str, optional
        Budget for the whole job's resident memory (driver and workers), e.g. ``"2GB"``;
        default: half the available memory, at most 4 GiB.
    engine : Engine or str, optional
        An open engine (not closed here) or a name for :func:`~pixelmill.engines.get_engine`.
    workers : int, optional
        Worker processes when this function opens the engine.
    manifest : ManifestWriter or str, optional
        Rows go to this writer (not closed here), or to a manifest at this URI; default
        ``<output>.manifest.parquet``. One row per tile (key ``URI#tile=r,c``) and one for the
        image (key ``URI``).
    resume : bool
        Skip tiles whose row in the manifest is ``ok`` and whose tile store is still there.
    pyramid : bool
        Also write half-size levels down to ~256 pixels (TIFF SubIFDs / OME-Zarr levels).
    compression : str, optional
        TIFF compression (``"zlib"``, ``"zstd"``, ``"lzw"``, ...).

    Returns
    -------
    TiledSummary
    """
    from pixelmill.manifest import ManifestWriter

    t_start = time.perf_counter()
    pipeline = load_pipeline(pipeline)
    plan = analyze(pipeline)
    out_kind = regions.output_kind(output_uri)
    budget = parse_memory(memory) or default_memory()
    so = dict(storage_options or {})
    store_uri = _sidecar(output_uri, "pixelmill-tiles.zarr")
    out_fs, out_path = storage.get_fs(output_uri, so)
    if storage._is_local(out_fs):  # side files (spill, tile store, partial TIFF) go beside it
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    source = regions.open_source(input_uri, so, level=level,
                                 spill_uri=_sidecar(output_uri, "pixelmill-spill.npy"))
    h, w = source.height, source.width
    n_workers = workers or getattr(engine, "workers", None) or default_workers()
    whole = plan.size_problem(h, w) is not None
    if whole:  # a global op: one unit, the whole image, if the budget allows it
        check_whole(plan, source.shape, source.dtype, budget)
        tile_size, concurrency = max(h, w), 1
    else:
        tile_size, concurrency = choose_tiling(plan, source.shape, source.dtype, budget,
                                               n_workers, tile)
    fingerprint = {"input": input_uri, "shape": list(source.shape), "dtype": source.dtype,
                   "pipeline": pipeline.fingerprint, "tile": tile_size, "halo": plan.halo}
    fs, store_path = storage.get_fs(store_uri, so)
    store_ok = False
    if resume and not whole:
        plan_path = _sidecar(output_uri, "pixelmill-partial.json")
        if fs.exists(store_path):
            prev = _store_attrs(store_uri, so).get("pixelmill_plan") or {}
        elif storage._is_local(fs) and os.path.exists(plan_path):
            with open(plan_path, encoding="utf-8") as f:
                prev = json.load(f).get("pixelmill_plan") or {}
        else:
            prev = {}
        if tile is None and prev.get("tile"):  # keep the interrupted run's tile size
            tile_size = fingerprint["tile"] = int(prev["tile"])
        store_ok = fs.exists(store_path) and prev == fingerprint
    if whole:
        windows = [TileWindow(0, 0, (0, h, 0, w), (0, h, 0, w))]
    else:
        windows = grid(h, w, tile_size, plan.halo, plan.scale, step=plan.step, wrap=plan.wrap)
        out_dtype, out_c = _probe_output(pipeline, source, plan)
        out_h, out_w = scaled_shape(h, w, plan.scale)
    own_manifest = not hasattr(manifest, "append")
    writer = (ManifestWriter(manifest or output_uri.rstrip("/") + ".manifest.parquet",
                             keep_existing=resume, storage_options=so)
              if own_manifest else manifest)
    canvas = None
    if not whole:
        out_shape = (out_h, out_w, out_c) if out_c else (out_h, out_w)
        chunk = _chunk_for(windows, plan, (h, w))
        direct = (out_kind == "tiff" and not pyramid and not compression
                  and storage._is_local(fs) and _canvas_tile(chunk, len(windows), out_shape))
        if direct:
            canvas, store_ok = _open_canvas(output_uri, out_shape, out_dtype,
                                            _canvas_tile(chunk, len(windows), out_shape),
                                            fingerprint, resume)
    done = set()
    if store_ok:
        done = {r["key"] for r in writer.earlier_rows
                if r.get("status") == "ok" and "#tile=" in str(r.get("key"))}
    elif not whole and canvas is None:
        regions.create_tile_store(store_uri, out_shape, out_dtype, chunk,
                                  attrs={"pixelmill_plan": fingerprint}, storage_options=so)
    summary = TiledSummary(input_uri, output_uri, "ok", tiles=len(windows), tile=tile_size,
                           workers=concurrency, memory=budget, width=w, height=h)
    own_engine = engine is None or isinstance(engine, str)
    eng = get_engine(engine or "local", workers=concurrency) if own_engine else engine
    size = None
    try:
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            rows, failed = _run_units(eng, pipeline, plan, source, windows, done, store_uri, so,
                                      fingerprint, output_uri, concurrency, writer, progress,
                                      whole, summary, canvas)
            if not failed:
                if whole:
                    out_h, out_w = rows[0]["out_height"], rows[0]["out_width"]
                    summary.measures = {k: v for k, v in rows[0].items() if k not in _TILE_COLS}
                summary.out_width, summary.out_height = out_w, out_h
                t1 = time.perf_counter()
                summary.t_tiles = t1 - t0
                if canvas is not None:
                    size = _finish_canvas(canvas, output_uri)
                else:
                    size = _assemble(store_uri, so, output_uri, out_kind, pyramid, compression,
                                     fingerprint)
                summary.t_assemble = time.perf_counter() - t1
                if source.uri != input_uri:  # the decoded-once spill is no longer needed
                    sfs, spath = storage.get_fs(source.uri)
                    sfs.rm(spath)
        summary.peak_rss = peak.peak
        summary.seconds = time.perf_counter() - t_start
        if failed:
            first = failed[0]
            summary.status, summary.output = "failed", None
            summary.reason = (f"{len(failed)} of {len(windows)} tiles failed (first: tile "
                              f"{first.get('tile_row')},{first.get('tile_col')}: "
                              f"{first.get('reason')}); rerun with resume to retry them")
        writer.append({"key": input_uri, "uri": input_uri, "status": summary.status,
                       "reason": summary.reason, "output": summary.output, "output_bytes": size,
                       "width": w, "height": h, "out_width": summary.out_width or None,
                       "out_height": summary.out_height or None, "tiles": len(windows),
                       "tile": tile_size, "peak_rss": summary.peak_rss,
                       "t_process": summary.seconds, **summary.measures})
    finally:
        if own_engine:
            eng.close()
        if own_manifest:
            writer.close()
    return summary


_TILE_COLS = {"key", "uri", "output", "tile_row", "tile_col", "y0", "x0", "height", "width",
              "status", "reason", "t_read", "t_process", "t_write", "out_height", "out_width"}


def _store_attrs(store_uri: str, so: Mapping[str, Any]) -> dict[str, Any]:
    import zarr

    fs, path = storage.get_fs(store_uri, so)
    local = storage._is_local(fs)
    try:
        group = zarr.open_group(path if local else store_uri, mode="r",
                                **({} if local or not so else {"storage_options": so}))
        return dict(group.attrs)
    except Exception:  # an unreadable leftover store is simply not resumable
        return {}


def _run_units(eng, pipeline, plan, source, windows, done, store_uri, so, fingerprint,
               output_uri, concurrency, writer, progress, whole, summary, canvas=None):
    uri = fingerprint["input"]
    todo = [win for win in windows if f"{uri}#tile={win.key}" not in done]
    summary.resumed = len(windows) - len(todo)
    threads = max(1, default_workers() // max(1, concurrency))
    job = TileJob(source, pipeline.to_json(), (plan.scale.numerator, plan.scale.denominator),
                  plan.step, plan.wrap, store_uri, tuple(sorted(so.items())), output_uri,
                  threads, whole, json.dumps(fingerprint), uri, canvas)
    rows, failed = [], []
    with _progress(len(todo), progress) as bar:
        for i, res in _map_waves(eng, partial(run_tile, job), todo, concurrency):
            if isinstance(res, UnitFailure):
                win = todo[i]
                res = {"key": f"{uri}#tile={win.key}", "uri": uri,
                       "tile_row": win.row, "tile_col": win.col, "status": "failed",
                       "reason": f"{res.kind}: {res.reason}"}
            writer.append(res)
            rows.append(res)
            bar.advance(status=res["status"])
            if res["status"] == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                failed.append(res)
    summary.ok += summary.resumed
    return rows, failed


def _canvas_tile(chunk: tuple[int, int], n_tiles: int, out_shape) -> int | None:
    """The TIFF tile size that lets tile cores be written in place, or None."""
    rows, cols = chunk
    for t in (256, 128, 512, 64, 1024, 32, 16):
        if (rows % t == 0 or rows >= out_shape[0]) and (cols % t == 0 or cols >= out_shape[1]):
            return t if n_tiles > 1 or t <= max(out_shape[:2]) else None
    return None


def _open_canvas(output_uri, out_shape, out_dtype, tile, fingerprint, resume):
    """The partial TIFF being written in place (reused when resuming the same plan)."""
    path = _sidecar(output_uri, "pixelmill-partial.tif")
    plan_path = _sidecar(output_uri, "pixelmill-partial.json")
    if resume and os.path.exists(path) and os.path.exists(plan_path):
        with open(plan_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("pixelmill_plan") == fingerprint and saved.get("canvas"):
            return regions.TiffCanvas(**{**saved["canvas"],
                                         "shape": tuple(saved["canvas"]["shape"])}), True
    canvas = regions.create_tiff_canvas(
        path, out_shape, out_dtype, tile,
        description=json.dumps({"pixelmill": {"pipeline": fingerprint["pipeline"]}}))
    if canvas is None:  # pragma: no cover - tifffile laid the tiles out unexpectedly
        os.unlink(path)
        return None, False
    storage.write_atomic(plan_path, json.dumps({"pixelmill_plan": fingerprint,
                                                "canvas": asdict(canvas)}).encode())
    return canvas, False


def _finish_canvas(canvas, output_uri: str) -> int:
    os.replace(canvas.path, storage.get_fs(output_uri)[1])
    os.unlink(_sidecar(output_uri, "pixelmill-partial.json"))
    return os.path.getsize(storage.get_fs(output_uri)[1])


def _chunk_for(windows, plan, shape) -> tuple[int, int]:
    """Chunks of the tile store: a tile core's output width, and 256 rows when that divides the
    core's output height (so assembling reads 256-row bands without re-reading chunks)."""
    y0, y1, x0, x1 = scale_box(windows[0].core, plan.scale, shape)
    rows, cols = max(1, y1 - y0), max(1, x1 - x0)
    if len(windows) > 1 and rows % CHUNK_ROWS == 0:
        rows = CHUNK_ROWS
    return rows, cols


def _assemble(store_uri, so, output_uri, out_kind, pyramid, compression, fingerprint) -> int:
    import zarr

    fs, store_path = storage.get_fs(store_uri, so)
    local = storage._is_local(fs)
    group = zarr.open_group(store_path if local else store_uri, mode="r+",
                            **({} if local or not so else {"storage_options": so}))
    base = group["0"]
    levels = 0
    if pyramid:
        side = max(base.shape[-2:])
        levels = max(0, math.ceil(math.log2(max(1, side / 256))))
        levels = regions.build_pyramid(group, levels)
    else:
        regions.write_ome_metadata(group, 1)
    if out_kind == "tiff":
        size = regions.write_tiff_from_zarr(group, output_uri, levels=levels + 1,
                                            compression=compression, storage_options=so,
                                            metadata={"pipeline": fingerprint["pipeline"]})
        fs.rm(store_path, recursive=True)
        return size
    out_fs, out_path = storage.get_fs(output_uri, so)
    if out_fs.exists(out_path):
        out_fs.rm(out_path, recursive=True)
    fs.mv(store_path, out_path, recursive=True)
    return int(sum(v.get("size", 0) or 0 for v in out_fs.find(out_path, detail=True).values()))
