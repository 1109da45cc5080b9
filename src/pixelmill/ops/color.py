"""Colour and intensity ops: convert, rescale_intensity, gamma, equalize_hist, clahe, white balance.

The nominal white of a dtype is 255 (uint8), 65535 (uint16) or 1.0 (float32). Ops that map
intensities (gamma, equalization) use it as their reference; none of them looks at pixel
values to guess a range. Histogram ops are global: their statistics span the whole image.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np

from pixelmill.errors import InvalidParameterError
from pixelmill.ops._common import (
    cast_like,
    channels,
    check_image,
    dtype_max,
    gray_float,
    row_block,
)
from pixelmill.ops._registry import FLOAT32, GLOBAL, Range, op

__all__ = [
    "clahe",
    "convert",
    "equalize_hist",
    "gamma",
    "rescale_intensity",
    "white_balance_grayworld",
]

ColorSpace = Literal["gray", "rgb", "hsv", "lab", "ycbcr"]

#: full-range BT.601 (JPEG) RGB -> YCbCr matrix; rows Y, Cb, Cr
_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=np.float64,
)
_RGB_FROM_YCBCR = np.linalg.inv(_YCBCR)


def _by_rows(image: np.ndarray, dtype: np.dtype, fn) -> np.ndarray:
    """``cast_like(fn(image), dtype)`` computed on blocks of rows (H×W×3 in and out).

    ``fn`` maps each pixel on its own (a colour matrix applied row by row: NumPy's matmul runs
    one (W×3)·(3×3) product per row whatever the block), so the results are those of one call
    on the whole image, with float64 temporaries that stay in cache (about 4× faster).
    """
    h, w = image.shape[:2]
    out = np.empty((h, w, 3), dtype)
    step = row_block(w, 3)
    for y0 in range(0, h, step):
        out[y0:y0 + step] = cast_like(fn(image[y0:y0 + step]), dtype)
    return out


def _to_rgb(image: np.ndarray, source: str) -> np.ndarray:
    """RGB from ``source`` (integers keep their dtype; hsv/lab give float32 in [0, 1])."""
    if source == "rgb":
        return image[..., :3]
    if source == "gray":
        g = image if image.ndim == 2 else image[..., 0]
        return np.repeat(g[..., None], 3, axis=2)
    if source == "ycbcr":
        off = dtype_max(image.dtype) / 2 + (0.5 if image.dtype.kind == "u" else 0.0)
        shift = np.array([0.0, off, off])
        return _by_rows(image[..., :3], image.dtype,
                        lambda a: (a.astype(np.float64) - shift) @ _RGB_FROM_YCBCR.T)
    code = {"hsv": cv2.COLOR_HSV2RGB, "lab": cv2.COLOR_Lab2RGB}[source]
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3], dtype=np.float32), code)


@op(family="color", halo=0,
    out_dtype=lambda p: "float32" if p["to"] in ("hsv", "lab") else None)
def convert(
    image: np.ndarray,
    *,
    to: ColorSpace = "gray",
    source: ColorSpace | None = None,
) -> np.ndarray:
    """Convert between gray, RGB, HSV, CIE Lab and YCbCr.

    gray uses BT.601 weights (``0.299 R + 0.587 G + 0.114 B``, as OpenCV, Pillow and JPEG);
    YCbCr is full-range BT.601 (JPEG) with chroma centred at 128 / 32768 / 0.5. Both keep the
    input dtype. HSV and Lab return float32: H in degrees [0, 360), S and V in [0, 1]
    (V = max(R, G, B) / white); Lab is CIE L*a*b* (D65, sRGB), L in [0, 100]. Converting *from*
    HSV or Lab takes float32 and returns float32 RGB in [0, 1]. An alpha channel is dropped.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C; uint8, uint16 or float32 (float32 for HSV and Lab sources).
    to : str
        Target space: gray, rgb, hsv, lab or ycbcr.
    source : str or None
        Space of the input; None means rgb for 3- or 4-channel images, gray for 1 or 2
        (gray + alpha).

    Returns
    -------
    ndarray
        H×W for gray (also for an H×W×1 input), else H×W×3; dtype as described above.

    Examples
    --------
    >>> import numpy as np
    >>> convert(np.array([[[255, 0, 0]]], np.uint8), to="gray")
    array([[76]], dtype=uint8)
    >>> np.round(convert(np.array([[[255, 0, 0]]], np.uint8), to="hsv"), 4).tolist()
    [[[0.0, 1.0, 1.0]]]
    """
    image = check_image(image, "convert")
    c = channels(image)
    if source is None:
        if c > 4:  # neither gray (+ alpha) nor RGB(A): do not blame a 'gray' nobody gave
            raise InvalidParameterError(
                f"convert: cannot tell the colour space of a {c}-channel image (gray has 1 or 2 "
                "channels, RGB and the others 3, or 4 with alpha)", field="source")
        source = "rgb" if c in (3, 4) else "gray"
    if source == "gray" and c > 2:
        raise InvalidParameterError(
            f"convert.source: 'gray' needs a one-channel image (or gray + alpha), got {c} "
            "channels", field="source")
    if source != "gray" and c not in (3, 4):
        raise InvalidParameterError(
            f"convert.source: {source!r} needs a 3-channel image, got {c} channel(s)",
            field="source")
    if source in ("hsv", "lab") and image.dtype != np.float32:
        raise InvalidParameterError(
            f"convert.source: {source!r} images are float32, got {image.dtype}", field="source")
    if to == source:  # only the alpha channel (if any) goes
        if source == "gray":
            return (image if image.ndim == 2 else image[..., 0]).copy()
        return image[..., :3].copy()
    if to == "gray" and source == "ycbcr":
        return image[..., 0].copy()
    rgb = _to_rgb(image, source)
    if to == "rgb":
        return np.ascontiguousarray(rgb)
    if to == "gray":
        gray = gray_float(rgb)  # float32 0.299 R + 0.587 G + 0.114 B, by blocks of rows
        if rgb.dtype.kind == "u":  # cast_like, in place
            np.rint(gray, out=gray)
            np.clip(gray, 0, np.iinfo(rgb.dtype).max, out=gray)
        return gray.astype(rgb.dtype, copy=False)
    if to == "ycbcr":
        off = dtype_max(rgb.dtype) / 2 + (0.5 if rgb.dtype.kind == "u" else 0.0)
        shift = np.array([0.0, off, off])
        return _by_rows(rgb, rgb.dtype, lambda a: a.astype(np.float64) @ _YCBCR.T + shift)
    unit = np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(dtype_max(rgb.dtype))
    code = {"hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2Lab}[to]
    out = cv2.cvtColor(unit, code)
    if to == "hsv":
        out[..., 0] = np.where(out[..., 0] >= 360.0, 0.0, out[..., 0])
    return out


def _rescale_check(p) -> str | None:
    for lo, hi in (("in_low", "in_high"), ("out_low", "out_high")):
        if p[lo] is not None and p[hi] is not None and not p[lo] < p[hi]:
            return f"{lo}: must be below {hi} (got {p[lo]:g} and {p[hi]:g})"
    return None


@op(
    family="color",
    halo=lambda p: 0 if p["in_low"] is not None and p["in_high"] is not None else GLOBAL,
    check=_rescale_check,
    value_bytes=36,
)
def rescale_intensity(
    image: np.ndarray,
    *,
    in_low: Annotated[float, FLOAT32] | None = None,
    in_high: Annotated[float, FLOAT32] | None = None,
    out_low: Annotated[float, FLOAT32] | None = None,
    out_high: Annotated[float, FLOAT32] | None = None,
) -> np.ndarray:
    """Map ``[in_low, in_high]`` linearly onto ``[out_low, out_high]``, clipping outside.

    A missing input bound is the image's own minimum or maximum (over all channels): the op is
    then global. A missing output bound is 0 or the dtype's white (255, 65535, 1.0).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    in_low : float or None
        Input value mapped to ``out_low`` (None: the image minimum).
    in_high : float or None
        Input value mapped to ``out_high`` (None: the image maximum).
    out_low : float or None
        Output value for ``in_low`` (None: 0).
    out_high : float or None
        Output value for ``in_high`` (None: the dtype's white).

    Returns
    -------
    ndarray
        Same shape and dtype (integers rounded and clipped to the dtype).
    """
    image = check_image(image, "rescale_intensity")
    lo = float(image.min()) if in_low is None else in_low
    hi = float(image.max()) if in_high is None else in_high
    olo = 0.0 if out_low is None else out_low
    ohi = dtype_max(image.dtype) if out_high is None else out_high
    if out_high is None and olo >= ohi:  # would silently invert (or flatten) the mapping
        raise InvalidParameterError(
            f"rescale_intensity: out_low {olo:g} is not below the {image.dtype} white "
            f"({ohi:g}); give out_high too", field="out_low")
    if out_low is None and ohi <= 0:
        raise InvalidParameterError(
            f"rescale_intensity: out_high {ohi:g} is not above 0; give out_low too",
            field="out_high")
    src = np.clip(image.astype(np.float64), lo, hi)
    # a constant image (or an empty input range) maps to the low end
    out = (src - lo) * ((ohi - olo) / (hi - lo)) + olo if hi > lo else np.full_like(src, olo)
    return cast_like(out, image.dtype)


@op(family="color", halo=0, value_bytes=28)
def gamma(
    image: np.ndarray,
    *,
    gamma: Annotated[float, Range(gt=0.0, le=100.0)] = 1.0,
    gain: Annotated[float, Range(ge=0.0, le=1000.0)] = 1.0,
) -> np.ndarray:
    """Power-law correction ``white · gain · (x / white) ** gamma``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (negative float values become 0).
    gamma : float
        Exponent: below 1 brightens, above 1 darkens.
    gain : float
        Multiplier applied after the power.

    Returns
    -------
    ndarray
        Same shape and dtype (integers rounded and clipped to the dtype).

    Examples
    --------
    >>> import numpy as np
    >>> gamma(np.array([[0, 64, 255]], np.uint8), gamma=0.5)
    array([[  0, 128, 255]], dtype=uint8)
    """
    image = check_image(image, "gamma")
    white = dtype_max(image.dtype)
    if image.dtype.kind == "u":
        values = np.arange(int(white) + 1, dtype=np.float64)
        lut = cast_like(white * gain * (values / white) ** gamma, image.dtype)
        return lut[image]
    src = np.maximum(image, 0.0).astype(np.float64)
    # gain · white · (src / white) ** gamma, in place (x / 1.0 and 1.0 · x are x exactly)
    if white != 1.0:
        src /= white
    np.power(src, gamma, out=src)
    if gain * white != 1.0:
        np.multiply(gain * white, src, out=src)
    return cast_like(src, image.dtype)


def _equalize_lut(hist: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray | None:
    """The equalizing lookup table of an integer channel's histogram (None: a constant
    channel, left as it is)."""
    cdf = np.cumsum(hist)
    cdf_min = cdf[hist > 0][0]
    if n == cdf_min:
        return None
    white = dtype_max(dtype)
    return np.rint((cdf - cdf_min) * (white / (n - cdf_min))).astype(dtype)


def _equalize_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 with 1-4 channels: each channel's table from its histogram (OpenCV's calcHist
    counts exactly below 2**24 pixels, as float32), applied to all channels by one
    ``cv2.LUT`` — the same values as :func:`_equalize_channel`, 5× faster."""
    c = channels(image)
    n = image.shape[0] * image.shape[1]
    tables = []
    for i in range(c):
        if n < 2**24:
            counts = cv2.calcHist([image], [i], None, [256], [0, 256]).ravel()
            hist = counts.astype(np.int64)
        else:
            hist = np.bincount(image[..., i].ravel() if image.ndim == 3 else image.ravel(),
                               minlength=256)
        lut = _equalize_lut(hist, n, image.dtype)
        tables.append(np.arange(256, dtype=np.uint8) if lut is None else lut)
    lut = np.stack(tables, -1).reshape(256, 1, c) if c > 1 else tables[0]
    return cv2.LUT(image, lut).reshape(image.shape)


def _equalize_channel(x: np.ndarray, bins: int) -> np.ndarray:
    n = x.size
    if x.dtype.kind == "u":
        hist = np.bincount(x.ravel(), minlength=int(dtype_max(x.dtype)) + 1)
        lut = _equalize_lut(hist, n, x.dtype)
        return x.copy() if lut is None else lut[x]
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros_like(x)
    idx = np.clip(((x - lo) * (bins / (hi - lo))).astype(np.int64), 0, bins - 1)
    hist = np.bincount(idx.ravel(), minlength=bins)
    cdf = np.cumsum(hist)
    cdf_min = cdf[hist > 0][0]
    return ((cdf[idx] - cdf_min) / (n - cdf_min)).astype(np.float32)


@op(family="color", halo=GLOBAL, value_bytes=28)
def equalize_hist(
    image: np.ndarray,
    *,
    bins: Annotated[int, Range(ge=2, le=65536)] = 256,
) -> np.ndarray:
    """Histogram equalization, channel by channel, from the whole image's histogram.

    Each value maps to ``(cdf(v) - cdf_min) / (N - cdf_min)`` times white (the formula of
    OpenCV's ``equalizeHist``). Integer images use one bin per value; float32 images use
    ``bins`` bins between the image's minimum and maximum.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    bins : int
        Histogram bins for float32 images (ignored for integer images).

    Returns
    -------
    ndarray
        Same shape and dtype; float32 results lie in [0, 1].
    """
    image = check_image(image, "equalize_hist")
    if image.dtype == np.uint8 and channels(image) <= 4:
        return _equalize_uint8(image)
    if image.ndim == 2:
        return _equalize_channel(image, bins)
    return np.stack([_equalize_channel(image[..., i], bins) for i in range(image.shape[2])], -1)


def _clahe_check(p) -> str | None:
    b = p["bins"]
    return None if b & (b - 1) == 0 else f"bins: expected a power of two, got {b}"


def _clahe_channel(a: np.ndarray, clip_limit: float, grid: tuple[int, int],
                   bins: int) -> np.ndarray:
    """CLAHE of one uint8/uint16 channel with ``bins`` histogram bins (a power of two up to
    the dtype's levels): OpenCV's algorithm step for step, which it runs only with one bin per
    level. Each tile's histogram counts ``value >> shift``; the clip limit, the redistribution
    of clipped counts, the LUT (scaled to the dtype's full range, rounded half to even) and the
    bilinear interpolation between tile centres are OpenCV's, in the same float32 arithmetic,
    so with one bin per level the result equals ``cv2.createCLAHE(...).apply`` exactly.
    """
    rows_t, cols_t = grid
    maxval = int(np.iinfo(a.dtype).max)
    shift = (maxval + 1).bit_length() - bins.bit_length()
    h, w = a.shape
    ext = a
    if h % rows_t or w % cols_t:  # as OpenCV: pad bottom and right (reflect-101) to whole tiles
        ext = np.pad(a, ((0, rows_t - h % rows_t), (0, cols_t - w % cols_t)), mode="reflect")
    th, tw = ext.shape[0] // rows_t, ext.shape[1] // cols_t
    n = th * tw
    tiles = (ext[: th * rows_t, : tw * cols_t].reshape(rows_t, th, cols_t, tw)
             .transpose(0, 2, 1, 3).reshape(rows_t * cols_t, n))
    idx = (tiles >> shift).astype(np.int64)
    idx += (np.arange(rows_t * cols_t, dtype=np.int64) * bins)[:, None]
    hist = np.bincount(idx.ravel(), minlength=rows_t * cols_t * bins).reshape(-1, bins)
    del idx, tiles
    limit = max(int(clip_limit * n / bins), 1)
    clipped = np.maximum(hist - limit, 0).sum(axis=1)
    np.minimum(hist, limit, out=hist)
    batch = clipped // bins
    residual = clipped - batch * bins
    hist += batch[:, None]
    for t in np.flatnonzero(residual):  # the remainder, one count every bins // residual bins
        step = max(bins // int(residual[t]), 1)
        hist[t, np.arange(0, bins, step)[: residual[t]]] += 1
    cdf = np.cumsum(hist, axis=1).astype(np.float32)
    lut = np.clip(np.rint(cdf * (np.float32(maxval) / np.float32(n))), 0, maxval)
    lut = lut.astype(np.float32).reshape(rows_t, cols_t, bins)

    def weights(length: int, tile: int, count: int):
        f = np.arange(length, dtype=np.float32) * (np.float32(1) / np.float32(tile))
        f -= np.float32(0.5)
        i1 = np.floor(f).astype(np.int64)
        frac = f - i1.astype(np.float32)
        return np.maximum(i1, 0), np.minimum(i1 + 1, count - 1), frac, np.float32(1) - frac

    tx1, tx2, xa, xa1 = weights(w, tw, cols_t)
    ty1, ty2, ya, ya1 = weights(h, th, rows_t)
    out = np.empty_like(a)
    band = max(1, (1 << 20) // w)  # about a megapixel of float32 temporaries at a time
    for y0 in range(0, h, band):
        rows = slice(y0, min(h, y0 + band))
        b = (a[rows] >> shift).astype(np.int64)
        r1, r2 = ty1[rows, None], ty2[rows, None]
        res = ((lut[r1, tx1, b] * xa1 + lut[r1, tx2, b] * xa) * ya1[rows, None]
               + (lut[r2, tx1, b] * xa1 + lut[r2, tx2, b] * xa) * ya[rows, None])
        out[rows] = np.clip(np.rint(res), 0, maxval)
    return out


@op(family="color", halo=GLOBAL, dtypes=("uint8", "uint16"), check=_clahe_check)
def clahe(
    image: np.ndarray,
    *,
    clip_limit: Annotated[float, Range(gt=0.0, le=1000.0)] = 2.0,
    grid: tuple[Annotated[int, Range(ge=1, le=64)], Annotated[int, Range(ge=1, le=64)]] = (
        8, 8),
    bins: Annotated[int, Range(ge=16, le=65536)] = 256,
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (OpenCV's algorithm), per channel.

    The image is cut into ``grid`` tiles whose clipped histograms are interpolated, so each
    output pixel depends on tile statistics spread over the whole image: a global op.
    Histograms have ``bins`` bins whatever the dtype (as scikit-image and Fiji): OpenCV itself
    uses one bin per level, 65536 for uint16, where the clip limit (``clip_limit`` × tile area
    / bins) falls below one count for ordinary tiles and the result is nothing like the uint8
    result of the same picture; pass ``bins=65536`` for that behaviour. The output keeps the
    full range of the dtype (a uint16 result is not quantized to ``bins`` levels).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8 or uint16.
    clip_limit : float
        Contrast limit, relative to a flat histogram (OpenCV's ``clipLimit``).
    grid : list of 2 ints
        Tiles per column and per row: ``[rows, columns]``.
    bins : int
        Histogram bins per tile, a power of two (at most 256 are used for uint8).

    Returns
    -------
    ndarray
        Same shape and dtype; uint8 with 256 bins equals OpenCV's ``CLAHE`` exactly.
    """
    image = check_image(image, "clahe", dtypes=(np.uint8, np.uint16))
    levels = int(np.iinfo(image.dtype).max) + 1
    bins = min(bins, levels)
    if bins == levels:  # OpenCV's own case: its (parallel, C++) implementation
        engine = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(grid[1], grid[0]))
        run = engine.apply
    else:
        def run(a):
            return _clahe_channel(a, clip_limit, (grid[0], grid[1]), bins)
    if image.ndim == 2:
        return run(image)
    return np.stack([run(np.ascontiguousarray(image[..., i])) for i in range(image.shape[2])], -1)


@op(family="color", halo=GLOBAL, value_bytes=36)
def white_balance_grayworld(image: np.ndarray) -> np.ndarray:
    """Gray-world white balance: scale R, G and B so their means become equal.

    Each colour channel is multiplied by ``mean(channel means) / channel mean`` (an alpha
    channel is kept as is; a gray image is returned unchanged).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.

    Returns
    -------
    ndarray
        Same shape and dtype (integers rounded and clipped to the dtype).
    """
    image = check_image(image, "white_balance_grayworld")
    if channels(image) < 3:
        return image.copy()
    if image.dtype.kind == "u" and channels(image) <= 4:
        return _grayworld_integer(image)
    rgb = image[..., :3].astype(np.float64)
    means = rgb.reshape(-1, 3).mean(axis=0)
    gains = np.where(means > 0, means.mean() / np.where(means > 0, means, 1.0), 1.0)
    out = image.copy()
    out[..., :3] = cast_like(rgb * gains, image.dtype)
    return out


def _grayworld_integer(image: np.ndarray) -> np.ndarray:
    """Gray world on a uint8/uint16 image with 3 or 4 channels, by lookup tables.

    The channel sums are integers, exact in any order (OpenCV sums integers exactly; every
    partial sum is below 2**53), so the means, gains and each ``rint(v · gain)`` are those of
    the float64 formula; a table of ``rint(v · gain)`` for every level replaces the
    float64 image (80× faster for uint8).
    """
    c = channels(image)
    n = image.shape[0] * image.shape[1]
    means = np.array(cv2.sumElems(image)[:3]) / n
    gains = np.where(means > 0, means.mean() / np.where(means > 0, means, 1.0), 1.0)
    levels = np.arange(int(dtype_max(image.dtype)) + 1, dtype=np.float64)
    tables = [cast_like(levels * g, image.dtype) for g in gains]
    if image.dtype == np.uint8:
        if c == 4:
            tables.append(np.arange(256, dtype=np.uint8))  # alpha as is
        return cv2.LUT(image, np.stack(tables, -1).reshape(256, 1, c))
    out = image.copy()
    for i, table in enumerate(tables):
        out[..., i] = table[image[..., i]]
    return out
