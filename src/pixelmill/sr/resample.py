"""MATLAB-exact ``imresize``: the degradation model of the super-resolution literature.

This follows the algorithm of MATLAB's ``imresize`` (Image Processing Toolbox):

* kernels ``bicubic`` (Keys' cubic with a = −0.5), ``bilinear``, ``box``, ``lanczos2``,
  ``lanczos3`` (the Graphics Gems forms, with MATLAB's ``eps`` guard);
* when shrinking, the kernel is widened by 1/scale and scaled by ``scale`` (antialiasing);
* output pixel ``x`` (1-based) maps to input coordinate ``u = x/scale + 0.5·(1 − 1/scale)``;
* out-of-range taps are mirrored about the image edge (half-sample symmetric padding:
  the ``aux = [1:n, n:-1:1]`` index mapping of current MATLAB releases; the 2013 imresize.m
  clamped to the end-points instead),
  taps whose weights are all zero are dropped, each row of weights is normalised to sum 1;
* the dimension with the smaller scale factor is resized first (height first on ties);
* integer images are rounded (half away from zero) and saturated after *each* pass, as
  MATLAB's ``imresizemex`` returns the input's class; floats are computed in float64.

OpenCV's ``INTER_CUBIC`` (a = −0.75, no antialiasing) is a different filter; it is offered as
:func:`resize_opencv_cubic` under its own name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from pixelmill.errors import InvalidParameterError

__all__ = ["KERNELS", "contributions", "imresize", "resize_opencv_cubic"]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    ) * ((ax > 1) & (ax <= 2))


def _box(x: np.ndarray) -> np.ndarray:
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    return (x + 1) * ((x >= -1) & (x < 0)) + (1 - x) * ((x >= 0) & (x <= 1))


def _lanczos(a: int) -> Callable[[np.ndarray], np.ndarray]:
    eps = np.finfo(np.float64).eps

    def kernel(x: np.ndarray) -> np.ndarray:
        f = (np.sin(np.pi * x) * np.sin(np.pi * x / a) + eps) / ((np.pi**2 * x * x / a) + eps)
        return f * (np.abs(x) < a)

    return kernel


#: method name -> (kernel function, kernel width in input pixels at scale 1)
KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "bicubic": (_cubic, 4.0),
    "bilinear": (_triangle, 2.0),
    "box": (_box, 1.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
}


def contributions(
    in_length: int, out_length: int, scale: float, method: str = "bicubic", antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based input indices of every output pixel along one axis (MATLAB's).

    Returns ``(weights, indices)``, both ``out_length × P``; row ``k`` holds the taps of
    output pixel ``k``.
    """
    kernel, width = KERNELS[method]
    if scale < 1 and antialiasing:
        def h(x: np.ndarray) -> np.ndarray:
            return scale * kernel(scale * x)

        width = width / scale
    else:
        h = kernel
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Out-of-range taps are mirrored (MATLAB's ``aux = [1:in_length, in_length:-1:1]``,
    # ``indices = aux(mod(indices - 1, 2 * in_length) + 1)``): half-sample symmetric padding,
    # so tap 0 reads pixel 1, tap -1 pixel 2, …; not a clamp to the end-points.
    period = 2 * in_length
    folded = np.mod(indices.astype(np.intp) - 1, period)
    indices = np.where(folded < in_length, folded, period - 1 - folded)
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _resize_axis_loop(
    image: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """The reference tap loop (``out += w_k · image[idx_k]``), whose bits the sparse form keeps."""
    moved = np.moveaxis(image, axis, 0)
    out = np.zeros((weights.shape[0], *moved.shape[1:]), np.float64)
    shape = (weights.shape[0],) + (1,) * (moved.ndim - 1)
    for k in range(weights.shape[1]):
        out += weights[:, k].reshape(shape) * moved[indices[:, k]]
    return np.moveaxis(out, 0, axis)


_SPARSE_UNFUSED: bool | None = None


def _sparse_is_unfused() -> bool:
    """Whether SciPy's CSR kernels round ``w · x`` before adding it (no FMA contraction).

    A SciPy built for a target with FMA (aarch64, ``-march=haswell``/native, …) may compile
    its ``y += a * x`` into a fused multiply-add, one rounding instead of the loop's two: not
    the same bits. Probe both kernels (one and several vectors) once; 0.0 unfused, 2**-60 fused.
    """
    global _SPARSE_UNFUSED
    if _SPARSE_UNFUSED is None:
        import scipy.sparse as sp

        a = 1.0 + 2.0**-30
        m = sp.csr_matrix((np.array([1.0, a]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
        x = np.array([[-(1.0 + 2.0**-29)] * 2, [a] * 2])
        _SPARSE_UNFUSED = bool((m @ x[:, :1])[0, 0] == 0.0 and np.all((m @ x)[0] == 0.0))
    return _SPARSE_UNFUSED


def _resize_axis(
    image: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """``out[i] = Σ_k weights[i, k] · image[indices[i, k]]`` along ``axis``, in float64.

    As a sparse (out × in) matrix product whose rows hold the taps in order, duplicates (the
    mirrored border taps) kept apart: SciPy's kernel adds ``w_k · x`` to a zero start tap by
    tap, the very operations of a loop over taps, so the result is the same to the bit
    (``tests/sr/test_imresize.py``), 4-6x faster and without a full-size temporary per tap.
    """
    import scipy.sparse as sp

    dt = image.dtype
    if dt.kind not in "biuf" or (dt.kind == "f" and dt.itemsize > 8) or not _sparse_is_unfused():
        # complex / long double / object inputs (float64 would drop or round them before the
        # product), or an FMA-contracting SciPy: the loop itself
        return _resize_axis_loop(image, axis, weights, indices)
    n_out, taps = weights.shape
    n_in = image.shape[axis]
    matrix = sp.csr_matrix(
        (np.ascontiguousarray(weights, np.float64).ravel(),
         np.ascontiguousarray(indices, np.int64).ravel(), np.arange(0, n_out * taps + 1, taps)),
        shape=(n_out, n_in))
    moved = np.moveaxis(image, axis, 0)
    rest = moved.shape[1:]
    if moved.ndim == 1 or moved.size == 0 or (moved.dtype == np.float64
                                              and moved.flags.c_contiguous):
        # no copy to make; SciPy's result is the output (no second full-size array)
        out = (matrix @ moved.reshape(n_in, -1)).reshape(n_out, *rest)
        return np.moveaxis(out, 0, axis)
    out = np.empty((n_out, *rest), np.float64)
    # by blocks of the other side: the float64 copy of the input stays a few MB, whatever
    # the image (a whole-image one would be 8 bytes per input value)
    per_line = max(1, moved[0, 0].size)
    step = max(1, (1 << 20) // max(1, n_in * per_line))
    for j0 in range(0, moved.shape[1], step):
        block = moved[:, j0:j0 + step]
        # the loop's own conversion (w_k * x promotes x to float64 the same way)
        flat = block.reshape(n_in, -1).astype(np.float64, copy=False)
        out[:, j0:j0 + step] = (matrix @ flat).reshape(n_out, *block.shape[1:])
    return np.moveaxis(out, 0, axis)


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        # MATLAB rounds half away from zero and saturates; values are clipped first.
        rounded = np.floor(np.clip(values, info.min, info.max) + 0.5)
        return rounded.astype(dtype)
    return values.astype(dtype)


def imresize(
    image: np.ndarray,
    scale: float | None = None,
    *,
    output_shape: tuple[int, int] | None = None,
    method: str = "bicubic",
    antialiasing: bool = True,
) -> np.ndarray:
    """Resize like MATLAB's ``imresize(image, scale, method)``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C; uint8, uint16 (rounded between passes) or float (computed in float64,
        returned in the input's float dtype).
    scale : float, optional
        Resize factor (``0.5`` halves, ``2`` doubles). The output size is
        ``ceil(scale · size)``, as in MATLAB.
    output_shape : (int, int), optional
        Output (rows, columns) instead of ``scale``; the per-axis scale is ``out / in``.
    method : str
        ``bicubic`` (default), ``bilinear``, ``box``, ``lanczos2`` or ``lanczos3``.
    antialiasing : bool
        Widen the kernel when shrinking (MATLAB's default ``true``).

    Returns
    -------
    ndarray
        The resized image, same dtype and channel layout.

    Examples
    --------
    >>> import numpy as np
    >>> imresize(np.full((4, 6), 7, np.uint8), 0.5).tolist()
    [[7, 7, 7], [7, 7, 7]]
    """
    if method not in KERNELS:
        raise InvalidParameterError(
            f"method: expected one of {', '.join(KERNELS)}, got {method!r}", field="method"
        )
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidParameterError(f"image: expected an H×W or H×W×C array, got {image.shape}")
    in_shape = image.shape[:2]
    if output_shape is not None:
        out_shape = (int(output_shape[0]), int(output_shape[1]))
        if min(out_shape) < 1:
            raise InvalidParameterError("output_shape: sizes must be >= 1", field="output_shape")
        scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
    elif scale is not None:
        if not (scale > 0 and math.isfinite(scale)):
            raise InvalidParameterError(f"scale: expected a number > 0, got {scale!r}", field="scale")
        scales = (float(scale), float(scale))
        out_shape = (math.ceil(scale * in_shape[0]), math.ceil(scale * in_shape[1]))
    else:
        raise InvalidParameterError("imresize: give scale or output_shape", field="scale")
    dtype = image.dtype
    order = sorted((0, 1), key=lambda d: scales[d])  # stable: height first on ties
    out = image
    for axis in order:
        weights, indices = contributions(
            in_shape[axis], out_shape[axis], scales[axis], method, antialiasing
        )
        out = _round_to(_resize_axis(out, axis, weights, indices), dtype)
    return out if out is not image else image.copy()


def resize_opencv_cubic(image: np.ndarray, scale: float) -> np.ndarray:
    """OpenCV's ``INTER_CUBIC`` (a = −0.75, no antialiasing) — *not* MATLAB's bicubic."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC).reshape(
        (size[1], size[0], *image.shape[2:])
    )
