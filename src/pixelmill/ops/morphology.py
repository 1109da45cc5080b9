"""Grey-level morphology: erode, dilate, opening, closing, gradient, tophat, blackhat, skeletonize.

The structuring element is a ``size``×``size`` rectangle, ellipse (disc) or cross, centred.
Compound ops apply the border ``mode`` at each stage (as ``scipy.ndimage.grey_opening`` does),
so their halo is the sum of their stages' radii.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np

from pixelmill.ops._common import (
    BorderMode,
    channels,
    check_image,
    pad_border,
    per_channel,
    with_border,
)
from pixelmill.ops._registry import GLOBAL, Range, op

__all__ = [
    "blackhat",
    "closing",
    "dilate",
    "erode",
    "gradient",
    "opening",
    "skeletonize",
    "structuring_element",
    "tophat",
]

Shape = Literal["rect", "ellipse", "cross"]
_CV2_SHAPE = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}
_SIZE = Annotated[int, Range(ge=1, le=255)]


def structuring_element(shape: str, size: int) -> np.ndarray:
    """The uint8 ``size``×``size`` footprint used by the morphology ops (OpenCV's)."""
    return cv2.getStructuringElement(_CV2_SHAPE[shape], (size, size))


def _odd_size(p) -> str | None:
    return None if p["size"] % 2 else f"size: expected an odd integer, got {p['size']}"


def _morph(image: np.ndarray, how: str, shape: str, size: int, mode: str) -> np.ndarray:
    """One erosion or dilation with ``mode`` at the edge (constant mode pads with 0)."""
    se = structuring_element(shape, size)
    fn = cv2.erode if how == "erode" else cv2.dilate
    r = size // 2

    def run(a):
        if mode == "constant":  # OpenCV's constant border is the neutral value: pad zeros
            return _padded(a, r, lambda x: fn(x, se, borderType=cv2.BORDER_REPLICATE))
        return with_border(a, r, mode, lambda x, b: fn(x, se, borderType=b))

    return per_channel(image, run).reshape(image.shape)


def _padded(a: np.ndarray, r: int, fn) -> np.ndarray:
    out = fn(pad_border(a, (r, r, r, r), "constant"))
    return out[r : r + a.shape[0], r : r + a.shape[1]]


_PARAMS_DOC = """
    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (channels processed independently).
    shape : str
        Structuring element: rect, ellipse or cross.
    size : int
        Side of the structuring element in pixels (odd).
    mode : str
        How the image is extended beyond its border (constant = zeros).

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.
"""


def _with_params_doc(func):
    """Append the shared numpydoc Parameters/Returns sections (read by the registry)."""
    func.__doc__ = func.__doc__.rstrip() + "\n" + _PARAMS_DOC
    return func


def _minus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b, floored at 0 (near the edge a border mode can make b exceed a)."""
    if a.dtype.kind == "u":
        if channels(a) <= 4:  # OpenCV's saturating subtraction: the same, 20× faster
            return cv2.subtract(a, b).reshape(a.shape)
        return np.where(a > b, a - b, 0).astype(a.dtype)
    out = np.subtract(a, b)
    return np.maximum(out, 0, out=out)


def _opening(image, shape, size, mode):
    return _morph(_morph(image, "erode", shape, size, mode), "dilate", shape, size, mode)


def _closing(image, shape, size, mode):
    return _morph(_morph(image, "dilate", shape, size, mode), "erode", shape, size, mode)


@op(family="morphology", halo=lambda p: p["size"] // 2, check=_odd_size)
@_with_params_doc
def erode(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
          mode: BorderMode = "reflect") -> np.ndarray:
    """Grey erosion: the minimum over the structuring element.

    Examples
    --------
    >>> import numpy as np
    >>> erode(np.array([[5, 5, 5, 1, 5]], np.uint8), size=3)
    array([[5, 5, 1, 1, 1]], dtype=uint8)
    """
    image = check_image(image, "erode")
    return _morph(image, "erode", shape, size, mode)


@op(family="morphology", halo=lambda p: p["size"] // 2, check=_odd_size)
@_with_params_doc
def dilate(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
           mode: BorderMode = "reflect") -> np.ndarray:
    """Grey dilation: the maximum over the structuring element.
    """
    image = check_image(image, "dilate")
    return _morph(image, "dilate", shape, size, mode)


@op(family="morphology", halo=lambda p: 2 * (p["size"] // 2), check=_odd_size)
@_with_params_doc
def opening(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
            mode: BorderMode = "reflect") -> np.ndarray:
    """Opening: erosion then dilation (removes bright details smaller than the element).
    """
    image = check_image(image, "opening")
    return _opening(image, shape, size, mode)


@op(family="morphology", halo=lambda p: 2 * (p["size"] // 2), check=_odd_size)
@_with_params_doc
def closing(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
            mode: BorderMode = "reflect") -> np.ndarray:
    """Closing: dilation then erosion (fills dark details smaller than the element).
    """
    image = check_image(image, "closing")
    return _closing(image, shape, size, mode)


@op(family="morphology", halo=lambda p: p["size"] // 2, check=_odd_size)
@_with_params_doc
def gradient(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
             mode: BorderMode = "reflect") -> np.ndarray:
    """Morphological gradient: dilation minus erosion (never negative).
    """
    image = check_image(image, "gradient")
    return _morph(image, "dilate", shape, size, mode) - _morph(image, "erode", shape, size, mode)


@op(family="morphology", halo=lambda p: 2 * (p["size"] // 2), check=_odd_size)
@_with_params_doc
def tophat(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
           mode: BorderMode = "reflect") -> np.ndarray:
    """White top-hat: the image minus its opening (bright details smaller than the element).

    Results are floored at 0 (the edge's border mode can otherwise make them negative).
    """
    image = check_image(image, "tophat")
    return _minus(image, _opening(image, shape, size, mode))


@op(family="morphology", halo=lambda p: 2 * (p["size"] // 2), check=_odd_size)
@_with_params_doc
def blackhat(image: np.ndarray, *, shape: Shape = "rect", size: _SIZE = 3,
             mode: BorderMode = "reflect") -> np.ndarray:
    """Black top-hat: the closing minus the image (dark details smaller than the element).

    Results are floored at 0 (the edge's border mode can otherwise make them negative).
    """
    image = check_image(image, "blackhat")
    return _minus(_closing(image, shape, size, mode), image)


@op(family="morphology", halo=GLOBAL, out_dtype="uint8")
def skeletonize(image: np.ndarray) -> np.ndarray:
    """Thin the foreground (non-zero pixels, in any channel) to one-pixel-wide lines.

    Uses ``skimage.morphology.skeletonize`` (Zhang's method). Thinning iterates until nothing
    changes, so a pixel can depend on far-away pixels: a global op.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32; foreground is any non-zero value.

    Returns
    -------
    ndarray
        uint8 H×W mask: 255 on the skeleton, 0 elsewhere.
    """
    from skimage.morphology import skeletonize as sk_skeletonize

    image = check_image(image, "skeletonize")
    fg = image != 0 if channels(image) == 1 else (image != 0).any(axis=2)
    if fg.ndim == 3:
        fg = fg[..., 0]
    return sk_skeletonize(fg).astype(np.uint8) * np.uint8(255)
