"""Measurement ops: values, not pixels. Each returns a dict that becomes manifest columns.

They read the whole image (halo ``GLOBAL``) and pass it on unchanged in a pipeline (scale 1).
Units are stated per op: ``channel_stats`` keeps the image's own units; ``brightness_contrast``
divides by the dtype's white (so it lies in [0, 1]); ``sharpness`` and ``blur_flag`` work on
the 0–255 scale whatever the dtype, so one blur threshold fits 8-bit, 16-bit and float images.

Non-finite pixels of a float image (NaN, the usual "no data" of float rasters, and ±inf) are
left out of every measurement, as NumPy's ``nan*`` functions leave NaN out: a statistic is over
the finite pixels, ``sharpness`` over the Laplacians whose 3×3 neighbourhood is finite, and
``phash`` fills them with the mean of the finite luma. With no finite pixel the value is NaN.
"""

from __future__ import annotations

from typing import Annotated, Any

import cv2
import numpy as np

from pixelmill.ops._common import channels, check_image, dtype_max, luma
from pixelmill.ops._registry import GLOBAL, Range, op

__all__ = ["blur_flag", "brightness_contrast", "channel_stats", "phash", "sharpness"]

_CHANNEL_NAMES = {1: ("",), 2: ("", "_alpha"), 3: ("_r", "_g", "_b"), 4: ("_r", "_g", "_b", "_a")}


#: pixels per block when accumulating statistics in float64 (bounds the float64 working set)
_BLOCK = 1 << 18


def _finite(values: np.ndarray) -> np.ndarray | None:
    """None when every value is finite (always for integers), else the mask of finite ones."""
    if values.dtype.kind != "f":
        return None
    mask = np.isfinite(values)
    return None if mask.all() else mask


def _mean_std_finite(flat: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_mean_std` of each column over its finite values (NaN where there are none)."""
    means, stds = np.full(flat.shape[1], np.nan), np.full(flat.shape[1], np.nan)
    for i in range(flat.shape[1]):
        values = flat[finite[:, i], i]
        if values.size:
            m, sd = _mean_std(values[:, None])
            means[i], stds[i] = m[0], sd[0]
    return means, stds


def _mean_std(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population std of an N×C array, in float64, two passes by blocks.

    Not ``cv2.meanStdDev``: it computes ``sqrt(E[x²] - E[x]²)``, which cancels catastrophically
    when the spread is small next to the values (a 16-bit image near white was 10% off; a
    float32 image around 1e4 over 50%). Deviations from the mean, summed in float64, do not.
    """
    n = flat.shape[0]
    total = np.zeros(flat.shape[1])
    for i in range(0, n, _BLOCK):
        total += flat[i : i + _BLOCK].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(flat.shape[1])
    for i in range(0, n, _BLOCK):
        d = flat[i : i + _BLOCK].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(squares / n)


@op(family="measure", halo=GLOBAL, scale=1.0, output="measures")
def channel_stats(image: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of each channel, in the image's own units.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.

    Returns
    -------
    dict
        ``mean`` / ``std`` for gray; ``mean_r``, ``mean_g``, ``mean_b`` (``mean_a``) and the
        matching ``std_*`` for RGB(A); ``mean_c0``… for other channel counts. Population std.

    Examples
    --------
    >>> import numpy as np
    >>> channel_stats(np.array([[1, 3]], np.uint8))
    {'mean': 2.0, 'std': 1.0}
    """
    image = check_image(image, "channel_stats")
    c = channels(image)
    flat = image.reshape(-1, c)
    finite = _finite(flat)
    means, stds = _mean_std(flat) if finite is None else _mean_std_finite(flat, finite)
    names = _CHANNEL_NAMES.get(c) or tuple(f"_c{i}" for i in range(c))
    out: dict[str, float] = {}
    for i, suffix in enumerate(names):
        out[f"mean{suffix}"] = float(means[i])
        out[f"std{suffix}"] = float(stds[i])
    return out


def _sharpness(image: np.ndarray) -> float:
    gray = luma(image).astype(np.float64)
    scale = 255.0 / dtype_max(image.dtype)
    if scale != 1.0:  # x · 1.0 is x: uint8 skips a pass
        gray *= scale
    lap = cv2.Laplacian(gray, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)
    # a non-finite pixel makes its own and its 4 neighbours' non-finite (integers: none)
    finite = _finite(lap) if image.dtype.kind == "f" else None
    if finite is not None:
        lap = lap[finite]
    return float(lap.var()) if lap.size else float("nan")


@op(family="measure", halo=GLOBAL, scale=1.0, output="measures")
def sharpness(image: np.ndarray) -> dict[str, float]:
    """Variance of the Laplacian of the luma, on the 0–255 scale (higher = sharper).

    The luma (BT.601) is multiplied by ``255 / white`` first, so a uint16 or float32 copy of
    an 8-bit image measures the same. The Laplacian is ``scipy.ndimage.laplace``'s 3×3 kernel
    with the edge reflected.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.

    Returns
    -------
    dict
        ``sharpness``: float.
    """
    image = check_image(image, "sharpness")
    return {"sharpness": _sharpness(image)}


@op(family="measure", halo=GLOBAL, scale=1.0, output="measures")
def brightness_contrast(image: np.ndarray) -> dict[str, float]:
    """Mean (brightness) and standard deviation (RMS contrast) of the luma, in [0, 1].

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32; values are divided by the dtype's white.

    Returns
    -------
    dict
        ``brightness`` and ``contrast``: floats (0–1 for images within the nominal range).
    """
    image = check_image(image, "brightness_contrast")
    gray = luma(image).astype(np.float64)
    gray /= dtype_max(image.dtype)
    finite = _finite(gray) if image.dtype.kind == "f" else None
    if finite is not None:
        gray = gray[finite]
        if not gray.size:
            return {"brightness": float("nan"), "contrast": float("nan")}
    return {"brightness": float(gray.mean()), "contrast": float(gray.std())}


@op(family="measure", halo=GLOBAL, scale=1.0, output="measures")
def blur_flag(
    image: np.ndarray,
    *,
    threshold: Annotated[float, Range(ge=0.0)] = 100.0,
) -> dict[str, Any]:
    """Flag blurry images: ``sharpness`` (variance of the Laplacian, 0–255 scale) below ``threshold``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    threshold : float
        Sharpness under which an image counts as blurry (100 is the customary value for photos).

    Returns
    -------
    dict
        ``blurry``: bool (None for a float image without one finite 3×3 neighbourhood).
    """
    image = check_image(image, "blur_flag")
    value = _sharpness(image)
    return {"blurry": None if np.isnan(value) else bool(value < threshold)}


def dct_matrix(n: int) -> np.ndarray:
    """Unnormalized DCT-II matrix of size n (``scipy.fft.dct`` with ``norm=None``)."""
    i = np.arange(n)
    return 2.0 * np.cos(np.pi * (2 * i[None, :] + 1) * np.arange(n)[:, None] / (2 * n))


@op(family="measure", halo=GLOBAL, scale=1.0, output="measures")
def phash(
    image: np.ndarray,
    *,
    hash_size: Annotated[int, Range(ge=2, le=16)] = 8,
    highfreq_factor: Annotated[int, Range(ge=1, le=8)] = 4,
) -> dict[str, str]:
    """Perceptual hash (the DCT pHash of the ``imagehash`` package) as a hex string.

    It follows ``imagehash.phash`` except that the image is shrunk by area averaging.

    The luma is shrunk to ``hash_size · highfreq_factor`` pixels square (area averaging), its
    2-D DCT taken, and the top-left ``hash_size``×``hash_size`` coefficients compared with their
    median: one bit each, first row first, most significant bit first. Similar images have
    hashes a small Hamming distance apart.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    hash_size : int
        Side of the kept DCT block: the hash has ``hash_size²`` bits.
    highfreq_factor : int
        How much larger than ``hash_size`` the shrunk image is.

    Returns
    -------
    dict
        ``phash``: ``hash_size² / 4`` hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> phash(np.zeros((64, 64), np.uint8))
    {'phash': '0000000000000000'}
    """
    image = check_image(image, "phash")
    n = hash_size * highfreq_factor
    gray = luma(image) * np.float32(255.0 / dtype_max(image.dtype))
    finite = _finite(gray)
    if finite is not None:  # no data: the mean of the finite luma (DCT of a flat patch: 0)
        gray = np.where(finite, gray, gray[finite].mean() if finite.any() else 0.0)
        gray = gray.astype(np.float32)
    small = cv2.resize(gray, (n, n), interpolation=cv2.INTER_AREA).astype(np.float64)
    d = dct_matrix(n)
    coeffs = (d @ small @ d.T)[:hash_size, :hash_size]
    bits = (coeffs > np.median(coeffs)).ravel()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return {"phash": f"{value:0{(bits.size + 3) // 4}x}"}
