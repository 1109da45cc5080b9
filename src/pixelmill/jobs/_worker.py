"""What a worker does with one work unit: read, decode (shrinking on load), run, encode, write.

:func:`process_unit` never raises for a problem with the input: it returns a manifest row whose
``status`` says what happened — ``ok``, ``invalid`` (not an image, over the pixel limit) or
``failed`` (read/pipeline/encode/write error, with the reason). Crashes and timeouts are caught
one level up (the engine reports them and the driver writes the row).

Shrink-on-load: when the pipeline starts with a downsizing ``resize`` whose target is at most
half the input, JPEGs are decoded directly at 1/2, 1/4 or 1/8 scale in the DCT domain (the
largest reduction that still leaves at least the target size and keeps the resize grid aligned
within :data:`MAX_GRID_SHIFT` output pixels), and the resize is pinned to the
exact width and height it would have produced from the full image, so the output size never
depends on the shortcut. Only area-averaging resizes are shortened this way, since a DCT-domain
downscale averages too; ``tests/jobs/test_shrink.py`` bounds the difference.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pixelmill.engines import unit_timed_out
from pixelmill.engines.local import release_memory
from pixelmill.errors import DecodeError, StorageError, UnsuitableImageError
from pixelmill.jobs._plan import WorkUnit, quality_for
from pixelmill.jobs._planar import planar_fits, run_planes
from pixelmill.pipeline import Pipeline, Step

__all__ = ["TILED_ROUTE", "JobSpec", "MemoryKeeper", "plan_shrink", "process_unit",
           "resize_target"]

#: value of a row's ``_route`` field asking the driver to run that input tile by tile
TILED_ROUTE = "tiled"

#: OS errors that fail every write to OUTPUT alike (a full disk, a full quota, a read-only
#: mount): the row of the input that met one says so (``_stop``) and the job stops there,
#: instead of reading and processing each remaining input only to fail it at its write
OUTPUT_STOP_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

_RESERVED = frozenset({
    "key", "uri", "relpath", "status", "reason", "output", "output_bytes", "sha256", "width",
    "height", "out_width", "out_height", "label", "bytes", "format", "decode_reduce",
    "decode_planes",
    "pipeline", "t_read", "t_decode", "t_process", "t_encode", "t_write", "t_total",
})

#: largest misalignment (in output pixels) of the resize grid a reduced decode may cause
MAX_GRID_SHIFT = 0.05

#: resize methods that average (a DCT-domain downscale is an average too)
_SHRINKABLE_METHODS = ("area",)


@dataclass(frozen=True)
class JobSpec:
    """The per-job settings every worker needs; pickled once per map, cached in workers."""

    pipeline: Pipeline
    quality: int | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    max_pixels: int | None = None
    tile_threshold: int | None = None
    shrink_on_load: bool = True
    #: JPEG → JPEG jobs of area resizes and gaussians run on the Y/Cb/Cr planes (_planar.py)
    planes: bool = True
    #: bytes an input above ``tile_threshold`` may need when it cannot take the tiled route (a
    #: measure-only job, a pipeline that cannot be tiled) and is processed whole
    whole_memory: int | None = None


def resize_target(params: Mapping[str, Any], width: int, height: int) -> tuple[int, int] | None:
    """(width, height) that a ``resize`` step with ``params`` gives for a ``width``×``height`` input.

    Asks the resize op's own size rule (:func:`pixelmill.ops.geometry.output_size`); None when
    the parameters are not understood (then no shortcut is taken).
    """
    from pixelmill.ops.geometry import output_size

    try:
        oh, ow = output_size((height, width), width=params.get("width"),
                             height=params.get("height"), long_side=params.get("long_side"),
                             factor=params.get("factor"))
    except (TypeError, ValueError):
        return None
    return int(ow), int(oh)


@functools.lru_cache(maxsize=256)
def plan_shrink(pipeline: Pipeline, width: int, height: int,
                fmt: str | None) -> tuple[int, Pipeline]:
    """(reduce, pipeline to run) for an input of ``width``×``height`` in format ``fmt``.

    ``reduce`` is 1 (no shortcut) or 2/4/8; when above 1 the returned pipeline's leading resize
    is pinned to the exact size it would give on the full-size image. Cached: collections
    hold few distinct sizes.
    """
    if fmt not in ("jpeg", "jpg") or not pipeline.steps or pipeline.steps[0].op != "resize":
        return 1, pipeline
    first = pipeline.steps[0]
    kw = first.kwargs
    if kw.get("method", "area") not in _SHRINKABLE_METHODS:
        return 1, pipeline
    target = resize_target(kw, width, height)
    if target is None:
        return 1, pipeline
    tw, th = target
    reduce = 1
    for r in (8, 4, 2):
        # libjpeg rounds scaled sizes up: the last reduced pixel then covers fewer than r input
        # pixels, which shifts the resize grid by up to ``pad * target / size`` output pixels
        rw, rh = -(-width // r), -(-height // r)
        shift = max((rw * r - width) * tw / width, (rh * r - height) * th / height)
        if rw >= tw and rh >= th and shift <= MAX_GRID_SHIFT:
            reduce = r
            break
    if reduce == 1:
        return 1, pipeline
    pinned = {k: v for k, v in kw.items() if k not in ("width", "height", "long_side", "factor")}
    pinned.update(width=tw, height=th)
    try:
        step = Step.build("resize", pinned, "steps[0]")
    except ValueError:
        return 1, pipeline
    return reduce, Pipeline((step, *pipeline.steps[1:]))


def _oriented(info: Any) -> tuple[int, int]:
    w, h = int(info.width), int(info.height)
    if getattr(info, "orientation", 1) in (5, 6, 7, 8):
        return h, w
    return w, h


def _reason(stage: str, e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{stage}: {type(e).__name__}: {msg}" if msg else f"{stage}: {type(e).__name__}"


def _result_columns(row: dict[str, Any], result: Any) -> None:
    for name, value in result.measures.items():
        row[f"m_{name}" if name in _RESERVED else name] = value
    for name, vec in result.vectors.items():
        row[f"vec_{name}"] = [float(x) for x in vec]
    for step_key, seconds in result.timings.items():
        i, _, op_name = step_key.partition(":")
        row[f"t_op{i}_{op_name}"] = seconds


_worker_ready = False


def _prepare_worker() -> None:
    """In an engine's worker process: one OpenCV and one BLAS thread (the engine already runs one
    unit per core; their own thread pools would only oversubscribe the cores)."""
    global _worker_ready
    _worker_ready = True
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        from pixelmill.ops._common import set_native_threads

        set_native_threads(1)


#: input formats the tiled route reads region by region (the others are decoded whole first)
_READ_BY_REGION = ("tif",)


def _read(uri: str, so: Mapping[str, Any]) -> bytes:
    """The bytes of one input; plain local paths skip the fsspec lookup (per-image cost)."""
    from pixelmill import storage

    if "://" not in uri and not so:
        storage.check_regular(uri)
        try:
            with open(uri, "rb") as f:
                return f.read()
        except OSError as e:
            raise StorageError(f"{uri}: cannot read: {e.strerror or e}") from e
    return storage.read_bytes(uri, so)


#: names whose header is probed before the whole file is read (a TIFF may be routed to tiles)
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def _tiff_header(uri: str, so: Mapping[str, Any]) -> Any:
    """The header of the TIFF/BigTIFF at ``uri``, read through a file object (its IFDs only),
    or None when it is not a TIFF or cannot be read so (the whole-file path then says why)."""
    from pixelmill import storage
    from pixelmill.codecs._probe import TIFF_MAGIC, probe_tiff_file

    try:
        with storage.open_ranged(uri, so) as f:
            if f.read(4) not in TIFF_MAGIC:
                return None
            f.seek(0)
            return probe_tiff_file(f)
    except Exception:
        return None


def _check_whole(pipeline: Pipeline, info: Any, memory: int, measure_only: bool,
                 reduce: int = 1) -> None:
    """Refuse an image whose whole-image processing would not fit ``memory`` bytes.

    ``reduce``: the shrink-on-load factor it will be decoded at; the pipeline then works on
    the reduced image (a thumbnail of a 72 MP JPEG decoded at 1/8 was refused as needing
    5.2 GiB; it takes ~130 MB)."""
    from pixelmill import storage
    from pixelmill.errors import PixelLimitError
    from pixelmill.tiled._plan import _budget_words, analyze, whole_image_bytes

    plan = analyze(pipeline)
    itemsize = 4 if info.bit_depth == 32 else 2 if info.bit_depth == 16 else 1
    dtype = "float32" if itemsize == 4 else "uint16" if itemsize == 2 else "uint8"
    need = plan.worker_bytes + whole_image_bytes(-(-info.height // reduce),
                                                 -(-info.width // reduce), info.channels,
                                                 itemsize, plan.max_scale,
                                                 plan.value_bytes(dtype))
    if need > memory:
        why = ("a measure-only job reads it whole" if measure_only else
               f"the pipeline cannot be tiled ({plan.size_problem(info.height, info.width)})")
        raise PixelLimitError(
            f"{info.width}x{info.height} is above --tile-threshold and {why}: it needs about "
            f"{storage.human_size(need)}, more than {_budget_words(memory)}")


#: bytes (a unit's file + decoded image + output image) by which the largest unit since the
#: last trim must exceed every unit of the recent window before the kept memory is given back:
#: a 10 MP 8-bit RGB photo filtered at full size, or ten 1920x1080 ones. Below it a trim
#: returns little (what a worker keeps for such units is its usual working set), while the
#: pages it returns cost ~3 µs each to fault in again.
TRIM_EXCESS = 64 * 2**20
#: units a large one must be out of sight before the memory it left is given back: a run of
#: large units, or large units among small ones, keep it (the fast path of reusing it stays)
TRIM_WINDOW = 8


class MemoryKeeper:
    """Decides when a worker gives back memory that large units left and small ones do not use.

    :meth:`note` takes each unit's size in bytes (a proxy of its peak); once the largest unit
    since the last trim exceeds every unit of the last :data:`TRIM_WINDOW` by
    :data:`TRIM_EXCESS`, :func:`release_memory` runs (one trim per return to small units)."""

    def __init__(self, excess: int = TRIM_EXCESS, window: int = TRIM_WINDOW) -> None:
        self.excess = excess
        self.recent: deque[int] = deque(maxlen=window)
        self.high = 0  #: the largest unit since the last trim
        self.trims = 0

    def note(self, size: int) -> bool:
        """Record one unit's size; True when memory was given back after it."""
        self.recent.append(size)
        self.high = max(self.high, size)
        recent = max(self.recent)
        if self.high - recent < self.excess:
            return False
        self.high = recent
        self.trims += 1
        return release_memory()


_keeper = MemoryKeeper()


def process_unit(spec: JobSpec, unit: WorkUnit) -> dict[str, Any]:
    """Process one input and return its manifest row (never raises for a bad input).

    After it, the memory a much larger earlier unit left may be given back (:class:`MemoryKeeper`).
    """
    held: list[int] = []
    try:
        return _process_unit(spec, unit, held)
    finally:
        with contextlib.suppress(Exception):
            _keeper.note(sum(held))


def _process_unit(spec: JobSpec, unit: WorkUnit, held: list[int]) -> dict[str, Any]:
    """:func:`process_unit`'s work; appends the byte sizes of the unit's large buffers to
    ``held``."""
    from pixelmill import codecs

    if not _worker_ready:
        _prepare_worker()

    t_start = time.perf_counter()
    row: dict[str, Any] = {"key": unit.key, "uri": unit.uri, "relpath": unit.relpath,
                           "status": "ok", "reason": None}
    if unit.label is not None:
        row["label"] = unit.label
    so = dict(spec.storage_options)
    pipeline = spec.pipeline
    if (spec.tile_threshold and unit.output is not None and pipeline.tileable
            and unit.uri.lower().endswith(_TIFF_SUFFIXES)):
        # a TIFF above the threshold is read by region on the tiled route: its header is
        # enough here (a 10 GB BigTIFF was read whole into this worker only to learn its size)
        info = _tiff_header(unit.uri, so)
        if info is not None:
            width, height = _oriented(info)
            if width * height > spec.tile_threshold:
                row.update(bytes=unit.size or None, format=str(info.format).lower(),
                           width=width, height=height)
                try:
                    codecs.check_pixel_limit(info, spec.max_pixels)
                except Exception as e:
                    return {**row, "status": "invalid", "reason": _reason("decode", e)}
                return {**row, "_route": TILED_ROUTE}
    try:
        data = _read(unit.uri, so)
    except DecodeError as e:  # not a file at all (a device, a pipe)
        return {**row, "status": "invalid", "reason": _reason("read", e)}
    except Exception as e:  # storage errors are job failures, not bad images
        return {**row, "status": "failed", "reason": _reason("read", e)}
    t_read = time.perf_counter()
    row["bytes"] = len(data)
    held.append(len(data))
    try:
        try:  # the whole file's header, as decode() judges it: handed on, not read again
            info = whole = codecs.probe(data, whole=True)
        except DecodeError:  # data too short for its size: the header still tells the size,
            info, whole = codecs.probe(data), None  # and decode() names the damage below
        width, height = _oriented(info)
    except Exception as e:
        return {**row, "status": "invalid", "reason": _reason("decode", e), "t_read": t_read - t_start}
    row.update(format=str(info.format).lower(), width=width, height=height)
    if (spec.tile_threshold and unit.output is not None and width * height > spec.tile_threshold
            and pipeline.tileable):
        # the pixel limit holds on this route too: always when given, and by default for the
        # formats that must be decoded whole (a TIFF is read by region, whatever its size)
        limit = spec.max_pixels
        if limit is None and row["format"] not in _READ_BY_REGION:
            limit = codecs.DEFAULT_MAX_PIXELS
        try:
            codecs.check_pixel_limit(info, limit)
        except Exception as e:
            return {**row, "status": "invalid", "reason": _reason("decode", e),
                    "t_read": t_read - t_start}
        return {**row, "_route": TILED_ROUTE}
    reduce = 1
    if spec.shrink_on_load:
        reduce, shrunk = plan_shrink(pipeline, width, height, row["format"])
    if (spec.tile_threshold and spec.whole_memory and width * height > spec.tile_threshold):
        try:  # too big to tile here, it must fit the budget whole, as on the tiled route
            _check_whole(shrunk if reduce > 1 else pipeline, info, spec.whole_memory,
                         unit.output is None, reduce)
        except Exception as e:
            return {**row, "status": "invalid", "reason": _reason("decode", e),
                    "t_read": t_read - t_start}
    if reduce > 1:
        pipeline = shrunk
    kw: dict[str, Any] = {"reduce": reduce, "info": whole} if reduce > 1 else {"info": whole}
    if spec.max_pixels is not None:
        kw["max_pixels"] = spec.max_pixels
    if (spec.planes and unit.output is not None and unit.format == "jpg"
            and row["format"] == "jpg" and planar_fits(pipeline, width, height, reduce)
            and codecs.planes_available()):
        try:
            planes = codecs.decode_planes(data, **kw)
        except Exception:  # the RGB decode below reports it, worded as ever
            planes = None
        if planes is not None:
            # handed over in a list that _process_planes empties: this frame keeps neither the
            # file's bytes nor the decoded planes alive while the result is encoded and written
            # (the RGB route frees both as early)
            profile = codecs.icc_profile(data)
            decoded = [planes]
            del data, planes
            return _process_planes(spec, unit, row, pipeline, profile, decoded, reduce, held,
                                   t_start, t_read)
    try:
        image = codecs.decode(data, **kw)
    except Exception as e:
        return {**row, "status": "invalid", "reason": _reason("decode", e),
                "t_read": t_read - t_start}
    # the colour space the values are in (Display P3, Adobe RGB...): the output is tagged with
    # it, or every viewer reads it as sRGB and the colours shift
    profile = codecs.icc_profile(data) if unit.output is not None else None
    del data
    held.append(int(getattr(image, "nbytes", 0)))
    row["decode_reduce"] = reduce
    t_decode = time.perf_counter()
    try:
        result = pipeline.run(image)
    except UnsuitableImageError as e:  # the input cannot go through this op: not a failure
        return {**row, "status": "invalid", "reason": _reason("pipeline", e),
                "t_read": t_read - t_start, "t_decode": t_decode - t_read}
    except Exception as e:
        return {**row, "status": "failed", "reason": _reason("pipeline", e),
                "t_read": t_read - t_start, "t_decode": t_decode - t_read}
    del image
    t_process = time.perf_counter()
    out = result.image
    held.append(int(getattr(out, "nbytes", 0)))
    row["out_width"], row["out_height"] = int(out.shape[1]), int(out.shape[0])
    _result_columns(row, result)

    def encode(carried: bytes | None) -> bytes:
        return codecs.encode(out, unit.format or "png",  # canonical: the plan made it so
                             quality=quality_for(unit.format, spec.quality), icc_profile=carried)

    return _deliver(spec, unit, row, pipeline, out.shape, encode, profile,
                    (t_start, t_read, t_decode, t_process))


def _process_planes(spec: JobSpec, unit: WorkUnit, row: dict[str, Any], pipeline: Pipeline,
                    profile: bytes | None, decoded: list[tuple[Any, Any, Any]], reduce: int,
                    held: list[int], t_start: float, t_read: float) -> dict[str, Any]:
    """The rest of :func:`_process_unit` for a JPEG decoded to its Y/Cb/Cr planes
    (``jobs/_planar.py``): filtered plane by plane, encoded from the planes. ``decoded`` holds
    the planes and is emptied here, so that they are freed once filtered."""
    from pixelmill import codecs

    planes = decoded.pop()
    held.append(sum(int(p.nbytes) for p in planes))
    row["decode_reduce"] = reduce
    row["decode_planes"] = True
    t_decode = time.perf_counter()
    try:
        result = run_planes(pipeline, *planes)
    except Exception as e:
        return {**row, "status": "failed", "reason": _reason("pipeline", e),
                "t_read": t_read - t_start, "t_decode": t_decode - t_read}
    del planes
    t_process = time.perf_counter()
    y, cb, cr = result.image
    held.append(int(y.nbytes) * 3 // 2)
    row["out_width"], row["out_height"] = int(y.shape[1]), int(y.shape[0])
    _result_columns(row, result)

    def encode(carried: bytes | None) -> bytes:
        return codecs.encode_planes(y, cb, cr, quality=quality_for("jpg", spec.quality),
                                    icc_profile=carried)

    return _deliver(spec, unit, row, pipeline, (*y.shape, 3), encode, profile,
                    (t_start, t_read, t_decode, t_process))


def _deliver(spec: JobSpec, unit: WorkUnit, row: dict[str, Any], pipeline: Pipeline,
             shape: tuple[int, ...], encode: Any, profile: bytes | None,
             times: tuple[float, float, float, float]) -> dict[str, Any]:
    """Encode (``encode(profile to embed)``), write atomically and finish ``row`` with the
    output and the stage timings; a measure-only unit only gets its timings."""
    from pixelmill import storage

    t_start, t_read, t_decode, t_process = times
    t_encode = t_write = t_process
    if unit.output is None:  # a measure-only job
        row.update(output=None, output_bytes=None, sha256=None)
    else:
        try:
            carried = None
            if profile is not None and pipeline.keeps_colour_space:
                from pixelmill.codecs._encode import embedded_profile

                carried = embedded_profile(profile, shape, unit.format or "png")
            blob = encode(carried)
        except Exception as e:
            return {**row, "status": "failed", "reason": _reason("encode", e)}
        t_encode = time.perf_counter()
        late = unit_timed_out()
        if late is not None:  # its row is a timeout on every engine: no output behind it
            return {**row, "status": "failed", "reason": f"timeout: timed out after {late:g} s"}
        try:
            storage.write_atomic(unit.output, blob, dict(spec.storage_options))
        except Exception as e:
            row = {**row, "status": "failed", "reason": _reason("write", e)}
            cause = e.__cause__ if isinstance(e, StorageError) else e
            if isinstance(cause, OSError) and cause.errno in OUTPUT_STOP_ERRNOS:
                row["_stop"] = cause.strerror or str(cause)
            return row
        t_write = time.perf_counter()
        row.update(output=unit.output, output_bytes=len(blob),
                   sha256=hashlib.sha256(blob).hexdigest())
        if carried is not None:  # which colour profile the output carries, by its name
            from pixelmill.codecs._icc import icc_description

            row["icc"] = icc_description(carried)
    row.update(t_read=t_read - t_start, t_decode=t_decode - t_read,
               t_process=t_process - t_decode, t_encode=t_encode - t_process,
               t_write=t_write - t_encode, t_total=time.perf_counter() - t_start)
    return row
