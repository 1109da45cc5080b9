"""What stored pixels become when read: the in-memory decoder's rules, applied window by window.

:func:`pixelmill.codecs.decode` turns a TIFF page upright (its Orientation tag, as it does EXIF
orientation for JPEG/PNG/WebP), expands palettes, turns CMYK into RGB(A), inverts min-is-white,
widens 1-bit samples to 0/255 uint8 and reads float64/float16 as float32; it refuses other sample
types and more than 4 channels. A region source does the same per window, so ``pixelmill tile``
reads what ``pixelmill run`` reads. All of these are per pixel (or a flip/transpose of the
window), so a window of the converted image is the conversion of a window of the stored one.
"""

from __future__ import annotations

import numpy as np

from pixelmill import codecs
from pixelmill.codecs._decode import _TIFF_KEPT, tiff_samples
from pixelmill.errors import DecodeError

__all__ = ["check_channels", "decoded_layout", "decoded_samples", "stored_box"]

#: the in-memory decoder's per-pixel rules for stored TIFF samples, shared, not copied
decoded_samples = tiff_samples


def check_channels(uri: str, channels: int, detail: str = "") -> None:
    """Refuse more channels than the in-memory decoder reads (the same reason, before work)."""
    try:
        codecs.check_channels(channels)
    except DecodeError as e:
        raise DecodeError(f"{uri}: {e}{detail}") from e


def decoded_layout(uri: str, shape: tuple[int, ...], dtype: str, photometric: str = "", *,
                   strict: bool = True, detail: str = "") -> tuple[tuple[int, ...], str]:
    """(shape, dtype) that :func:`decoded_samples` gives for stored ``shape``/``dtype``.

    Found by converting one stored pixel, so it cannot disagree with the reads. Raises
    :class:`~pixelmill.errors.DecodeError` (``URI: reason``) for what the in-memory decoder
    refuses.
    """
    pixel = np.zeros((1, 1, *shape[2:]), dtype)
    out = decoded_samples(pixel, photometric, np.zeros((3, 1), np.uint16), strict=False)
    check_channels(uri, out.shape[2] if out.ndim == 3 else 1, detail)  # first, as in memory
    if strict and out.dtype not in _TIFF_KEPT:
        raise DecodeError(f"{uri}: unsupported TIFF sample type {out.dtype}")
    return (*shape[:2], *out.shape[2:]), out.dtype.name


def stored_box(orientation: int, box: tuple[int, int, int, int], height: int,
               width: int) -> tuple[int, int, int, int]:
    """The box of the stored grid (``height``×``width``) whose pixels, turned upright by
    :func:`pixelmill.codecs.apply_orientation`, are ``box`` of the upright image."""
    y0, y1, x0, x1 = box
    o = orientation
    if o in (5, 6, 7, 8):  # transposed: upright rows are stored columns and the reverse
        rows = (x0, x1) if o in (5, 8) else (height - x1, height - x0)
        cols = (y0, y1) if o in (5, 6) else (width - y1, width - y0)
    else:
        rows = (height - y1, height - y0) if o in (3, 4) else (y0, y1)
        cols = (width - x1, width - x0) if o in (2, 3) else (x0, x1)
    return (*rows, *cols)
