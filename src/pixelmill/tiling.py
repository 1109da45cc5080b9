"""Tiling geometry: tile windows, the tile grid, and the scale/crop arithmetic — no I/O.

A huge image is cut into *cores* that cover it exactly once. Each core is read together with a
*halo* of context pixels around it (clamped to the image), processed, and the part of the result
that belongs to the core is cut out again. Where the halo box is clamped at the true image border
there is no context to add: the op's own border mode applies there, exactly as it does when the
whole image is processed at once. So the crop margin is, per side, the context that was actually
available (``core - halo box``), never the nominal halo.

When the pipeline changes the size (scale ``s = p/q``, e.g. ``2`` for ×2 super-resolution or
``1/2`` for a ×0.5 resize), every tile origin is placed on a multiple of ``q`` so that
``origin × s`` is a whole output pixel and the tile outputs line up without seams.

Boxes are half-open ``(y0, y1, x0, x1)`` tuples in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Box",
    "TileWindow",
    "as_fraction",
    "crop_box",
    "grid",
    "grid_shape",
    "iter_bands",
    "origin_step",
    "scale_box",
    "scaled_length",
    "scaled_shape",
    "tile_halo",
]

Box = tuple[int, int, int, int]


def as_fraction(scale: float | Fraction) -> Fraction:
    """The scale as an exact fraction (``0.5`` -> ``1/2``, ``1/3`` -> ``1/3``)."""
    if isinstance(scale, Fraction):
        return scale
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return Fraction(scale).limit_denominator(1000)


def origin_step(scale: float | Fraction) -> int:
    """Tile origins are multiples of this, so that ``origin × scale`` is a whole pixel."""
    return as_fraction(scale).denominator


def scaled_length(n: int, scale: float | Fraction) -> int:
    """Output length for an input length ``n``: ``round(n × scale)``, half to even, as OpenCV's
    ``resize(fx=...)`` and the resize op compute it."""
    return round(n * as_fraction(scale))


def scaled_shape(height: int, width: int, scale: float | Fraction) -> tuple[int, int]:
    """``(out_height, out_width)`` of an image of this size after a pipeline of ``scale``."""
    return scaled_length(height, scale), scaled_length(width, scale)


def tile_halo(halo: float, step: int = 1) -> int:
    """The halo the tiler reads: ``halo`` rounded up to whole pixels and to the origin ``step``."""
    if not math.isfinite(halo) or halo < 0:
        raise ValueError(f"halo must be a finite number >= 0, got {halo!r}")
    h = math.ceil(halo - 1e-9)
    return -(-h // step) * step


@dataclass(frozen=True, order=True)
class TileWindow:
    """One tile: its grid position, its core box and its halo box (both in input pixels).

    ``core`` boxes of a grid cover the image exactly once; ``halo`` is the core grown by the
    halo on each side and clamped to the image, so it always contains ``core``.
    """

    row: int
    col: int
    core: Box
    halo: Box

    @property
    def key(self) -> str:
        """``r,c`` — used in manifest keys as ``URI#tile=r,c``."""
        return f"{self.row},{self.col}"

    @property
    def core_shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.core
        return y1 - y0, x1 - x0

    @property
    def halo_shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.halo
        return y1 - y0, x1 - x0

    @property
    def margins(self) -> tuple[int, int, int, int]:
        """Context actually read on each side: ``(top, bottom, left, right)``."""
        cy0, cy1, cx0, cx1 = self.core
        hy0, hy1, hx0, hx1 = self.halo
        return cy0 - hy0, hy1 - cy1, cx0 - hx0, hx1 - cx1

    def slices(self, box: str = "core") -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core if box == "core" else self.halo
        return slice(y0, y1), slice(x0, x1)


def _starts(n: int, tile: int) -> list[int]:
    return list(range(0, n, tile)) if n > 0 else []


def grid_shape(height: int, width: int, tile: int | tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the grid (after no adjustment: pass the tile :func:`grid` used)."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    return -(-height // th), -(-width // tw)


def _check_tile(tile: int | tuple[int, int], step: int) -> tuple[int, int]:
    th, tw = (tile, tile) if not isinstance(tile, tuple | list) else tuple(tile)
    for t in (th, tw):
        if not isinstance(t, int) or t < 1:
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
    # round up to the origin step so every core origin × scale is a whole output pixel
    return -(-th // step) * step, -(-tw // step) * step


def grid(
    height: int,
    width: int,
    tile: int | tuple[int, int],
    halo: int,
    scale: float | Fraction = 1,
    *,
    step: int | None = None,
    wrap: bool = False,
) -> list[TileWindow]:
    """The tile windows of an image, row-major.

    Parameters
    ----------
    height, width : int
        Image size in input pixels.
    tile : int or (int, int)
        Core size; rounded up to a multiple of :func:`origin_step` (``scale``'s denominator).
    halo : int
        Context pixels per side (see :func:`tile_halo`). Any size, even larger than ``tile``;
        it should be a multiple of ``step``.
    scale : float
        The pipeline's output/input size ratio.
    step : int, optional
        Tile origins are multiples of this (default: :func:`origin_step` of ``scale``; a
        pipeline whose intermediate steps change the size needs the lcm over its steps).
    wrap : bool
        Halo boxes are *not* clamped: they may extend past the image (for ops whose border mode
        wraps around, the reader fills them with pixels from the opposite side).

    Returns
    -------
    list of TileWindow
    """
    if height < 0 or width < 0:
        raise ValueError("image size must be >= 0")
    if halo < 0:
        raise ValueError("halo must be >= 0")
    th, tw = _check_tile(tile, step or origin_step(scale))
    out = []
    for r, y0 in enumerate(_starts(height, th)):
        y1 = min(height, y0 + th)
        for c, x0 in enumerate(_starts(width, tw)):
            x1 = min(width, x0 + tw)
            if wrap:
                hbox = (y0 - halo, y1 + halo, x0 - halo, x1 + halo)
            else:
                hbox = (max(0, y0 - halo), min(height, y1 + halo),
                        max(0, x0 - halo), min(width, x1 + halo))
            out.append(TileWindow(r, c, (y0, y1, x0, x1), hbox))
    return out


def iter_bands(height: int, band: int) -> Iterator[tuple[int, int]]:
    """``(y0, y1)`` bands of ``band`` rows covering ``height``."""
    for y0 in range(0, height, band):
        yield y0, min(height, y0 + band)


def scale_box(box: Box, scale: float | Fraction, image_shape: tuple[int, int] | None = None) -> Box:
    """A box in input pixels mapped to output pixels.

    A box edge that lies on the image's far border (``image_shape``) maps to the output image's
    far border (:func:`scaled_length`), so rounding of odd sizes never leaves a gap.
    """
    f = as_fraction(scale)
    y0, y1, x0, x1 = box

    def edge(v: int, n: int | None) -> int:
        if n is not None and v == n:
            return scaled_length(n, f)
        return math.floor(v * f)

    h, w = image_shape if image_shape is not None else (None, None)
    return edge(y0, h), edge(y1, h), edge(x0, w), edge(x1, w)


def crop_box(
    window: TileWindow,
    scale: float | Fraction = 1,
    image_shape: tuple[int, int] | None = None,
) -> Box:
    """Where the core lies inside the processed halo box, in output pixels.

    The processed tile covers ``scale_box(window.halo)``; the core's output box is
    ``scale_box(window.core)``; this is the latter relative to the former.
    """
    hy0, _, hx0, _ = scale_box(window.halo, scale, image_shape)
    cy0, cy1, cx0, cx1 = scale_box(window.core, scale, image_shape)
    return cy0 - hy0, cy1 - hy0, cx0 - hx0, cx1 - hx0
