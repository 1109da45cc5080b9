"""What stored pixels become when read: the in-memory decoder's rules, applied window by window.

:func:`pixelmill.codecs.decode` turns a TIFF page upright (its Orientation tag, as it does EXIF
orientation for JPEG/PNG/WebP), expands palettes, turns CMYK into RGB(A), inverts min-is-white,
widens 1-bit samples to 0/255 uint8 and reads float64/float16 as float32; it refuses other sample
types and more than 4 channels. A region source does the same per window, so ``pixelmill tile``
reads what ``pixelmill run`` reads. All of these are per pixel (or a flip/transpose of the
window), so a window of the converted image is the conversion of a window of the stored one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pixelmill.errors import DecodeError

__all__ = ["MAX_CHANNELS", "check_channels", "decoded_layout", "decoded_samples", "stored_box"]

#: channel counts pixelmill reads: gray, gray+alpha, RGB, RGBA
MAX_CHANNELS = 4

#: TIFF photometric interpretations converted on reading (others are read as stored)
PHOTOMETRIC = {0: "miniswhite", 3: "palette", 5: "cmyk"}

_KEPT = (np.uint8, np.uint16, np.float32)
_WIDENED = (np.float64, np.float16)


def check_channels(uri: str, channels: int, detail: str = "") -> None:
    """Refuse more channels than the in-memory decoder reads (the same reason, before work)."""
    if channels > MAX_CHANNELS:
        raise DecodeError(f"{uri}: {channels} channels: pixelmill reads images with 1 to "
                          f"{MAX_CHANNELS} channels (gray, gray+alpha, RGB, RGBA){detail}")


def decoded_samples(arr: np.ndarray, photometric: str = "", colormap: Any = None, *,
                    strict: bool = True) -> np.ndarray:
    """``arr`` (stored samples, H×W or H×W×C) as :func:`pixelmill.codecs.decode` returns a TIFF.

    ``strict`` (TIFF) refuses sample types other than uint8, uint16, float32 (after widening
    1-bit and narrowing float64/float16) as the in-memory decoder does; arrays (Zarr, ``.npy``)
    keep them, for the ops that take them (int32 labels).
    """
    if photometric == "palette":
        arr = (np.asarray(colormap)[:, arr].transpose(1, 2, 0) >> 8).astype(np.uint8)
    elif photometric == "cmyk":
        cmyk = arr[..., :4].astype(np.float32)
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind == "u" else 1.0
        rgb = (top - cmyk[..., :3]) * (top - cmyk[..., 3:4]) / top
        rgb = np.rint(rgb).astype(arr.dtype) if arr.dtype.kind == "u" else rgb
        arr = np.concatenate([rgb, arr[..., 4:5]], axis=-1) if arr.shape[-1] > 4 else rgb
    elif photometric == "miniswhite" and arr.dtype.kind in "ub":
        arr = ~arr
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in _KEPT:
        if arr.dtype in _WIDENED:
            arr = arr.astype(np.float32)
        elif strict:
            raise DecodeError(f"unsupported TIFF sample type {arr.dtype}")
    return arr


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
    if strict and out.dtype not in _KEPT:
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
