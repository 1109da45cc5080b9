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
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from pixelmill import regions, storage
from pixelmill.engines import (
    Engine,
    InlineEngine,
    UnitFailure,
    default_workers,
    get_engine,
    memory_store_here,
)
from pixelmill.errors import PixelmillError, StorageError, TilingError, UsageError
from pixelmill.pipeline import Pipeline, load_pipeline
from pixelmill.tiled._output import (
    assemble,
    canvas_tile,
    chunk_for,
    finish_canvas,
    input_profile,
    open_canvas,
    output_bytes,
    sidecar,
    store_attrs,
)
from pixelmill.tiled._plan import (
    PeakRSS,
    PipelinePlan,
    analyze,
    check_whole,
    choose_tiling,
    default_memory,
    parse_memory,
    tile_work_bytes,
)
from pixelmill.tiled._worker import TileJob, run_tile
from pixelmill.tiling import TileWindow, grid, scaled_shape

__all__ = ["TiledSummary", "run_tiled"]

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
    #: the name of the ICC colour profile the output carries (the input's), or None
    icc: str | None = None
    #: True when ``resume`` found the output already complete (same pipeline, input and
    #: options): nothing was run and the figures above come from the manifest
    up_to_date: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

def _probe_output(pipeline: Pipeline, source: regions.RegionSource, plan: PipelinePlan | None):
    """Run the pipeline on a small corner to learn the output dtype and channels (fail fast);
    without ``plan`` (a global op, the image is processed whole) on a corner of 256 pixels."""
    reach = 2 * plan.halo + 16 if plan is not None else 256
    side = min(max(source.height, 1), max(16, reach))
    sidew = min(max(source.width, 1), max(16, reach))
    sample = regions.read_region(source, (0, side, 0, sidew))
    out = pipeline(sample)
    if not isinstance(out, np.ndarray):
        raise TilingError("the pipeline does not return an image")
    return out.dtype.name, (out.shape[2] if out.ndim == 3 else None)


def _loads_runtime(plan: PipelinePlan) -> bool:
    """Whether a step declares a runtime a worker keeps loaded (``worker_bytes``: torch and a
    model): the driver then leaves even the probe to a worker, since importing it would add
    ~0.2 GiB to the driver for the whole job, memory the plan gives to the workers."""
    return any(int(s.spec.extra.get("worker_bytes", 0)) for s in plan.pipeline.steps)


def _probe_unit(pipeline_json: str, source: regions.RegionSource, halo: int,
                _unit: Any) -> tuple[str, int | None]:
    """:func:`_probe_output` in a worker (which keeps the pipeline, and its model, cached for
    the tiles that follow)."""
    from fractions import Fraction

    from pixelmill.tiled._worker import _pipeline

    pipeline = _pipeline(pipeline_json)
    return _probe_output(pipeline, source,
                         PipelinePlan(pipeline, halo, Fraction(1), 1, False, 1.0, None))


def _probe_on_engine(eng: Engine, pipeline: Pipeline, source: regions.RegionSource,
                     plan: PipelinePlan) -> tuple[str, int | None]:
    """:func:`_probe_output` run as one unit on the engine: the op's own error is raised as
    the driver's probe would raise it; a worker that dies on it is a :class:`TilingError`."""
    for _, res in eng.map(partial(_probe_unit, pipeline.to_json(), source, plan.halo), [0],
                          batch_size=1):
        if isinstance(res, UnitFailure):
            raise TilingError(f"the pipeline failed on a corner of the image: {res.kind}: "
                              f"{res.reason}")
        return res[0], res[1]
    raise TilingError("the engine returned no result for the pipeline's probe")


def _drop_spill(source: regions.RegionSource, input_uri: str) -> None:
    """Remove the file an input decoded whole was spilled to (none for region-read inputs)."""
    if source.uri != input_uri:
        regions.release(source.uri)  # a handle this process keeps would hold its disk space
        sfs, spath = storage.get_fs(source.uri)
        with contextlib.suppress(FileNotFoundError):
            sfs.rm(spath)


def _refuse_earlier_run(output_uri: str, manifest_uri: str | None,
                        so: Mapping[str, Any]) -> None:
    """Neither resume nor overwrite: an output or manifest already there is a usage error."""
    from pixelmill.manifest import earlier_run, journal_in_the_way

    fs, path = storage.get_fs(output_uri, so)
    earlier = None if manifest_uri is None else earlier_run(manifest_uri, so)
    if earlier == "journal":
        raise journal_in_the_way(manifest_uri, so)
    if earlier:
        clash = output_uri if fs.exists(path) else manifest_uri
        raise UsageError(f"{clash} already exists (results of an earlier run); use --resume to "
                         "continue that run or --overwrite to replace it")
    if fs.exists(path):
        if manifest_uri is not None:  # what --resume would say: not only --overwrite helps
            _refuse_foreign_output(output_uri, manifest_uri, so)
        raise UsageError(f"{output_uri} already exists (results of an interrupted run); use "
                         "--resume to continue that run or --overwrite to replace it")


def _refuse_foreign_output(output_uri: str, manifest_uri: str, so: Mapping[str, Any]) -> None:
    """--resume where no earlier run left its manifest (nor journal) but OUTPUT exists: it is
    not this job's to replace (a file the user made, or one whose manifest was removed)."""
    from pixelmill.manifest import earlier_run, foreign_output

    fs, path = storage.get_fs(output_uri, so)
    if not fs.exists(path) or earlier_run(manifest_uri, so):
        return
    # an object-store Zarr is written in place, so a killed run leaves it without a manifest:
    # taken over only when it holds a tiled run's plan (not a Zarr or a file the user made)
    if (not storage._is_local(fs) and regions.output_kind(output_uri) == "zarr"
            and store_attrs(output_uri, so).get("pixelmill_plan")):
        return
    raise foreign_output(output_uri, manifest_uri)


def _input_stamp(uri: str, so: Mapping[str, Any]) -> dict[str, Any]:
    """The input's size (files) and modification time, as far as its filesystem tells them."""
    fs, path = storage.get_fs(uri, so)
    try:
        info = fs.info(path)
    except OSError:  # missing: open_source says so
        return {"input_bytes": None, "input_modified": None}
    size = info.get("size") if info.get("type") == "file" else None
    try:
        modified = fs.modified(path).isoformat()
    except (NotImplementedError, OSError, KeyError, AttributeError, ValueError):
        modified = None
    return {"input_bytes": None if size is None else int(size), "input_modified": modified}


#: columns of the image row that are not the measures of a whole-image job
_IMAGE_COLS = {"key", "uri", "status", "reason", "output", "output_bytes", "width", "height",
               "out_width", "out_height", "tiles", "tile", "peak_rss", "t_process", "pipeline",
               "level", "pyramid", "compression", "input_bytes", "input_modified"}


def _finished_run(rows: list[dict[str, Any]], input_uri: str, output_uri: str,
                  identity: Mapping[str, Any], so: Mapping[str, Any],
                  where: str) -> TiledSummary | None:
    """The summary of an earlier run that already wrote this output completely, or None.

    Complete means: the image row is ``ok`` for this output, it was made with the same pipeline
    (a different one is a usage error: resuming would mix two pipelines' results), the same
    level/pyramid/compression, from an input of the same size and modification time, and the
    output is there with the size the row records.
    """
    row = next((r for r in rows if r.get("key") == input_uri), None)
    if row is None or row.get("status") != "ok" or row.get("output") != output_uri:
        return None
    if row.get("pipeline") not in (None, identity["pipeline"]):
        raise UsageError(
            f"{where}: written by a different pipeline (fingerprint {row['pipeline']}, this one "
            f"is {identity['pipeline']}); use --overwrite to replace its output")
    if any(row.get(k) != v for k, v in identity.items()):
        return None  # other options, an input changed since, or a manifest from before stamps
    if identity["input_bytes"] is None and identity["input_modified"] is None:
        return None  # nothing tells whether the input changed: run it again
    if output_bytes(output_uri, so) != row.get("output_bytes"):
        return None
    tiles = int(row.get("tiles") or 0)
    return TiledSummary(
        input_uri, output_uri, "ok", tiles=tiles, ok=tiles, resumed=tiles,
        tile=int(row.get("tile") or 0), width=int(row.get("width") or 0),
        height=int(row.get("height") or 0), out_width=int(row.get("out_width") or 0),
        out_height=int(row.get("out_height") or 0), up_to_date=True,
        measures={k: v for k, v in row.items()
                  if k not in _IMAGE_COLS and k not in _TILE_COLS and v is not None})


def _fold_journal(manifest_uri: str, so: Mapping[str, Any]) -> None:
    """Fold the journal a job left when it was killed after its last row into the Parquet
    manifest (what its ``close`` would have done)."""
    from pixelmill.manifest import ManifestWriter, journal_path

    fs, path = storage.get_fs(manifest_uri, so)
    if storage._is_local(fs) and os.path.exists(journal_path(path)):
        ManifestWriter(manifest_uri, keep_existing=True, storage_options=so).close()


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
    overwrite: bool = True,
    max_tile: int | None = None,
) -> TiledSummary:
    """Process one huge image tile by tile, within a memory budget, resumably.

    Parameters
    ----------
    pipeline : Pipeline, dict, list or path
        The pipeline; its ops' halo and scale decide the overlap.
    input_uri, output_uri : str
        fsspec URLs. Inputs: TIFF/BigTIFF (tiled, striped, pyramidal: ``level`` picks one),
        Zarr/OME-Zarr, ``.npy``, or any image :func:`pixelmill.codecs.decode` reads (decoded
        once, spilled to disk; refused with :class:`~pixelmill.errors.PixelLimitError` above
        the codecs' pixel limit or ``memory``). Pixels are read as the in-memory decoder reads
        them (orientation, dtypes, channels; see :func:`pixelmill.regions.open_source`).
        Outputs: ``.tif``/``.tiff`` (tiled BigTIFF) or ``.zarr`` (OME-Zarr).
    tile : int, optional
        Core size in input pixels; by default the largest that fits ``memory``.
    max_tile : int, optional
        Without ``tile``: the largest core size to use (``pixelmill upscale``: 512), smaller
        ones when ``memory`` does not hold it.
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
        When an earlier run already wrote the output completely (same pipeline, input, level,
        pyramid and compression; output present with the size its manifest row records),
        nothing is run: the summary says so (``up_to_date``) and output and manifest are left
        as they are. An ``ok`` row of a different pipeline for this output is a usage error.
    pyramid : bool
        Also write half-size levels down to ~256 pixels (TIFF SubIFDs / OME-Zarr levels).
    compression : str, optional
        TIFF outputs: a tifffile codec that can encode here (``"zlib"``, ``"zstd"``, ``"lzw"``,
        ``"jpeg"``, ... see :data:`pixelmill.regions.TIFF_COMPRESSIONS`); Zarr outputs:
        ``"zstd"``, ``"gzip"`` or ``"blosc"``. Checked before any work (a codec that cannot
        hold the pipeline's output dtype/channels too).
    level : int
        Pyramid level of the input to read; one it does not have is a usage error.
    overwrite : bool
        Replace an existing output and manifest (default, as before). ``False`` refuses them
        with a usage error unless ``resume`` (what ``pixelmill tile`` does without
        ``--overwrite``).

    Returns
    -------
    TiledSummary
    """
    from pixelmill.manifest import (
        TILE_KEY,
        ManifestWriter,
        is_tile_row,
        read_manifest_table,
        select_rows,
    )

    t_start = time.perf_counter()
    # tiles are read and written by workers (on a cluster: in other folders): absolute paths
    input_uri, output_uri = storage.absolute(input_uri), storage.absolute(output_uri)
    if storage.same_location(input_uri, output_uri):  # tiles would overwrite what they read
        raise UsageError(f"OUTPUT: {output_uri} is the INPUT itself; write the result to "
                         "another file (an image is never replaced in place)")
    if isinstance(manifest, str | os.PathLike):
        manifest = storage.absolute(manifest)
    pipeline = load_pipeline(pipeline, storage_options)  # an s3:// pipeline: same options
    plan = analyze(pipeline)
    out_kind = regions.output_kind(output_uri)
    asked = parse_memory(memory)
    budget = asked or default_memory()
    compression = regions.check_compression(compression, out_kind)
    so = dict(storage_options or {})
    own_manifest = not hasattr(manifest, "append")
    manifest_uri = ((manifest or output_uri.rstrip("/") + ".manifest.parquet") if own_manifest
                    else None)
    if not resume and not overwrite:
        _refuse_earlier_run(output_uri, manifest_uri, so)
    elif resume and own_manifest:
        _refuse_foreign_output(output_uri, manifest_uri, so)
    if isinstance(engine, str) or engine is None:  # a bad --engine leaves nothing behind
        from pixelmill.engines import parse_engine_spec

        parse_engine_spec(engine)
    # an output (or manifest) folder nothing can be written in is said now, not as a traceback
    # after the input was opened (and perhaps decoded to a spill file beside the output)
    storage.check_writable(output_uri, so)
    if manifest_uri is not None:
        storage.check_writable(manifest_uri, so, field="--manifest")
    # what makes an earlier, finished run's output this job's output (recorded in the image row)
    identity = {"pipeline": pipeline.fingerprint, "level": level, "pyramid": bool(pyramid),
                "compression": compression, **_input_stamp(input_uri, so)}
    if resume:
        earlier = select_rows(read_manifest_table(manifest_uri, so) if own_manifest
                              else manifest.earlier_table, key=input_uri)
        finished = _finished_run(earlier, input_uri, output_uri, identity, so,
                                 manifest_uri or getattr(manifest, "uri", output_uri))
        if finished is not None:
            if own_manifest:  # rows of a run killed after it finished: fold its journal
                _fold_journal(manifest_uri, so)
            finished.memory = budget
            finished.seconds = time.perf_counter() - t_start
            return finished
    out_fs, out_path = storage.get_fs(output_uri, so)
    # a Zarr output on an object store (no rename there) is written in place
    store_uri = (output_uri if out_kind == "zarr" and not storage._is_local(out_fs)
                 else sidecar(output_uri, "pixelmill-tiles.zarr"))
    # chunks of a Zarr output are compressed as they are written; a TIFF's at assembly
    store_compression = compression if out_kind == "zarr" else None
    # an input decoded whole (PNG, JPEG, ...) must fit --memory, or the memory available
    source = regions.open_source(input_uri, so, level=level,
                                 spill_uri=sidecar(output_uri, "pixelmill-spill.npy"),
                                 memory=asked)
    try:  # a refusal before any tile is made leaves no decoded spill behind
        if storage._is_local(out_fs):  # side files (tile store, partial TIFF) go beside it
            try:
                os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
            except OSError as e:
                raise StorageError(f"OUTPUT: {output_uri}: cannot write: {e.strerror or e}") from e
        h, w = source.height, source.width
        n_workers = workers or getattr(engine, "workers", None) or default_workers()
        whole = plan.size_problem(h, w) is not None
        if whole:  # a global op: one unit, the whole image, if the budget allows it
            check_whole(plan, source.shape, source.dtype, budget)
            tile_size, concurrency = max(h, w), 1
        else:
            tile_size, concurrency = choose_tiling(
                plan, source.shape, source.dtype, budget, n_workers, tile, max_tile=max_tile,
                assemble=bool(pyramid or compression or not storage._is_local(out_fs)))
        fingerprint = {"input": input_uri, "shape": list(source.shape), "dtype": source.dtype,
                       "pipeline": pipeline.fingerprint, "tile": tile_size, "halo": plan.halo}
        if store_compression:
            fingerprint["compression"] = store_compression
        fs, store_path = storage.get_fs(store_uri, so)
        store_ok = False
        if resume and not whole:
            plan_path = sidecar(output_uri, "pixelmill-partial.json")
            if fs.exists(store_path):
                prev = store_attrs(store_uri, so).get("pixelmill_plan") or {}
            elif storage._is_local(fs) and os.path.exists(plan_path):
                with open(plan_path, encoding="utf-8") as f:
                    prev = json.load(f).get("pixelmill_plan") or {}
            else:
                prev = {}
            if tile is None and prev.get("tile"):  # keep the interrupted run's tile size
                tile_size = fingerprint["tile"] = int(prev["tile"])
            store_ok = fs.exists(store_path) and prev == fingerprint
            if prev and prev != fingerprint:  # the result is the same; the work done is lost
                import sys

                changed = ", ".join(f"{k} {prev.get(k)} -> {v}" for k, v in fingerprint.items()
                                    if prev.get(k) != v and k != "input")
                print(f"warning: the interrupted run's tiles were made with other settings "
                      f"({changed or 'another input'}); they are not reused, all tiles are made "
                      "again", file=sys.stderr)
        if whole:
            windows = [TileWindow(0, 0, (0, h, 0, w), (0, h, 0, w))]
            if out_kind == "tiff" and compression:  # a codec that cannot hold it: now, too
                try:  # a global op gives a corner the whole image's dtype and channels
                    probed = _probe_output(pipeline, source, None)
                except Exception:  # the whole image will say what is wrong
                    probed = None
                if probed is not None:
                    regions.check_compression(compression, out_kind, *probed)
        else:
            windows = grid(h, w, tile_size, plan.halo, plan.scale, step=plan.step, wrap=plan.wrap)
            out_h, out_w = scaled_shape(h, w, plan.scale)
            if not _loads_runtime(plan):
                out_dtype, out_c = _probe_output(pipeline, source, plan)
                if out_kind == "tiff":  # a codec that cannot hold it fails now, not at the end
                    regions.check_compression(compression, out_kind, out_dtype, out_c)
        # the engine (a cluster's address) before the journal, the partial output or the tile
        # store: an unreachable one left them behind, and the retry was refused as a resume
        own_engine = engine is None or isinstance(engine, str)
        if own_engine and memory_store_here((input_uri, output_uri), engine):
            eng = InlineEngine()  # a memory:// store exists only here: workers see an empty one
        else:
            eng = (get_engine(engine or "local", workers=max(1, min(concurrency, len(windows))))
                   if own_engine else engine)
        if not whole and _loads_runtime(plan):
            try:  # a model's runtime (torch) is loaded by a worker, never by the driver
                out_dtype, out_c = _probe_on_engine(eng, pipeline, source, plan)
                if out_kind == "tiff":
                    regions.check_compression(compression, out_kind, out_dtype, out_c)
            except BaseException:
                if own_engine:
                    eng.close()
                raise
        try:
            writer = (ManifestWriter(manifest_uri, keep_existing=resume, storage_options=so)
                      if own_manifest else manifest)
        except BaseException as e:
            if own_engine:
                eng.close()
            if isinstance(e, OSError) and not isinstance(e, PixelmillError):
                raise StorageError(f"{manifest_uri}: cannot write the manifest: "
                                   f"{e.strerror or e}") from e
            raise
    except BaseException as e:
        from pixelmill.manifest import ManifestBusyError

        if not isinstance(e, ManifestBusyError):  # a job running on this output reads it
            _drop_spill(source, input_uri)
        raise
    canvas = None
    # the colour space of the values: a TIFF output is tagged with the input's ICC profile
    profile = input_profile(pipeline, input_uri, so) if out_kind == "tiff" else None
    try:
        if not whole:
            out_shape = (out_h, out_w, out_c) if out_c else (out_h, out_w)
            chunk = chunk_for(windows, plan, (h, w))
            direct = (out_kind == "tiff" and not pyramid and not compression
                      and storage._is_local(fs) and canvas_tile(chunk, len(windows), out_shape))
            if direct:
                canvas, store_ok = open_canvas(output_uri, out_shape, out_dtype,
                                                canvas_tile(chunk, len(windows), out_shape),
                                                fingerprint, resume, profile)
        done = set()
        if store_ok:
            done = {r["key"] for r in select_rows(writer.earlier_table, ("key", "uri"), status="ok",
                                                  key_prefix=input_uri + TILE_KEY)
                    if is_tile_row(r)}
        elif not whole and canvas is None:
            regions.create_tile_store(store_uri, out_shape, out_dtype, chunk,
                                      attrs={"pixelmill_plan": fingerprint},
                                      compression=store_compression, storage_options=so)
    except BaseException as e:
        if own_engine:
            eng.close()
        if own_manifest:
            writer.abandon()
        if isinstance(e, OSError) and not isinstance(e, PixelmillError):
            raise _write_error(output_uri, e) from e  # a full disk: a message, no traceback
        raise
    # no more workers than tiles left to do (each one starts an interpreter and the pipeline)
    concurrency = max(1, min(concurrency, len(windows) - len(done)))
    summary = TiledSummary(input_uri, output_uri, "ok", tiles=len(windows), tile=tile_size,
                           workers=concurrency, memory=budget, width=w, height=h)
    # a cluster may have fewer slots than this machine's cores: say (and plan) what runs
    concurrency = max(1, min(concurrency, int(getattr(eng, "workers", concurrency) or 1)))
    summary.workers = concurrency
    size = None
    try:
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            rows, failed = _run_units(eng, pipeline, plan, source, windows, done, store_uri, so,
                                      fingerprint, output_uri, concurrency, writer, progress,
                                      whole, summary, canvas, store_compression)
            if not failed:
                if whole:
                    out_h, out_w = rows[0]["out_height"], rows[0]["out_width"]
                    summary.measures = {k: v for k, v in rows[0].items() if k not in _TILE_COLS}
                summary.out_width, summary.out_height = out_w, out_h
                t1 = time.perf_counter()
                summary.t_tiles = t1 - t0
                try:
                    if canvas is not None:
                        size = finish_canvas(canvas, output_uri)
                    else:
                        size = assemble(store_uri, so, output_uri, out_kind, pyramid,
                                        compression, fingerprint, profile)
                except OSError as e:  # a full disk while the pyramid or the TIFF is written
                    if isinstance(e, PixelmillError):
                        raise
                    raise _write_error(output_uri, e) from e
                summary.t_assemble = time.perf_counter() - t1
                if profile is not None:
                    summary.icc = _carried_icc(output_uri, so)
                _drop_spill(source, input_uri)  # the decoded-once spill is no longer needed
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
                       "t_process": summary.seconds, **identity, **summary.measures,
                       **({"icc": summary.icc} if summary.icc else {})})
    except BaseException:
        if own_engine:
            eng.close()
        if own_manifest:
            # the finished tiles' rows are folded into the manifest; where that cannot be
            # written either (the disk that failed), the journal keeps them for a resume and
            # the error that stopped the job is the one said, not the manifest's after it
            try:
                writer.close()
            except Exception:
                writer.abandon()
        raise
    if own_engine:
        eng.close()
    if own_manifest:
        writer.close()
    return summary


def _write_error(output_uri: str, e: OSError) -> StorageError:
    """What an OS error writing the output's files (a full disk, a read-only or removed
    folder) is said as: one line naming OUTPUT; the finished tiles are kept for a resume."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    return StorageError(f"OUTPUT: {output_uri}: cannot write{where}: {e.strerror or e}; the "
                        "tiles finished so far are kept: run again with --resume once it can "
                        "be written")


def _carried_icc(output_uri: str, so: Mapping[str, Any]) -> str | None:
    """The name of the ICC profile the written output carries (read back from its header)."""
    from pixelmill.codecs._icc import icc_description, icc_profile_of_file

    try:
        with storage.open_ranged(output_uri, so) as f:
            return icc_description(icc_profile_of_file(f))
    except Exception:
        return None


_TILE_COLS = {"key", "uri", "output", "tile_row", "tile_col", "y0", "x0", "height", "width",
              "status", "reason", "t_read", "t_process", "t_write", "out_height", "out_width"}

def _tile_bytes(plan: PipelinePlan, source: regions.RegionSource, tile: int) -> int:
    """What the plan gives one tile's working memory (a worker keeps no more free memory)."""
    shape = source.shape
    return tile_work_bytes(int(tile), plan.halo, shape[2] if len(shape) == 3 else 1,
                           max(np.dtype(source.dtype).itemsize, 1), plan.max_scale,
                           plan.pixel_bytes, plan.value_bytes(source.dtype))


def _run_units(eng, pipeline, plan, source, windows, done, store_uri, so, fingerprint,
               output_uri, concurrency, writer, progress, whole, summary, canvas=None,
               store_compression=None):
    uri = fingerprint["input"]
    todo = [win for win in windows if f"{uri}#tile={win.key}" not in done]
    summary.resumed = len(windows) - len(todo)
    threads = max(1, default_workers() // max(1, concurrency))
    if getattr(eng, "name", None) == "inline":  # tiles run in the caller's process: keep its
        threads = None  # OpenCV/BLAS settings (a worker process's are set for the job)
    job = TileJob(source, pipeline.to_json(), (plan.scale.numerator, plan.scale.denominator),
                  plan.step, plan.wrap, store_uri, tuple(sorted(so.items())), output_uri,
                  threads, whole, json.dumps(fingerprint), uri, canvas, store_compression,
                  uuid.uuid4().hex, 0 if whole else _tile_bytes(plan, source, fingerprint["tile"]))
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
