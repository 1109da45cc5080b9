"""Native Dask API: huge images as lazy dask arrays, and pipelines applied chunk by chunk.

>>> import pixelmill.dask as pmd
>>> image = pmd.from_image("s3://bucket/scene.tif", chunks=2048)  # doctest: +SKIP
>>> smooth = pmd.apply(image, [{"op": "gaussian", "sigma": 3}])  # doctest: +SKIP
>>> smooth.to_zarr("s3://bucket/scene-smooth.zarr")  # doctest: +SKIP

:func:`from_image` reads windows through :mod:`pixelmill.regions` (TIFF/BigTIFF tiles or
strips, Zarr and OME-Zarr, ``.npy``), so a chunk reads only the bytes it covers; formats without
random access (JPEG, PNG, ...) are decoded once, whole. :func:`apply` gives each chunk the
pipeline's halo (from the op registry) of neighbouring pixels, runs the pipeline, and crops the
halo (scaled by the pipeline's scale) off again; chunks on the image's edge get no padding
there, so each op applies its own border mode exactly as on the whole image, and the result
equals the pipeline run on the whole array (as dask-image does for single filters).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from pixelmill.errors import InvalidParameterError, MissingDependencyError, TilingError, UsageError

__all__ = ["apply", "from_image"]


def _dask_array():
    try:
        import dask.array as da
    except ImportError as e:  # pragma: no cover - depends on the install
        raise MissingDependencyError("dask", "dask") from e
    return da


class _RegionArray:
    """An array-like over a :class:`~pixelmill.regions.RegionSource` for ``da.from_array``."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        from pixelmill.regions import read_region

        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key[:2], self.shape[:2],
                                                                   strict=True))
        block = read_region(self.source, (y0, max(y0, y1), x0, max(x0, x1)))
        return block[(slice(None), slice(None), *key[2:])] if self.ndim == 3 else block


_DEFAULT_LIMIT = object()


def from_image(uri: str, *, chunks: int | tuple[int, int] = 1024, level: int = 0,
               storage_options: Mapping[str, Any] | None = None,
               max_pixels: Any = _DEFAULT_LIMIT) -> Any:
    """A lazy ``dask.array`` (H×W or H×W×C) over the image at ``uri``.

    Parameters
    ----------
    uri : str
        Any fsspec URL of a TIFF/BigTIFF, Zarr or OME-Zarr, ``.npy``, or any other image format.
    chunks : int or (int, int)
        Chunk height and width in pixels (channels are never split).
    level : int
        Pyramid level for pyramidal TIFF and OME-Zarr.
    storage_options : dict, optional
        fsspec options (credentials, endpoint) — they travel with the graph to the workers.
    max_pixels : int or None, optional
        For formats decoded whole (JPEG, PNG, WebP, ...): refuse an image whose header claims
        more pixels (default :data:`pixelmill.codecs.DEFAULT_MAX_PIXELS`; ``None``: no limit,
        the whole image must fit in memory). Region-read formats are never decoded whole.
    """
    da = _dask_array()
    from dask.base import tokenize

    from pixelmill.regions import open_source

    sizes = (chunks, chunks) if isinstance(chunks, numbers.Integral) else chunks
    try:
        ch, cw = (int(c) for c in sizes if isinstance(c, numbers.Integral))
    except (TypeError, ValueError):
        ch = cw = 0
    if isinstance(chunks, bool) or ch < 1 or cw < 1:
        raise InvalidParameterError(f"chunks: expected a size >= 1 or (height, width), got "
                                    f"{chunks!r}", field="chunks")
    from pixelmill import storage
    from pixelmill.errors import PixelmillError

    try:
        try:
            source = open_source(uri, storage_options, level=level)
        except UsageError as e:
            if "random access" not in str(e):
                raise
            from pixelmill.images import read_image  # no random access: decode once, whole

            limit = {} if max_pixels is _DEFAULT_LIMIT else {"max_pixels": max_pixels}
            image = read_image(uri, storage_options=storage_options, **limit)
            return da.from_array(image, chunks=(ch, cw) + (-1,) * (image.ndim - 2))
    except PixelmillError:
        raise
    except Exception as e:  # a store's client error (no credentials, unreachable endpoint)
        if storage.is_local(storage.get_fs(uri, storage_options)[0]):
            raise
        raise storage.remote_error(uri, e) from e
    arr = _RegionArray(source)
    return da.from_array(arr, chunks=(ch, cw) + (-1,) * (arr.ndim - 2), lock=False,
                         asarray=True, fancy=False, meta=np.empty((0,) * arr.ndim, arr.dtype),
                         name="pixelmill-image-" + tokenize(uri, level, ch, cw, source))


def _run_block(block: np.ndarray, pipeline: Any, pads: tuple[tuple[int, ...], ...],
               scale: Any, block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """Run the pipeline on a padded block and crop its (scaled) halo off again."""
    from pixelmill.tiling import scaled_length

    (top, bottom), (left, right) = (p[i] for p, i in zip(pads, block_id[:2], strict=True))
    out = pipeline(block)
    h, w = out.shape[:2]
    if (h, w) != (scaled_length(block.shape[0], scale), scaled_length(block.shape[1], scale)):
        raise TilingError(f"the pipeline made a {w}×{h} block from {block.shape[1]}×"
                          f"{block.shape[0]} pixels, but its declared scale {float(scale):g} "
                          "says otherwise; an op declares the wrong scale")
    t, b = scaled_length(top, scale), scaled_length(bottom, scale)
    lo, r = scaled_length(left, scale), scaled_length(right, scale)
    return out[t:h - b, lo:w - r]


def _regular_chunks(total: int, size: int, depth: int) -> tuple[int, ...]:
    """Chunks of ``size`` along an axis, the last one merged when it would be under ``depth``."""
    chunks = [size] * (total // size)
    rest = total - size * len(chunks)
    if rest and rest < depth and chunks:
        chunks[-1] += rest
    elif rest:
        chunks.append(rest)
    return tuple(chunks)


def apply(array: Any, pipeline: Any, *, halo: int | None = None) -> Any:
    """Apply ``pipeline`` to a (lazy) image array chunk by chunk, as if to the whole array.

    Parameters
    ----------
    array : dask.array.Array or numpy.ndarray
        H×W or H×W×C image; channels are kept in one chunk.
    pipeline : Pipeline, dict, list or path
        Every step must be tileable: a finite halo and a fixed scale (no measurement, vector or
        whole-image ops) — otherwise :class:`~pixelmill.errors.TilingError` names the step.
    halo : int, optional
        Overlap in input pixels; default the pipeline's halo from the op registry. Rounded up
        to whole pixels, and to a multiple of the pipeline's scale denominator (2 for ×0.5).

    Returns
    -------
    dask.array.Array
        The lazy result; compute it, or store it with ``to_zarr``.
    """
    da = _dask_array()
    from pixelmill.pipeline import load_pipeline

    pipe = load_pipeline(pipeline)
    bad = pipe.untileable_steps()
    if bad:
        i, op, why = bad[0]
        raise TilingError(f"steps[{i}] ({op}): cannot run chunk by chunk: {why}")
    from pixelmill.tiled._plan import analyze
    from pixelmill.tiling import scaled_length, tile_halo

    plan = analyze(pipe)
    if plan.problem is not None:
        raise TilingError(f"cannot run chunk by chunk: {plan.problem}")
    scale, step = plan.scale, plan.step  # chunk origins and the halo are multiples of step
    if halo is None:
        depth = plan.halo
    elif isinstance(halo, bool) or not isinstance(halo, numbers.Real) or not 0 <= halo < math.inf:
        raise InvalidParameterError(f"halo: expected a number of pixels >= 0, got {halo!r}",
                                    field="halo")
    else:
        depth = tile_halo(halo, step)
    x = array if isinstance(array, da.Array) else da.from_array(np.asarray(array), chunks=1024)
    if x.ndim not in (2, 3):
        raise InvalidParameterError(f"array: expected H×W or H×W×C, got shape {x.shape}",
                                    field="array")
    if (why := plan.size_problem(*x.shape[:2])) is not None:
        raise TilingError(f"cannot run chunk by chunk: {why}")
    if x.ndim == 3:
        x = x.rechunk({2: -1})
    for axis in (0, 1):
        sizes = x.chunks[axis]
        # every chunk must hold its neighbours' halo, and start on a multiple of the step
        if len(sizes) > 1 and (min(sizes) < depth or any(c % step for c in sizes[:-1])):
            size = -(-max(depth, max(sizes)) // step) * step
            x = x.rechunk({axis: _regular_chunks(sum(sizes), size, depth)})
    # probe the output's dtype and channels on a small piece
    side = 2 * depth + 16
    sample = pipe(np.zeros((min(x.shape[0], side), min(x.shape[1], side), *x.shape[2:]),
                           x.dtype))
    pads = tuple(tuple((depth if k > 0 else 0, depth if k < len(c) - 1 else 0)
                       for k in range(len(c))) for c in x.chunks[:2])
    depths = {axis: depth if len(x.chunks[axis]) > 1 else 0 for axis in (0, 1)}
    padded = (da.overlap.overlap(x, depth=depths, boundary="none") if any(depths.values())
              else x)
    out_chunks = tuple(tuple(scaled_length(c, scale) for c in cs) for cs in x.chunks[:2])
    kwargs: dict[str, Any] = {}
    if sample.ndim == 3:
        out_chunks += ((sample.shape[2],),)
        if x.ndim == 2:
            kwargs["new_axis"] = 2
    elif x.ndim == 3:
        kwargs["drop_axis"] = 2
    run = functools.partial(_run_block, pipeline=pipe, pads=pads, scale=scale)
    return da.map_blocks(run, padded, chunks=out_chunks,
                         dtype=sample.dtype, meta=np.empty((0,) * sample.ndim, sample.dtype),
                         **kwargs)
