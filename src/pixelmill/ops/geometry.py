"""Geometry ops: resize, crop, center_crop, pad, rotate, flip, affine.

Coordinates follow OpenCV and scikit-image: pixel centres at integer positions, ``x`` to the
right (columns), ``y`` down (rows). Angles are in degrees, counter-clockwise as displayed.
Interpolated integer results are rounded to nearest; no op here rescales intensities.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Annotated, Literal

import cv2
import numpy as np

from pixelmill.errors import InvalidParameterError
from pixelmill.ops._common import (
    CV2_BORDER,
    BorderMode,
    blas_threads,
    cast_like,
    channels,
    check_image,
    pad_border,
    per_channel,
)
from pixelmill.ops._registry import FLOAT32, GLOBAL, Range, op

__all__ = ["affine", "center_crop", "crop", "flip", "pad", "resize", "rotate"]

ResizeMethod = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]
WarpMethod = Literal["nearest", "bilinear", "bicubic"]

CV2_INTER = {
    "nearest": cv2.INTER_NEAREST_EXACT,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
#: input pixels an output pixel's interpolation reaches beyond its own footprint
RESIZE_HALO = {"nearest": 1, "bilinear": 1, "bicubic": 2, "area": 1, "lanczos": 4}


def _resize_check(p) -> str | None:
    given = [name for name in ("long_side", "factor") if p[name] is not None]
    if p["width"] is not None or p["height"] is not None:
        given.insert(0, "width/height")
    if len(given) != 1:
        what = " and ".join(given) if given else "none"
        return (f"give exactly one of width/height, long_side or factor (got {what})")
    return None


def output_size(shape: tuple[int, ...], *, width=None, height=None, long_side=None,
                factor=None) -> tuple[int, int]:
    """(height, width) that :func:`resize` produces for an input of ``shape``."""
    h, w = shape[:2]
    if factor is not None:
        return max(1, round(h * factor)), max(1, round(w * factor))
    if long_side is not None:
        f = long_side / max(h, w)
        return max(1, round(h * f)), max(1, round(w * f))
    if width is not None and height is not None:
        return height, width
    if width is not None:
        return max(1, round(h * width / w)), width
    return height, max(1, round(w * height / h))


def _nearest_index(n_in: int, n_out: int, factor: float) -> np.ndarray:
    """Input index of each output pixel for nearest resizing by ``factor``: the pixel whose
    footprint holds the output centre, ``floor((i + 0.5) / factor)``, in exact arithmetic.

    OpenCV's INTER_NEAREST_EXACT derives its step from the two sizes in 16.16 fixed point, so
    where an output centre falls on a pixel boundary (factor 0.75, 1.5, 2.5...) it picks a side
    that depends on the image size: a tile picked differently from the whole image. Exact
    arithmetic on the factor as a fraction picks the same pixel wherever the image starts.
    """
    fr = Fraction(factor).limit_denominator(1_000_000)
    i = np.arange(n_out, dtype=np.int64)
    if fr.numerator == 0:  # a factor below 1e-6: no short fraction; the float formula will do
        idx = np.floor((i + 0.5) / factor).astype(np.int64)
    else:
        idx = ((2 * i + 1) * fr.denominator) // (2 * fr.numerator)
    return np.minimum(idx, n_in - 1)


#: longest period (input pixels that map onto a whole number of output pixels) along either
#: axis for which :func:`_area_shrink` beats OpenCV's generic INTER_AREA loop (measured: 15→8
#: and 3→2 about 2×, 63→32 only 1.2×, 125→64 slower)
AREA_MAX_PERIOD = 32


@functools.lru_cache(maxsize=64)
def _area_counts(p: int, q: int) -> np.ndarray:
    """(q, p) integers (as float32): ``q`` × the overlap of output pixel ``i`` with input pixel
    ``j`` when ``p`` input pixels are averaged onto ``q`` (output ``i`` covers
    ``[i p/q, (i + 1) p/q)``; overlaps are multiples of ``1/q``). Output ``i`` is
    ``Σ_j counts[i, j] · x_j / p``: the exact area mean."""
    s = Fraction(p, q)
    w = np.zeros((q, p), np.float32)
    for i in range(q):
        a, b = i * s, (i + 1) * s
        for j in range(math.floor(a), math.ceil(b)):
            w[i, j] = int((min(b, j + 1) - max(a, j)) * q)
    return w


@functools.lru_cache(maxsize=64)
def _area_counts_interleaved(p: int, q: int, c: int, dtype: str) -> np.ndarray:
    """(p·c, q·c): :func:`_area_counts` transposed, acting on ``c`` interleaved channels."""
    return np.ascontiguousarray(np.kron(_area_counts(p, q).T, np.eye(c)).astype(dtype))


@functools.lru_cache(maxsize=256)
def _cv2_nearest_picks(n_in: int, n_out: int) -> np.ndarray:
    """The input index OpenCV's INTER_NEAREST_EXACT picks for each of ``n_out`` outputs along
    an axis of ``n_in`` (its fixed-point step depends only on the two sizes)."""
    index = np.arange(n_in, dtype=np.float32)[None, :]  # exact integers (n_in < 2**24)
    picked = cv2.resize(index, (n_out, 1), interpolation=cv2.INTER_NEAREST_EXACT)
    return picked.ravel().astype(np.int64)


def _take_nearest(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``image[rows][:, cols]``: by OpenCV's nearest resize (5× faster than NumPy's fancy
    indexing) where it picks exactly these rows and columns, which is checked on the indices
    themselves (nearest resizing is separable: pixel (i, j) is input (pick_y(i), pick_x(j)))."""
    h, w = image.shape[:2]
    oh, ow = rows.size, cols.size
    if (channels(image) <= 4 and max(h, w) < 2**24
            and np.array_equal(_cv2_nearest_picks(h, oh), rows)
            and np.array_equal(_cv2_nearest_picks(w, ow), cols)):
        out = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_NEAREST_EXACT)
        return out.reshape((oh, ow, *image.shape[2:]))
    return image[rows][:, cols]


def _area_shrink(image: np.ndarray, oh: int, ow: int) -> np.ndarray | None:
    """Area-average ``image`` down to ``oh``×``ow`` as two small matrix products per period.

    When ``h/oh = pv/qv`` and ``w/ow = ph/qh`` in lowest terms, every ``pv`` input rows average
    onto exactly ``qv`` output rows (and likewise for columns), so the whole resize is a
    (qv×pv) matrix applied to each block of rows and a (ph×qh) one to each block of columns —
    BLAS work, about twice as fast as OpenCV's scalar INTER_AREA loop for non-integer factors.

    Integer images are summed with integer weights (overlaps × q), exactly, so no summation
    order of the BLAS kernels can change a result: a pixel is the same in a tile as in the whole
    image. It is then divided by ``pv·ph`` and rounded half to even: the exactly rounded area
    mean (OpenCV's float weights are a level off at ties). None where this does not pay:
    enlarging, integer factors (OpenCV has a vectorised path), long periods, other dtypes.
    """
    h, w = image.shape[:2]
    if image.dtype not in (np.uint8, np.uint16, np.float32) or oh > h or ow > w:
        return None
    gv, gh = math.gcd(h, oh), math.gcd(w, ow)
    pv, qv, ph, qh = h // gv, oh // gv, w // gh, ow // gh
    if (qv == 1 and qh == 1) or max(pv, ph) > AREA_MAX_PERIOD:
        return None
    c = image.shape[2] if image.ndim == 3 else 1
    top = 1.0 if image.dtype == np.float32 else float(np.iinfo(image.dtype).max)
    # float32 holds every integer sum below 2**24 exactly; larger ones are summed in float64
    work = np.float32 if image.dtype == np.float32 or top * pv * ph < 2**24 else np.float64
    wv = _area_counts(pv, qv).astype(work, copy=False)
    wh = _area_counts_interleaved(ph, qh, c, np.dtype(work).name)
    scale = 1.0 / (pv * ph)
    rows = image.reshape(gv, pv, w * c)
    out = np.empty((oh, ow * c), image.dtype)
    step = max(1, 64 // pv)  # blocks of ~64 input rows keep the float temporaries in cache
    with blas_threads(1):  # small products: more threads only spin (and oversubscribe workers)
        for g0 in range(0, gv, step):
            g1 = min(gv, g0 + step)
            y = np.matmul(wv, rows[g0:g1].astype(work, copy=False))  # (blocks, qv, w·c)
            z = y.reshape(-1, ph * c) @ wh  # (rows · column blocks, qh·c)
            dst = out[g0 * qv:g1 * qv].reshape(z.shape)
            if image.dtype == np.uint8:
                # z · scale in double, rounded half to even (every sum is exact: a tie is one)
                dst[...] = cv2.convertScaleAbs(z, alpha=scale)
            elif image.dtype == np.uint16:
                z = np.rint(z * scale)
                dst[...] = np.clip(z, 0, top, out=z)
            else:
                dst[...] = z * np.float32(scale)
    return out.reshape((oh, ow, *image.shape[2:]))


def _resize_untileable(p) -> str | None:
    """OpenCV's Lanczos resize rounds its weights differently depending on the output pixel's
    index unless the inverse factor is a power of two (×2, ×0.5, ...): the whole image and a
    tile then differ by 1-4 levels at a large share of the pixels (uint8/uint16), measured."""
    factor = p["factor"]
    if p["method"] != "lanczos" or factor is None:
        return None
    inv = 1 / Fraction(factor).limit_denominator(1000)  # as the tilers take the scale
    if inv.numerator & (inv.numerator - 1) == 0 and inv.denominator & (inv.denominator - 1) == 0:
        return None
    return (f"lanczos resampling by {factor:g} rounds each pixel's weights by its position in "
            "the whole image (OpenCV), which a tile cannot reproduce (factors 2, 4, 0.5, ... "
            "and the methods bilinear, bicubic, area and nearest can be tiled)")


@op(
    family="geometry",
    halo=lambda p: RESIZE_HALO[p["method"]],
    scale=lambda p: p["factor"],
    check=_resize_check,
    untileable=_resize_untileable,
)
def resize(
    image: np.ndarray,
    *,
    width: Annotated[int, Range(ge=1, le=1_000_000)] | None = None,
    height: Annotated[int, Range(ge=1, le=1_000_000)] | None = None,
    long_side: Annotated[int, Range(ge=1, le=1_000_000)] | None = None,
    factor: Annotated[float, Range(gt=0.0, le=64.0)] | None = None,
    method: ResizeMethod = "area",
) -> np.ndarray:
    """Resize to a size, to a long side, or by a factor (OpenCV ``resize``, half-pixel centres).

    Give exactly one of: ``width`` and/or ``height`` (one alone keeps the aspect ratio),
    ``long_side``, or ``factor``. ``area`` averages the covered input pixels (the antialiased
    choice for shrinking); ``bilinear``, ``bicubic`` (Keys, a = -0.75) and ``lanczos`` (8×8 taps)
    interpolate without antialiasing; ``nearest`` takes the input pixel under each output
    pixel's centre (by ``factor``: input ``floor((i + 0.5) / factor)``, as scikit-image). The
    scale is ``factor`` when given (output size is ``round(size * factor)``), otherwise it
    depends on the input size.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    width : int or None
        Output width in pixels.
    height : int or None
        Output height in pixels.
    long_side : int or None
        Output length of the longer side; the other keeps the aspect ratio.
    factor : float or None
        Scale factor applied to both sides (0.5 halves, 2 doubles).
    method : str
        Interpolation: nearest, bilinear, bicubic, area or lanczos.

    Returns
    -------
    ndarray
        Same dtype and channels as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> resize(np.zeros((100, 50), np.uint8), long_side=20).shape
    (20, 10)
    """
    image = check_image(image, "resize")
    interp = CV2_INTER[method]
    if factor is not None:
        oh, ow = output_size(image.shape, factor=factor)
        if round(image.shape[0] * factor) >= 1 and round(image.shape[1] * factor) >= 1:
            if method == "nearest":
                rows = _nearest_index(image.shape[0], oh, factor)
                cols = _nearest_index(image.shape[1], ow, factor)
                return _take_nearest(image, rows, cols)
            if method == "area" and ow / image.shape[1] == factor == oh / image.shape[0]:
                # OpenCV samples on the factor's grid; the size ratio is the same grid here
                fast = _area_shrink(image, oh, ow)
                if fast is not None:
                    return fast
            return per_channel(image, lambda a: cv2.resize(
                a, None, fx=factor, fy=factor, interpolation=interp)).reshape(
                (oh, ow, *image.shape[2:]))
    else:
        oh, ow = output_size(image.shape, width=width, height=height, long_side=long_side)
        if method == "area":
            fast = _area_shrink(image, oh, ow)
            if fast is not None:
                return fast
    return per_channel(image, lambda a: cv2.resize(a, (ow, oh), interpolation=interp)).reshape(
        (oh, ow, *image.shape[2:]))


@op(family="geometry", halo=0, scale=None)
def crop(
    image: np.ndarray,
    *,
    x: Annotated[int, Range(ge=0)],
    y: Annotated[int, Range(ge=0)],
    width: Annotated[int, Range(ge=1)],
    height: Annotated[int, Range(ge=1)],
) -> np.ndarray:
    """Cut the window ``[y, y + height) × [x, x + width)``, clipped to the image.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, any supported dtype.
    x : int
        Left column of the window.
    y : int
        Top row of the window.
    width : int
        Window width in pixels.
    height : int
        Window height in pixels.

    Returns
    -------
    ndarray
        A copy of the window (smaller where it crosses the image edge); same dtype.

    Raises
    ------
    InvalidParameterError
        When the window lies entirely outside the image.

    Examples
    --------
    >>> import numpy as np
    >>> crop(np.arange(20, dtype=np.uint8).reshape(4, 5), x=1, y=2, width=3, height=9)
    array([[11, 12, 13],
           [16, 17, 18]], dtype=uint8)
    """
    image = check_image(image, "crop")
    h, w = image.shape[:2]
    if x >= w or y >= h:
        raise InvalidParameterError(
            f"crop: window at x={x}, y={y} lies outside the {w}×{h} image", field="x" if x >= w
            else "y")
    return image[y : y + height, x : x + width].copy()


@op(family="geometry", halo=0, scale=None)
def center_crop(
    image: np.ndarray,
    *,
    width: Annotated[int, Range(ge=1)],
    height: Annotated[int, Range(ge=1)],
) -> np.ndarray:
    """Cut a ``width``×``height`` window from the centre (clipped to the image).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, any supported dtype.
    width : int
        Window width in pixels (an image narrower than this keeps its width).
    height : int
        Window height in pixels (an image shorter than this keeps its height).

    Returns
    -------
    ndarray
        A copy of the window; same dtype. The window starts at ``(H - height) // 2``.
    """
    image = check_image(image, "center_crop")
    h, w = image.shape[:2]
    ch, cw = min(height, h), min(width, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return image[y0 : y0 + ch, x0 : x0 + cw].copy()


@op(family="geometry", halo=0, scale=None)
def pad(
    image: np.ndarray,
    *,
    top: Annotated[int, Range(ge=0, le=100_000)] = 0,
    bottom: Annotated[int, Range(ge=0, le=100_000)] = 0,
    left: Annotated[int, Range(ge=0, le=100_000)] = 0,
    right: Annotated[int, Range(ge=0, le=100_000)] = 0,
    mode: BorderMode = "constant",
    cval: Annotated[float, FLOAT32] = 0.0,
) -> np.ndarray:
    """Add rows and columns around the image, filled by ``mode``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, any supported dtype.
    top : int
        Rows added above.
    bottom : int
        Rows added below.
    left : int
        Columns added on the left.
    right : int
        Columns added on the right.
    mode : str
        How the new pixels are filled (as :func:`numpy.pad`: reflect = symmetric).
    cval : float
        Fill value for ``mode="constant"`` (rounded and clipped to the image dtype).

    Returns
    -------
    ndarray
        (H + top + bottom) × (W + left + right), same dtype.

    Examples
    --------
    >>> import numpy as np
    >>> pad(np.array([[1, 2]], np.uint8), left=2, mode="reflect")
    array([[2, 1, 1, 2]], dtype=uint8)
    """
    image = check_image(image, "pad")
    # cast as every op does (rounded and clipped to the dtype): -1 is 0 for uint8, not 255
    fill = float(cast_like(np.array(cval), image.dtype)) if mode == "constant" else 0.0
    return pad_border(image, (top, bottom, left, right), mode, fill)


def _warp(image, matrix, size, method, mode, cval):
    flags = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
             "bicubic": cv2.INTER_CUBIC}[method]
    if image.dtype.kind == "u":
        # clipped to the dtype here (OpenCV rounds it): OpenCV's own saturation goes through a
        # 32-bit int, so a cval past 2**31 wrapped to 0 instead of the dtype's white
        info = np.iinfo(image.dtype)
        cval = min(max(float(cval), float(info.min)), float(info.max))
    return per_channel(image, lambda a: cv2.warpAffine(
        a, matrix, size, flags=flags, borderMode=CV2_BORDER[mode],
        borderValue=(float(cval),) * 4)).reshape((size[1], size[0], *image.shape[2:]))


def _rotate_scale(p) -> float | None:
    """1 when the output keeps H×W; None when its size depends on the input's shape."""
    angle = float(p["angle"])
    if angle % 90 == 0:
        return 1.0 if angle % 180 == 0 else None  # 90° and 270° swap H and W
    return None if p["expand"] else 1.0


@op(family="geometry", halo=GLOBAL, scale=_rotate_scale)
def rotate(
    image: np.ndarray,
    *,
    angle: Annotated[float, Range(ge=-3600.0, le=3600.0)],
    expand: bool = False,
    method: WarpMethod = "bilinear",
    mode: BorderMode = "constant",
    cval: Annotated[float, FLOAT32] = 0.0,
) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees about the image centre.

    Multiples of 90° are exact array rotations (no interpolation; H and W swap for 90° and
    270°). Other angles interpolate with ``method``; pixels that come from outside the image
    are filled by ``mode``. The centre is ``((W - 1) / 2, (H - 1) / 2)``, as in
    ``skimage.transform.rotate``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    angle : float
        Degrees, counter-clockwise.
    expand : bool
        Grow the output to hold the whole rotated image (else keep H×W).
    method : str
        Interpolation: nearest, bilinear or bicubic.
    mode : str
        How the image is extended beyond its border.
    cval : float
        Fill value for ``mode="constant"``.

    Returns
    -------
    ndarray
        Same dtype; H×W unless ``expand`` (or a 90°/270° rotation).

    Examples
    --------
    >>> import numpy as np
    >>> rotate(np.array([[1, 2], [3, 4]], np.uint8), angle=90)
    array([[2, 4],
           [1, 3]], dtype=uint8)
    """
    image = check_image(image, "rotate")
    if float(angle) % 90 == 0:
        k = int(angle // 90) % 4
        if k and channels(image) <= 4:  # OpenCV copies the same pixels 10× faster than NumPy
            code = (cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE)[k - 1]
            out = cv2.rotate(image, code)
            return out.reshape(out.shape[:2] + image.shape[2:])
        return np.rot90(image, k).copy()
    h, w = image.shape[:2]
    center = ((w - 1) / 2.0, (h - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(center, float(angle), 1.0)
    size = (w, h)
    if expand:
        rad = math.radians(angle)
        cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
        ow = int(np.ceil(w * cos + h * sin - 1e-9))
        oh = int(np.ceil(w * sin + h * cos - 1e-9))
        matrix[0, 2] += (ow - w) / 2.0
        matrix[1, 2] += (oh - h) / 2.0
        size = (ow, oh)
    return _warp(image, matrix, size, method, mode, cval)


@op(family="geometry", halo=GLOBAL)
def flip(
    image: np.ndarray,
    *,
    axis: Literal["horizontal", "vertical", "both"] = "horizontal",
) -> np.ndarray:
    """Mirror the image: ``horizontal`` swaps left and right, ``vertical`` top and bottom.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, any supported dtype.
    axis : str
        horizontal, vertical or both.

    Returns
    -------
    ndarray
        Same shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> flip(np.array([[1, 2, 3]], np.uint8)).tolist()
    [[3, 2, 1]]
    """
    image = check_image(image, "flip")
    if channels(image) <= 4:  # OpenCV copies the same pixels 10-20× faster than NumPy
        code = {"horizontal": 1, "vertical": 0, "both": -1}[axis]
        return cv2.flip(image, code).reshape(image.shape)
    axes = {"horizontal": (1,), "vertical": (0,), "both": (0, 1)}[axis]
    return np.ascontiguousarray(np.flip(image, axes))


def _affine_check(p) -> str | None:
    a, b, _, d, e, _ = p["matrix"]
    if abs(a * e - b * d) < 1e-12:
        return "matrix: the 2×2 part [[a, b], [d, e]] is not invertible"
    return None


@op(family="geometry", halo=GLOBAL, check=_affine_check)
def affine(
    image: np.ndarray,
    *,
    matrix: tuple[float, float, float, float, float, float],
    method: WarpMethod = "bilinear",
    mode: BorderMode = "constant",
    cval: Annotated[float, FLOAT32] = 0.0,
) -> np.ndarray:
    """Apply the affine map ``(x, y) -> (a·x + b·y + c, d·x + e·y + f)`` (same output size).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    matrix : list of 6 floats
        ``[a, b, c, d, e, f]``: the first two rows of the 3×3 forward matrix, from input to
        output pixel coordinates. It must be invertible.
    method : str
        Interpolation: nearest, bilinear or bicubic.
    mode : str
        How the image is extended beyond its border.
    cval : float
        Fill value for ``mode="constant"``.

    Returns
    -------
    ndarray
        Same shape and dtype.
    """
    image = check_image(image, "affine")
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    h, w = image.shape[:2]
    return _warp(image, m, (w, h), method, mode, cval)
