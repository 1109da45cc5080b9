"""Local regions and pooling: turn per-region feature vectors into one global vector.

The image is cut into ``grid = (rows, cols)`` regions. With ``overlap = 0`` they are the cells
of a regular grid; with ``overlap = o > 0`` they are sliding windows of equal size whose
neighbours share the fraction ``o`` of their extent (``overlap = 0.5``: half-overlapping
windows), still ``rows × cols`` of them, the first and last touching the image border.
An extractor runs on every region; the region vectors are then

``concat``
    joined in row-major order (the spatial layout is kept; length ``rows·cols·D``),
``mean`` / ``max``
    pooled element-wise into one vector of a single region's length ``D``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pixelmill.errors import InvalidParameterError, UnsuitableImageError

__all__ = ["POOLINGS", "GridDoesNotFitError", "pool_regions", "region_windows"]

POOLINGS = ("concat", "mean", "max")


class GridDoesNotFitError(UnsuitableImageError, InvalidParameterError):
    """A ``grid`` of more regions than the image has pixels along a side.

    The grid is a valid parameter and the image is the problem (a larger image takes it), so
    a job records the image's row as ``invalid``; it is still an
    :class:`~pixelmill.errors.InvalidParameterError` naming ``grid`` for a caller of
    :func:`region_windows`, and a usage error (exit 2) for a single image on the command line.
    """


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    """``n`` windows over ``[0, length)`` overlapping by ``overlap`` of their size."""
    if n == 1:
        return [(0, length)]
    size = length / (n - (n - 1) * overlap)
    step = size * (1.0 - overlap)
    spans = []
    for i in range(n):
        start = round(i * step)
        stop = length if i == n - 1 else round(i * step + size)
        spans.append((start, max(stop, start + 1)))
    return spans


def region_windows(
    shape: Sequence[int], grid: Sequence[int] = (1, 1), overlap: float = 0.0
) -> list[tuple[slice, slice]]:
    """Row-major ``(row_slice, col_slice)`` windows of a ``grid`` over an image of ``shape``.

    Parameters
    ----------
    shape : sequence of int
        The image's shape (only the first two entries are read).
    grid : (int, int)
        Regions per column and per row.
    overlap : float
        Fraction in ``[0, 1)`` of a window shared with its neighbour.

    Returns
    -------
    list of (slice, slice)

    Raises
    ------
    GridDoesNotFitError
        The image has fewer rows or columns than the grid (a property of the image).
    InvalidParameterError
        ``overlap`` outside ``[0, 1)``.

    Examples
    --------
    >>> region_windows((4, 6), (2, 3))[4]
    (slice(2, 4, None), slice(2, 4, None))
    """
    height, width = int(shape[0]), int(shape[1])
    rows, cols = int(grid[0]), int(grid[1])
    if rows > height or cols > width:
        raise GridDoesNotFitError(
            f"grid: {rows}×{cols} regions do not fit an image of {height}×{width} pixels",
            field="grid",
        )
    if not 0.0 <= overlap < 1.0:
        raise InvalidParameterError(f"overlap: expected 0 <= overlap < 1, got {overlap}",
                                    field="overlap")
    return [
        (slice(r0, r1), slice(c0, c1))
        for r0, r1 in _spans(height, rows, overlap)
        for c0, c1 in _spans(width, cols, overlap)
    ]


def pool_regions(
    image: np.ndarray,
    extract: Callable[[np.ndarray], np.ndarray],
    *,
    grid: Sequence[int] = (1, 1),
    overlap: float = 0.0,
    pool: str = "concat",
) -> np.ndarray:
    """Run ``extract`` on every region of ``image`` and pool the vectors into one (float32).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C.
    extract : callable
        Region array -> 1-D vector; every region must give the same length.
    grid, overlap : see :func:`region_windows`.
    pool : {"concat", "mean", "max"}
        How the region vectors become one vector.

    Returns
    -------
    ndarray
        1-D float32.
    """
    if pool not in POOLINGS:
        raise InvalidParameterError(f"pool: expected one of {POOLINGS}, got {pool!r}",
                                    field="pool")
    windows = region_windows(image.shape, grid, overlap)
    if len(windows) == 1:
        return np.asarray(extract(image), dtype=np.float32).ravel()
    vectors = [np.asarray(extract(image[w]), dtype=np.float32).ravel() for w in windows]
    lengths = {v.size for v in vectors}
    if len(lengths) != 1:
        raise InvalidParameterError(
            f"regions gave vectors of different lengths {sorted(lengths)}; "
            "fix the region size (e.g. hog's size parameter)", field="grid",
        )
    stacked = np.stack(vectors)
    if pool == "concat":
        return stacked.ravel()
    return (stacked.mean(axis=0) if pool == "mean" else stacked.max(axis=0)).astype(np.float32)
