"""Huge images, tile by tile: exact (tiled == whole), streaming, resumable, within a budget.

- :func:`run_tiled` — one image from storage to storage on an engine (tiles are work units,
  rows in the manifest, resumable after a kill);
- :func:`process_array_tiled` — the same stitching on an in-memory array;
- :func:`demo` — builds a >= 100-megapixel image from bundled samples and processes it.

The overlap is derived from the pipeline's ops (their declared ``halo`` and ``scale``), never
chosen by hand; image borders keep each op's own border mode.
"""

from __future__ import annotations

from pixelmill.tiled._array import process_array_tiled
from pixelmill.tiled._demo import demo
from pixelmill.tiled._job import TiledSummary, run_tiled
from pixelmill.tiled._plan import PipelinePlan, analyze, choose_tiling, parse_memory

__all__ = [
    "PipelinePlan",
    "TiledSummary",
    "analyze",
    "choose_tiling",
    "demo",
    "parse_memory",
    "process_array_tiled",
    "run_tiled",
]
