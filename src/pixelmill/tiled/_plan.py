"""What a pipeline needs to be tiled exactly, and how big tiles may be within a memory budget."""

from __future__ import annotations

import contextlib
import math
import re
import threading
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pixelmill import storage
from pixelmill.errors import InvalidParameterError, TilingError
from pixelmill.pipeline import Pipeline
from pixelmill.tiling import as_fraction, tile_halo

__all__ = [
    "PeakRSS",
    "PipelinePlan",
    "analyze",
    "choose_tiling",
    "default_memory",
    "parse_memory",
    "tile_work_bytes",
]

#: resident memory of one idle worker process with numpy, OpenCV, zarr and tifffile loaded
WORKER_BASE_BYTES = 140 * 2**20
#: bytes of working memory per value of the halo tile (read buffer, float temporaries, output)
BYTES_PER_VALUE = 24
#: tile sizes tried, largest first, when the budget chooses
TILE_CHOICES = (4096, 2048, 1024, 512, 256, 128, 64)


@dataclass(frozen=True)
class PipelinePlan:
    """The tiling facts of a pipeline: halo (whole pixels), scale, origin step, wrap borders.

    ``problem`` says why the pipeline cannot be tiled exactly (naming the step and op), or is
    ``None`` when it can.
    """

    pipeline: Pipeline
    halo: int
    scale: Fraction
    step: int
    wrap: bool
    max_scale: float
    problem: str | None

    @property
    def tileable(self) -> bool:
        return self.problem is None

    @property
    def pixel_bytes(self) -> int:
        """The largest working memory per input pixel an op declares (0: generic estimate)."""
        return max((int(s.spec.extra.get("pixel_bytes", 0)) for s in self.pipeline.steps),
                   default=0)

    def value_bytes(self, dtype: str) -> int:
        """Working memory per value of a tile for a source of ``dtype``: the generic
        :data:`BYTES_PER_VALUE`, or more where an op declares it (``value_bytes``, measured
        peaks: float64 temporaries), following the dtype from step to step."""
        most, current = BYTES_PER_VALUE, str(np.dtype(dtype))
        for s in self.pipeline.steps:
            rule = s.spec.extra.get("value_bytes", 0)
            most = max(most, int(rule(current) if callable(rule) else rule))
            if s.spec.output in ("image", "labels"):
                current = s.spec.output_dtype(s.kwargs, current)
        return most

    @property
    def worker_bytes(self) -> int:
        """Resident memory of one worker: the base, plus the largest model an op declares."""
        extra = [int(s.spec.extra.get("worker_bytes", 0)) for s in self.pipeline.steps]
        return WORKER_BASE_BYTES + max(extra, default=0)

    def size_problem(self, height: int, width: int) -> str | None:
        """Why this image's size prevents exact tiling, or None.

        A step that changes the size is translation-invariant only when it maps the image to a
        whole number of pixels (``47 × 0.5`` is not: OpenCV then resamples the whole row with a
        ratio of 47/24, which no tile can reproduce).
        """
        if self.problem is not None:
            return self.problem
        cum = Fraction(1)
        for i, s in enumerate(self.pipeline.steps):
            cum *= as_fraction(s.scale or 1.0)
            if (height * cum).denominator != 1 or (width * cum).denominator != 1:
                return (f"steps[{i}] ({s.op}): scales {width}×{height} by {float(cum):g} to a "
                        "fraction of a pixel, so its sampling grid depends on the whole image")
        return None


def _uses_wrap(step) -> bool:
    spec = step.spec
    for name, value in step.params:
        p = spec.params.get(name)
        if value == "wrap" and p is not None and p.choices and "wrap" in p.choices:
            return True
    return False


def analyze(pipeline: Pipeline) -> PipelinePlan:
    """Derive the tile halo, scale and origin step from the pipeline's declared ops."""
    problems = [f"steps[{i}] ({op}): {why}" for i, op, why in pipeline.untileable_steps()]
    step, cum, max_scale = 1, Fraction(1), 1.0
    wrap_ops, other_ops = [], []
    for s in pipeline.steps:
        sc = s.scale
        if sc is None:
            break
        if s.halo > 0 and math.isfinite(s.halo):
            (wrap_ops if _uses_wrap(s) else other_ops).append(s.op)
        cum *= as_fraction(sc)
        step = math.lcm(step, cum.denominator)
        max_scale = max(max_scale, float(cum))
    if wrap_ops and other_ops:
        problems.append(
            f"{', '.join(wrap_ops)} wraps around the image border while {', '.join(other_ops)} "
            "does not; tiles cannot give both the same context")
    if problems:
        return PipelinePlan(pipeline, 0, Fraction(1), 1, False, max_scale, "; ".join(problems))
    halo = tile_halo(pipeline.halo, step)
    return PipelinePlan(pipeline, halo, as_fraction(pipeline.scale or 1.0), step, bool(wrap_ops),
                        max_scale, None)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
          "tib": 2**40}


def parse_memory(value: str | int | float | None, field: str = "memory") -> int | None:
    """``"2GB"``, ``"512MiB"``, ``"1.5G"`` or a number of bytes -> bytes (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidParameterError(f"{field}: expected a positive size, got {value!r}",
                                        field=field)
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise InvalidParameterError(
            f"{field}: expected a size like 2GB, 512MB or 1.5GiB, got {value!r}", field=field)
    return int(float(m.group(1)) * _UNITS[unit])


class DefaultMemory(int):
    """A memory budget pixelmill chose because none was given (no ``--memory``): an ``int``
    that lets error messages say the budget was a default, not the user's."""


def default_memory() -> int:
    """Half the memory available now, at most 4 GiB (a :class:`DefaultMemory`)."""
    import psutil

    return DefaultMemory(min(4 * 2**30, psutil.virtual_memory().available // 2))


def _budget_words(memory: int) -> str:
    if isinstance(memory, DefaultMemory):
        return (f"the default memory budget of {storage.human_size(memory)} (half the memory "
                "available, at most 4 GiB; --memory was not given)")
    return f"--memory: {storage.human_size(memory)}"


def tile_work_bytes(tile: int, halo: int, channels: int, itemsize: int,
                    max_scale: float = 1.0, pixel_bytes: int = 0,
                    value_bytes: int = BYTES_PER_VALUE) -> int:
    """Estimated peak working memory of one worker processing one tile.

    ``pixel_bytes``: what an op declares it needs per input pixel, when that is more;
    ``value_bytes``: per value of the tile (:meth:`PipelinePlan.value_bytes`).
    """
    side = tile + 2 * halo
    values = side * side * channels
    generic = values * itemsize + values * max(1.0, max_scale) ** 2 * value_bytes
    return int(max(generic, side * side * pixel_bytes))


def whole_image_bytes(height: int, width: int, channels: int, itemsize: int,
                      max_scale: float = 1.0, value_bytes: int = BYTES_PER_VALUE) -> int:
    """Estimated peak memory of processing an image whole (pipelines with global ops)."""
    values = height * width * channels
    return int(values * itemsize + values * max(1.0, max_scale) ** 2 * value_bytes)


def process_rss() -> int:
    """This process's resident memory in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _driver_bytes() -> int:
    return process_rss()


def assembly_bytes(width: int, channels: int, itemsize: int, band: int = 256) -> int:
    """Peak memory the driver adds while streaming a band of rows into the output."""
    return 3 * band * width * channels * itemsize


def choose_tiling(
    plan: PipelinePlan,
    shape: tuple[int, ...],
    dtype: str,
    memory: int,
    workers: int,
    tile: int | None = None,
    *,
    assemble: bool = True,
    max_tile: int | None = None,
) -> tuple[int, int]:
    """``(tile, concurrency)`` that fit ``memory`` for the whole job (driver plus workers).

    The largest tile from :data:`TILE_CHOICES` (or the given ``tile``) at the most workers
    (up to ``workers``) whose estimated peak fits; a budget too small for even one worker with
    a 64-pixel tile is a usage error naming ``--memory``. ``assemble``: the output is streamed
    from a tile store by the driver afterwards (pyramids, compressed TIFFs), which costs a band.
    ``max_tile`` (when ``tile`` is not given): try that size first, then the smaller choices.
    A tile larger than the image is capped to the image's longer side (the job is one tile),
    before the memory estimate. ``memory`` from :func:`default_memory` (no ``--memory`` given)
    is called the default budget in the error.
    """
    h, w = shape[:2]
    whole = max(1, h, w)  # one tile of this core size covers the image
    channels = shape[2] if len(shape) == 3 else 1
    itemsize = max(np.dtype(dtype).itemsize, 1)
    per_value = plan.value_bytes(dtype)
    out_w = math.ceil(w * float(plan.scale))
    fixed = _driver_bytes() + (assembly_bytes(out_w, channels, 4) if assemble else 0)
    if tile:
        candidates = [min(tile, whole)]
    elif max_tile:
        candidates = [min(max_tile, whole)] + [t for t in TILE_CHOICES
                                               if t < min(max_tile, whole)]
    else:
        candidates = [t for t in TILE_CHOICES if t <= max(64, max(h, w))] or [64]
    for n in range(max(1, workers), 0, -1):
        for t in candidates:
            need = fixed + n * (plan.worker_bytes + tile_work_bytes(
                t, plan.halo, channels, itemsize, plan.max_scale, plan.pixel_bytes, per_value))
            if need <= memory:
                return t, n
    smallest = candidates[-1]
    need = fixed + plan.worker_bytes + tile_work_bytes(smallest, plan.halo, channels, itemsize,
                                                       plan.max_scale, plan.pixel_bytes,
                                                       per_value)
    advice = ("; pass --memory or a smaller --tile" if isinstance(memory, DefaultMemory)
              else "")
    raise InvalidParameterError(
        f"{_budget_words(memory)} is too small for this image and pipeline "
        f"(one worker with {smallest}-pixel tiles needs about "
        f"{storage.human_size(need)}){advice}",
        field="memory")


def check_whole(plan: PipelinePlan, shape: tuple[int, ...], dtype: str, memory: int) -> None:
    """Refuse a pipeline that cannot be tiled when the image does not fit the budget whole."""
    problem = plan.size_problem(shape[0], shape[1])
    channels = shape[2] if len(shape) == 3 else 1
    need = (_driver_bytes() + plan.worker_bytes
            + whole_image_bytes(shape[0], shape[1], channels, np.dtype(dtype).itemsize,
                                plan.max_scale, plan.value_bytes(dtype)))
    if need > memory:
        raise TilingError(
            f"cannot tile this pipeline exactly — {problem} — and the "
            f"{shape[1]}×{shape[0]} image needs about {storage.human_size(need)} to process "
            "whole, "
            f"more than the memory budget of {storage.human_size(memory)}")


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
