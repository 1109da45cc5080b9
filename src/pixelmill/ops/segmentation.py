"""Segmentation ops: threshold, connected components (labels + stats), watershed, SLIC.

Masks are uint8 H×W (255 = foreground, 0 = background); label images are int32 H×W with 0 for
background and 1..N for regions. Colour images are reduced to BT.601 luma first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import cv2
import numpy as np

from pixelmill.ops._common import (
    BorderMode,
    channels,
    check_image,
    dtype_max,
    gray_float,
    with_border,
)
from pixelmill.ops._registry import GLOBAL, Range, op
from pixelmill.ops.filters import gaussian_radius

__all__ = ["component_stats", "connected_components", "slic", "threshold", "watershed"]

ThresholdMethod = Literal["fixed", "otsu", "adaptive_mean", "adaptive_gaussian"]


def _threshold_halo(p) -> float:
    method = p["method"]
    if method == "fixed":
        return 0
    if method == "otsu":
        return GLOBAL
    if method == "adaptive_mean":
        return p["block_size"] // 2
    return gaussian_radius((p["block_size"] - 1) / 6.0, 4.0)


def _threshold_check(p) -> str | None:
    if p["method"] == "fixed" and p["value"] is None:
        return "value: method 'fixed' needs a threshold value"
    if p["block_size"] % 2 == 0:
        return f"block_size: expected an odd integer, got {p['block_size']}"
    return None


def _foreground(image: np.ndarray) -> np.ndarray:
    """bool H×W: non-zero in any channel."""
    return image != 0 if image.ndim == 2 else (image != 0).any(axis=2)


#: below this many pixels every histogram count is exact in float32 (OpenCV's histogram type)
_EXACT_COUNTS = 1 << 24


def _otsu_u8(src: np.ndarray, invert: bool) -> np.ndarray:
    """``(src > threshold_otsu(src)) * 255`` of a contiguous uint8 H×W image, bit for bit.

    skimage's ``threshold_otsu(src)`` scans the image for a single value, then counts it with
    ``np.bincount`` after widening every pixel to int64 and keeps the counts as float32; the
    mask then takes two more passes (compare, cast and scale): 3.5 ms of a 2-megapixel image,
    against 0.6 ms here. The same threshold comes from the same float32 counts and int64 bin
    centres, trimmed of empty ends as skimage trims them, counted by OpenCV (exact below
    :data:`_EXACT_COUNTS` pixels); ``cv2.threshold`` compares with ``floor(t)``, which for
    integer pixels is ``> t``.
    """
    from skimage.filters import threshold_otsu

    counts = cv2.calcHist([src], [0], None, [256], [0, 256]).ravel()
    used = np.flatnonzero(counts)
    if used.size == 1:  # one value: skimage returns it, and nothing is above it
        t = float(used[0])
    else:
        lo, hi = int(used[0]), int(used[-1]) + 1
        t = float(threshold_otsu(hist=(counts[lo:hi], np.arange(lo, hi))))
    kind = cv2.THRESH_BINARY_INV if invert else cv2.THRESH_BINARY
    return cv2.threshold(src, t, 255, kind)[1]


@op(family="segmentation", halo=_threshold_halo, check=_threshold_check, out_dtype="uint8")
def threshold(
    image: np.ndarray,
    *,
    method: ThresholdMethod = "otsu",
    value: float | None = None,
    block_size: Annotated[int, Range(ge=3, le=1001)] = 35,
    offset: float = 0.0,
    invert: bool = False,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Binarize: foreground where the luma is above a threshold.

    ``fixed`` uses ``value``; ``otsu`` computes one threshold from the whole image's histogram
    (a global op); ``adaptive_mean`` / ``adaptive_gaussian`` compare each pixel with the mean /
    gaussian-weighted mean (sigma ``(block_size - 1) / 6``) of its ``block_size`` neighbourhood
    minus ``offset``, as ``skimage.filters.threshold_local``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (RGB is reduced to BT.601 luma).
    method : str
        fixed, otsu, adaptive_mean or adaptive_gaussian.
    value : float or None
        Threshold for ``fixed``, in the image's units.
    block_size : int
        Neighbourhood side for the adaptive methods (odd).
    offset : float
        Subtracted from the local mean (adaptive methods).
    invert : bool
        Mark pixels at or below the threshold instead.
    mode : str
        How the image is extended beyond its border (adaptive methods).

    Returns
    -------
    ndarray
        uint8 H×W mask: 255 where foreground, 0 elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> threshold(np.array([[10, 200]], np.uint8), method="fixed", value=100)
    array([[  0, 255]], dtype=uint8)
    """
    image = check_image(image, "threshold")
    if (method == "otsu" and channels(image) == 1 and image.dtype == np.uint8
            and image.size < _EXACT_COUNTS):
        return _otsu_u8(np.ascontiguousarray(image if image.ndim == 2 else image[..., 0]),
                        invert)
    if method == "otsu" and channels(image) == 1 and image.dtype.kind == "u":
        from skimage.filters import threshold_otsu

        src = image if image.ndim == 2 else image[..., 0]
        mask = src > threshold_otsu(src)
    else:
        gray = gray_float(image).astype(np.float64)
        if method == "fixed":
            mask = gray > value
        elif method == "otsu":
            from skimage.filters import threshold_otsu

            mask = gray > threshold_otsu(gray)
        else:
            b = block_size
            if method == "adaptive_mean":
                r = b // 2
                local = with_border(gray, r, mode, lambda x, bt: cv2.blur(x, (b, b), borderType=bt))
            else:
                sigma = (b - 1) / 6.0
                r = gaussian_radius(sigma, 4.0)
                k = 2 * r + 1
                local = with_border(gray, r, mode, lambda x, bt: cv2.GaussianBlur(
                    x, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=bt))
            mask = gray > local - offset
    if invert:
        mask = ~mask
    return mask.astype(np.uint8) * np.uint8(255)


_MASK_DTYPES = ("uint8", "uint16", "float32", "int32")


@op(family="segmentation", halo=GLOBAL, output="labels", dtypes=_MASK_DTYPES)
def connected_components(
    image: np.ndarray,
    *,
    connectivity: Literal[4, 8] = 8,
) -> np.ndarray:
    """Label the connected regions of the foreground (non-zero pixels in any channel).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C mask or image, uint8, uint16, float32, or an int32 label image.
    connectivity : int
        4 (edges touch) or 8 (corners touch too).

    Returns
    -------
    ndarray
        int32 H×W labels: 0 background, 1..N regions (numbered in OpenCV's deterministic scan
        order).

    Examples
    --------
    >>> import numpy as np
    >>> connected_components(np.array([[1, 0, 1], [1, 0, 0]], np.uint8))
    array([[1, 0, 2],
           [1, 0, 0]], dtype=int32)
    """
    image = check_image(image, "connected_components", dtypes=_MASK_DTYPES)
    fg = _foreground(image).astype(np.uint8)
    _, labels = cv2.connectedComponents(fg, connectivity=connectivity, ltype=cv2.CV_32S)
    return labels


@op(family="segmentation", halo=GLOBAL, output="measures", dtypes=_MASK_DTYPES)
def component_stats(
    image: np.ndarray,
    *,
    connectivity: Literal[4, 8] = 8,
    min_area: Annotated[int, Range(ge=0)] = 0,
) -> dict[str, Any]:
    """Count the foreground's connected regions and summarize their areas.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C mask, image or int32 label image; foreground is any non-zero value.
    connectivity : int
        4 or 8.
    min_area : int
        Regions smaller than this many pixels are not counted.

    Returns
    -------
    dict
        ``components`` (int), ``component_area_mean``, ``component_area_max`` (pixels; 0 when
        there are none) and ``foreground_fraction`` (share of foreground pixels).
    """
    image = check_image(image, "component_stats", dtypes=_MASK_DTYPES)
    fg = _foreground(image).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=connectivity,
                                                      ltype=cv2.CV_32S)
    areas = stats[1:, cv2.CC_STAT_AREA]
    areas = areas[areas >= min_area]
    return {
        "components": int(areas.size),
        "component_area_mean": float(areas.mean()) if areas.size else 0.0,
        "component_area_max": int(areas.max()) if areas.size else 0,
        "foreground_fraction": float(fg.mean()),
    }


@op(family="segmentation", halo=GLOBAL, output="labels", value_bytes=44)
def watershed(
    image: np.ndarray,
    *,
    source: Literal["image", "distance"] = "image",
    h: Annotated[float, Range(ge=0.0)] = 0.0,
    connectivity: Literal[4, 8] = 8,
) -> np.ndarray:
    """Marker-based watershed (``skimage.segmentation.watershed``).

    ``source="image"`` floods the luma itself as the relief (feed it a gradient, e.g. a
    ``sobel`` step), from its regional minima deeper than ``h``. ``source="distance"`` splits
    touching blobs of a mask (non-zero = foreground): it floods the negated distance to the
    background from the distance maxima higher than ``h`` pixels; background stays 0.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    source : str
        image (flood the luma) or distance (split the foreground of a mask).
    h : float
        Minimum depth (image units) or height (pixels) of a basin to get its own marker.
    connectivity : int
        4 or 8.

    Returns
    -------
    ndarray
        int32 H×W labels (1..N; 0 is background for ``source="distance"``).
    """
    from scipy import ndimage
    from skimage.morphology import h_maxima, h_minima, local_maxima, local_minima
    from skimage.segmentation import watershed as sk_watershed

    image = check_image(image, "watershed")
    conn = 1 if connectivity == 4 else 2
    footprint = ndimage.generate_binary_structure(2, conn)
    mask = None
    if source == "distance":
        mask = _foreground(image)
        dist = ndimage.distance_transform_edt(mask)
        peaks = h_maxima(dist, h, footprint=footprint) if h > 0 else local_maxima(
            dist, footprint=footprint)
        relief = -dist
    else:
        relief = gray_float(image).astype(np.float64)
        peaks = h_minima(relief, h, footprint=footprint) if h > 0 else local_minima(
            relief, footprint=footprint)
    markers, _ = ndimage.label(peaks & (mask if mask is not None else True), footprint)
    labels = sk_watershed(relief, markers=markers, connectivity=conn, mask=mask)
    return labels.astype(np.int32)


@op(family="segmentation", halo=GLOBAL, output="labels", value_bytes=56)
def slic(
    image: np.ndarray,
    *,
    n_segments: Annotated[int, Range(ge=1, le=1_000_000)] = 100,
    compactness: Annotated[float, Range(gt=0.0, le=1000.0)] = 10.0,
    sigma: Annotated[float, Range(ge=0.0, le=50.0)] = 0.0,
    max_iter: Annotated[int, Range(ge=1, le=100)] = 10,
) -> np.ndarray:
    """SLIC superpixels (``skimage.segmentation.slic``), connected, numbered from 1.

    Intensities are divided by the dtype's white (255, 65535, 1.0) before clustering, and
    RGB is clustered in CIE Lab, so ``compactness`` means the same for every dtype.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    n_segments : int
        Approximate number of superpixels.
    compactness : float
        Balance of colour and space: higher gives squarer superpixels.
    sigma : float
        Gaussian smoothing before clustering, in pixels.
    max_iter : int
        k-means iterations.

    Returns
    -------
    ndarray
        int32 H×W labels 1..N.
    """
    from skimage.segmentation import slic as sk_slic

    image = check_image(image, "slic")
    src = image.astype(np.float64) / dtype_max(image.dtype)
    c = channels(image)
    if c == 1:
        src = src if src.ndim == 2 else src[..., 0]
        axis = None
    else:
        src = src[..., :3] if c == 4 else src
        axis = -1
    labels = sk_slic(src, n_segments=n_segments, compactness=compactness, sigma=sigma,
                     max_num_iter=max_iter, channel_axis=axis, start_label=1,
                     convert2lab=c in (3, 4), enforce_connectivity=True)
    return labels.astype(np.int32)
