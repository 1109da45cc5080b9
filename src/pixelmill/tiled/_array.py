"""Tiled processing of one in-memory array: the exact-stitching core shared with the tiled job."""

from __future__ import annotations

from typing import Any

import numpy as np

from pixelmill.errors import TilingError
from pixelmill.pipeline import Pipeline, load_pipeline
from pixelmill.tiled._plan import PipelinePlan, analyze, check_whole, parse_memory
from pixelmill.tiling import TileWindow, crop_box, grid, scale_box, scaled_shape

__all__ = ["crop_tile", "process_array_tiled", "window_of"]


def window_of(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image[box]``; a box reaching outside wraps around (for wrap-border pipelines)."""
    y0, y1, x0, x1 = box
    h, w = image.shape[:2]
    if 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w:
        return image[y0:y1, x0:x1]
    return image[np.arange(y0, y1) % h][:, np.arange(x0, x1) % w]


def crop_tile(out: Any, window: TileWindow, plan: PipelinePlan,
              image_shape: tuple[int, int]) -> np.ndarray:
    """Cut the core out of a processed halo tile, checking the op kept its declared scale."""
    if not isinstance(out, np.ndarray):
        raise TilingError(f"the pipeline returned {type(out).__name__}, not an image")
    hy0, hy1, hx0, hx1 = scale_box(window.halo, plan.scale, image_shape)
    if out.shape[:2] != (hy1 - hy0, hx1 - hx0):
        raise TilingError(
            f"tile {window.key}: the pipeline made a {out.shape[1]}×{out.shape[0]} tile from "
            f"{window.halo_shape[1]}×{window.halo_shape[0]} pixels, but its declared scale "
            f"{float(plan.scale):g} says {hx1 - hx0}×{hy1 - hy0}; an op declares the wrong scale")
    y0, y1, x0, x1 = crop_box(window, plan.scale, image_shape)
    return out[y0:y1, x0:x1]


def process_array_tiled(
    pipeline: Pipeline | Any,
    image: np.ndarray,
    tile: int | tuple[int, int] = 512,
    *,
    memory: int | str | None = None,
) -> np.ndarray:
    """Run ``pipeline`` on ``image`` tile by tile and stitch the cores; equals ``pipeline(image)``.

    Each tile is read with the pipeline's halo (clamped at the image border, where the ops'
    own border modes apply exactly as on the whole image) and its core is cut out again.

    Parameters
    ----------
    pipeline : Pipeline, dict, list or path
        The pipeline (anything :func:`~pixelmill.pipeline.load_pipeline` takes).
    image : ndarray
        H×W or H×W×C.
    tile : int or (int, int)
        Core size in input pixels (rounded up to the pipeline's origin step).
    memory : int or str, optional
        A pipeline that cannot be tiled (a global op) is run on the whole image when it fits
        this budget, and refused with :class:`~pixelmill.errors.TilingError` naming the op
        otherwise. Without a budget it is always run whole.

    Returns
    -------
    ndarray
        The stitched output.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(64 * 48, dtype=np.uint8).reshape(64, 48)
    >>> p = [{"op": "gaussian", "sigma": 2.0}]
    >>> from pixelmill.pipeline import load_pipeline
    >>> bool((process_array_tiled(p, img, tile=16) == load_pipeline(p)(img)).all())
    True
    """
    pipeline = load_pipeline(pipeline)
    plan = analyze(pipeline)
    if plan.size_problem(*image.shape[:2]):
        budget = parse_memory(memory)
        if budget is not None:
            check_whole(plan, image.shape, image.dtype.name, budget)
        return pipeline(image)
    h, w = image.shape[:2]
    out: np.ndarray | None = None
    for window in grid(h, w, tile, plan.halo, plan.scale, step=plan.step, wrap=plan.wrap):
        part = crop_tile(pipeline(np.ascontiguousarray(window_of(image, window.halo))),
                         window, plan, (h, w))
        if out is None:
            out = np.empty((*scaled_shape(h, w, plan.scale), *part.shape[2:]), part.dtype)
        y0, y1, x0, x1 = scale_box(window.core, plan.scale, (h, w))
        out[y0:y1, x0:x1] = part
    if out is None:  # an empty image
        return pipeline(image)
    return out
