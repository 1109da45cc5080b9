"""Filtering and noise ops: gaussian, box, median, bilateral, unsharp mask, NL-means, Laplacian.

Every op here is local: an output pixel depends on the input pixels within its declared
``halo``, and the image edge is extended with the op's own border ``mode`` (never zeros unless
``mode="constant"``), so processing a tile with ``halo`` pixels of context gives the same
pixels as processing the whole image.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np
from scipy import ndimage

from pixelmill.ops._common import (
    SCIPY_MODE,
    BorderMode,
    cast_like,
    check_image,
    fold_periodic,
    pad_border,
    per_channel,
    row_block,
    with_border,
)
from pixelmill.ops._registry import Range, op

__all__ = [
    "bilateral",
    "box",
    "gaussian",
    "gaussian_radius",
    "laplacian",
    "median",
    "nl_means",
    "unsharp_mask",
]


def gaussian_radius(sigma: float, truncate: float) -> int:
    """Kernel radius used for a gaussian of ``sigma`` truncated at ``truncate`` sigmas (SciPy's)."""
    return int(truncate * float(sigma) + 0.5)


def _odd(*names: str):
    def check(p):
        for name in names:
            if p[name] % 2 == 0:
                return f"{name}: expected an odd integer, got {p[name]}"
        return None

    return check


def _gaussian_blur(image: np.ndarray, sigma: float, truncate: float, mode: str) -> np.ndarray:
    radius = gaussian_radius(sigma, truncate)
    # the float kernel through sepFilter2D: integer results are the exactly rounded ones (but
    # for 2e-5 of the pixels), where GaussianBlur's 8-bit fixed-point path is a level off at 8 %
    # of them; and it is about a quarter faster
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma)
    if mode == "wrap" and 2 * radius + 1 > min(image.shape[:2]):
        # a kernel longer than the image folded onto its period: padding the full radius made
        # sigma 200 on a 1000² image take 155 s; folded taps take a second
        ky, kx = fold_periodic(kernel, image.shape[0]), fold_periodic(kernel, image.shape[1])
        ry, rx = ky.size // 2, kx.size // 2
        padded = pad_border(image, (ry, ry, rx, rx), "wrap")
        out = cv2.sepFilter2D(padded, -1, kx, ky, borderType=cv2.BORDER_REFLECT)
        return out[ry:ry + image.shape[0], rx:rx + image.shape[1]].reshape(image.shape)
    return with_border(
        image,
        radius,
        mode,
        lambda a, b: cv2.sepFilter2D(a, -1, kernel, kernel, borderType=b),
    ).reshape(image.shape)


@op(family="filters", halo=lambda p: gaussian_radius(p["sigma"], p["truncate"]))
def gaussian(
    image: np.ndarray,
    *,
    sigma: Annotated[float, Range(ge=0.0, le=200.0)] = 1.0,
    truncate: Annotated[float, Range(gt=0.0, le=10.0)] = 4.0,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Gaussian blur with a separable kernel of radius ``int(truncate * sigma + 0.5)``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    sigma : float
        Standard deviation of the kernel, in pixels (0 returns the image unchanged).
    truncate : float
        Kernel radius in standard deviations, as in ``scipy.ndimage.gaussian_filter``.
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian(np.zeros((8, 8), np.uint8), sigma=1.0).shape
    (8, 8)
    """
    image = check_image(image, "gaussian")
    if sigma == 0:
        return image.copy()
    return per_channel(image, lambda a: _gaussian_blur(a, sigma, truncate, mode))


@op(family="filters", halo=lambda p: p["size"] // 2, check=_odd("size"))
def box(
    image: np.ndarray,
    *,
    size: Annotated[int, Range(ge=1, le=255)] = 3,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Mean over a ``size``×``size`` square window (box blur).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    size : int
        Window side in pixels (odd).
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image`` (integers rounded to nearest).
    """
    image = check_image(image, "box")
    r = size // 2

    def run(a):
        return with_border(a, r, mode, lambda x, b: cv2.blur(x, (size, size), borderType=b))

    return per_channel(image, run).reshape(image.shape)


@op(family="filters", halo=lambda p: p["size"] // 2, check=_odd("size"))
def median(
    image: np.ndarray,
    *,
    size: Annotated[int, Range(ge=1, le=101)] = 3,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Median over a ``size``×``size`` square window, channel by channel.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    size : int
        Window side in pixels (odd).
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> median(np.array([[1, 9, 1, 1]], np.uint8), size=3, mode="nearest")
    array([[1, 1, 1, 1]], dtype=uint8)
    """
    image = check_image(image, "median")
    if size == 1:
        return image.copy()
    r = size // 2
    if image.dtype == np.uint8 or size <= 5:
        # OpenCV's median is fast but only clamps at the edge: pad first with our own mode.
        padded = pad_border(image, (r, r, r, r), mode)
        # OpenCV takes 1, 3 or 4 channels jointly beyond size 5 (uint8 only); for sizes 3 and 5
        # any count of any dtype (its sorting network per channel: the same medians as one
        # channel at a time, 1.5-3× faster); other cases go one channel at a time
        # (not a float image with NaN pixels: the sorting network's SIMD min/max pass a NaN on
        # by its lane, so the channels' interleaving changes the medians next to a NaN)
        joint = (image.ndim == 2 or image.shape[2] == 1
                 or (image.dtype == np.uint8 and image.shape[2] in (3, 4))
                 or (size <= 5 and image.shape[2] <= 4
                     and (image.dtype.kind != "f" or not np.isnan(image.min()))))
        out = per_channel(padded, lambda a: cv2.medianBlur(a, size),
                          max_channels=4 if joint else 1)
        return out[r:-r, r:-r].reshape(image.shape)
    footprint = (size, size) if image.ndim == 2 else (size, size, 1)
    return ndimage.median_filter(image, size=footprint, mode=SCIPY_MODE[mode])


def bilateral_reference(image: np.ndarray, diameter: int, sigma_color: float,
                        sigma_space: float, mode: str) -> np.ndarray:
    """The bilateral filter by definition, in float64 (used for uint16 and float32 images).

    Weights are ``exp(-d²/2σs²) · exp(-Δ²/2σc²)`` over the disc of radius ``diameter // 2``,
    where Δ is the L1 distance between pixel values summed over channels (as OpenCV does).
    """
    r = diameter // 2
    src = image.astype(np.float64)
    if src.ndim == 2:
        src = src[..., None]
    h, w, c = src.shape
    padded = pad_border(src, (r, r, r, r), mode)
    gc = -0.5 / (sigma_color * sigma_color)
    gs = -0.5 / (sigma_space * sigma_space)
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
               if not np.sqrt(dy * dy + dx * dx) > r]
    out = np.empty_like(src)
    # Each output pixel is computed from its own neighbourhood by the same float64 operations
    # in the same order whatever the block of rows it is in; blocks of a few rows keep every
    # temporary in cache (3× faster than whole-image passes).
    step = row_block(w, c, 1 << 14)
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        center = src[y0:y1]
        acc = np.zeros_like(center)
        wsum = np.zeros((y1 - y0, w, 1))
        for dy, dx in offsets:
            d2 = dy * dy + dx * dx
            shifted = padded[r + dy + y0 : r + dy + y1, r + dx : r + dx + w]
            diff = np.abs(shifted - center).sum(axis=2, keepdims=True)
            weight = np.exp(d2 * gs + diff * diff * gc)
            acc += weight * shifted
            wsum += weight
        np.divide(acc, wsum, out=out[y0:y1])
    return out if image.ndim == 3 else out[..., 0]


@op(family="filters", halo=lambda p: p["diameter"] // 2, check=_odd("diameter"),
    value_bytes=lambda dtype: 0 if dtype == "uint8" else 72)  # float64 reference path
def bilateral(
    image: np.ndarray,
    *,
    diameter: Annotated[int, Range(ge=1, le=31)] = 5,
    sigma_color: Annotated[float, Range(ge=1e-6)] = 25.0,  # smaller: 1/σ² overflows
    sigma_space: Annotated[float, Range(ge=1e-6, le=100.0)] = 2.0,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Edge-preserving bilateral filter over a disc of ``diameter`` pixels.

    uint8 images use OpenCV's ``bilateralFilter`` (jointly on 1 or 3 channels, channel by
    channel otherwise); uint16 and float32 images use the same definition evaluated in
    float64 (OpenCV's float path quantizes the color weights by the image's own min/max,
    which would make a tile differ from the whole image).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    diameter : int
        Diameter of the pixel neighbourhood (odd); the halo is ``diameter // 2``.
    sigma_color : float
        Range sigma in the image's own units (25 suits uint8; scale it for uint16 or float).
    sigma_space : float
        Spatial sigma in pixels.
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.
    """
    image = check_image(image, "bilateral")
    if diameter == 1:
        return image.copy()
    if image.dtype == np.uint8:
        r = diameter // 2

        def run(a):
            if mode == "reflect":
                return cv2.bilateralFilter(a, diameter, sigma_color, sigma_space,
                                           borderType=cv2.BORDER_REFLECT)
            # OpenCV's other border types can take an accelerated (IPP) path for one-channel
            # images at least 16 pixels wide that truncates instead of rounding: results
            # 0.5 darker on average, and a tile narrower than 16 pixels differing from the
            # whole image. Pad with our own mode and keep OpenCV on its exact reflect path.
            padded = pad_border(a, (r, r, r, r), mode)
            out = cv2.bilateralFilter(padded, diameter, sigma_color, sigma_space,
                                      borderType=cv2.BORDER_REFLECT)
            return out[r : r + a.shape[0], r : r + a.shape[1]]

        # OpenCV takes 1 or 3 channels; others (gray + alpha, RGBA) go channel by channel
        joint = image.ndim == 2 or image.shape[2] in (1, 3)
        return per_channel(image, run, max_channels=3 if joint else 1).reshape(image.shape)
    return cast_like(bilateral_reference(image, diameter, sigma_color, sigma_space, mode),
                     image.dtype)


@op(family="filters", halo=lambda p: gaussian_radius(p["radius"], 4.0), value_bytes=36)
def unsharp_mask(
    image: np.ndarray,
    *,
    radius: Annotated[float, Range(gt=0.0, le=100.0)] = 1.0,
    amount: Annotated[float, Range(ge=0.0, le=100.0)] = 1.0,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Sharpen: ``image + amount * (image - gaussian(image, sigma=radius))``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    radius : float
        Sigma of the gaussian blur, in pixels (kernel truncated at 4 sigmas).
    amount : float
        Strength of the sharpening.
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``; integer results are clipped to the dtype's range,
        float32 results are not clipped.
    """
    image = check_image(image, "unsharp_mask")
    if image.dtype.kind == "f":
        src = image  # float32 (check_image): read, never written
        blurred = per_channel(src, lambda a: _gaussian_blur(a, radius, 4.0, mode))
        # src + amount * (src - blurred), in place in the blurred image's buffer
        np.subtract(src, blurred, out=blurred)
        np.multiply(amount, blurred, out=blurred)
        np.add(src, blurred, out=blurred)
        return np.ascontiguousarray(cast_like(blurred, image.dtype))
    # Integer results round a float intermediate; OpenCV's float32 sums are ordered by pixel
    # position (SIMD body vs scalar tail), so a value within 1e-7 of .5 could round differently
    # in a tile than in the whole image. float64 leaves ~1e-16 of slack: tiled == whole exactly.
    # One channel at a time keeps the float64 working set below the float32 one of all channels.
    out = np.empty_like(image)
    planes = image[..., None] if image.ndim == 2 else image
    target = out[..., None] if image.ndim == 2 else out
    for c in range(planes.shape[2]):
        src = planes[..., c].astype(np.float64)
        blurred = _gaussian_blur(src, radius, 4.0, mode)
        blurred -= src  # -(detail)
        blurred *= -amount
        blurred += src
        # cast_like in place (rounded, clipped, then converted by the assignment)
        np.rint(blurred, out=blurred)
        np.clip(blurred, 0, np.iinfo(image.dtype).max, out=blurred)
        target[..., c] = blurred
    return out


@op(
    family="filters",
    halo=lambda p: p["search_size"] // 2 + p["template_size"] // 2,
    dtypes=("uint8", "uint16"),
    check=_odd("template_size", "search_size"),
)
def nl_means(
    image: np.ndarray,
    *,
    h: Annotated[float, Range(gt=0.0)] = 10.0,
    template_size: Annotated[int, Range(ge=3, le=21)] = 7,
    search_size: Annotated[int, Range(ge=3, le=51)] = 21,
) -> np.ndarray:
    """Non-local means denoising (OpenCV ``fastNlMeansDenoising``).

    Each pixel becomes a weighted mean of the pixels in a ``search_size`` window whose
    ``template_size`` patches look alike. The image edge is mirrored (``abc|ba``), as OpenCV does.
    Colour images are denoised with one joint patch distance over the channels.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C (C ≤ 4), uint8 or uint16 (uint16 uses the L1 patch distance).
    h : float
        Filter strength in the image's units: larger removes more noise and more detail.
    template_size : int
        Side of the compared patches (odd).
    search_size : int
        Side of the window searched for similar patches (odd).

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.
    """
    image = check_image(image, "nl_means", dtypes=(np.uint8, np.uint16))
    norm = cv2.NORM_L2 if image.dtype == np.uint8 else cv2.NORM_L1

    def run(a):
        return cv2.fastNlMeansDenoising(
            a, h=[float(h)], templateWindowSize=template_size,
            searchWindowSize=search_size, normType=norm,
        )

    return per_channel(image, run).reshape(image.shape)


@op(family="filters", halo=lambda p: 1 if p["ksize"] == 1 else p["ksize"] // 2,
    out_dtype="float32")
def laplacian(
    image: np.ndarray,
    *,
    ksize: Literal[1, 3, 5, 7] = 1,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Laplacian (sum of second derivatives), as OpenCV's ``Laplacian``.

    ``ksize=1`` is the 3×3 kernel ``[[0,1,0],[1,-4,1],[0,1,0]]`` (``scipy.ndimage.laplace``);
    larger sizes sum Sobel second derivatives of that aperture.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    ksize : int
        Aperture size: 1, 3, 5 or 7.
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        float32, same shape as ``image``, in the input's units (signed; not rescaled).
    """
    image = check_image(image, "laplacian")
    src = image.astype(np.float32)
    r = 1 if ksize == 1 else ksize // 2

    def run(a):
        return with_border(a, r, mode, lambda x, b: cv2.Laplacian(
            x, cv2.CV_32F, ksize=ksize, borderType=b))

    return per_channel(src, run).reshape(image.shape)
