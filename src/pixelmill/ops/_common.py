"""Conventions shared by the op families: border modes, dtype checks, channel handling."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import cv2
import numpy as np

from pixelmill.errors import InvalidParameterError

__all__ = [
    "CV2_BORDER",
    "NUMPY_PAD",
    "SCIPY_MODE",
    "SUPPORTED_DTYPES",
    "BorderMode",
    "blas_threads",
    "cast_like",
    "check_image",
    "dtype_max",
    "fold_periodic",
    "gray_float",
    "luma",
    "pad_border",
    "per_channel",
    "row_block",
    "set_native_threads",
    "shared_luma",
    "with_border",
]


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads(n: int) -> Any:
    """Context manager: NumPy's BLAS uses at most ``n`` threads inside (about 6 µs).

    OpenBLAS starts one busy-waiting thread per core for a large enough product; in an engine
    worker (one per core already) that oversubscribes the cores and a 1 ms product takes tens."""
    return _blas_controller().limit(limits=n, user_api="blas")


def set_native_threads(n: int) -> None:
    """Let OpenCV and NumPy's BLAS use at most ``n`` threads from now on in this process (an
    engine worker: the engine already runs one unit per core)."""
    cv2.setNumThreads(n)
    _blas_controller().limit(limits=n, user_api="blas")


#: how an op extends the image beyond its border. Names follow SciPy/scikit-image:
#: reflect = "abc|cba" (cv2 REFLECT), mirror = "abc|ba" (cv2 REFLECT_101), nearest = "abc|cc",
#: wrap = "abc|ab", constant = zeros (or ``cval``).
BorderMode = Literal["reflect", "mirror", "nearest", "wrap", "constant"]

CV2_BORDER = {
    "reflect": cv2.BORDER_REFLECT,
    "mirror": cv2.BORDER_REFLECT_101,
    "nearest": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
    "constant": cv2.BORDER_CONSTANT,
}

#: numpy.pad mode for each border mode
NUMPY_PAD = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}

#: scipy.ndimage ``mode`` for each border mode (used by tests as the reference)
SCIPY_MODE = {
    "reflect": "reflect",
    "mirror": "mirror",
    "nearest": "nearest",
    "wrap": "wrap",
    "constant": "constant",
}

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32)

#: BT.601 luma weights (as OpenCV, Pillow "L" and JPEG use)
LUMA_601 = (0.299, 0.587, 0.114)


def check_image(image: np.ndarray, op_name: str, dtypes=SUPPORTED_DTYPES) -> np.ndarray:
    """Raise a clear error for arrays an op cannot take; return a C-contiguous, native-byte-order
    view or copy."""
    if not isinstance(image, np.ndarray):
        raise InvalidParameterError(f"{op_name}: expected a NumPy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InvalidParameterError(
            f"{op_name}: expected an H×W or H×W×C array, got shape {image.shape}"
        )
    if image.size == 0:  # no rows, no columns, or H×W×0 (no channels)
        raise InvalidParameterError(f"{op_name}: empty image of shape {image.shape}")
    dtypes = tuple(np.dtype(d).type for d in dtypes)
    if image.dtype.type not in dtypes:
        names = ", ".join(np.dtype(d).name for d in dtypes)
        raise InvalidParameterError(f"{op_name}: dtype {image.dtype} not supported (use {names})")
    if not image.dtype.isnative:
        # a byte-swapped array (">u2" from a big-endian file): OpenCV reads its raw bytes as
        # native numbers, so convert the values (the dtype becomes the native uint16 etc.)
        return np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("="))
    return np.ascontiguousarray(image)


def dtype_max(dtype: np.dtype) -> float:
    """The nominal white of a dtype: 255, 65535, or 1.0 for floats."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip float results back to an integer dtype; floats pass through as float32."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def channels(image: np.ndarray) -> int:
    """Number of channels (1 for an H×W array)."""
    return 1 if image.ndim == 2 else image.shape[2]


def row_block(width: int, values_per_pixel: int = 1, budget: int = 1 << 16) -> int:
    """Rows per block so a block holds about ``budget`` values: elementwise work done block by
    block keeps its temporaries in cache (the same operations on the same values: the same
    results as on the whole image at once)."""
    return max(1, budget // max(1, width * values_per_pixel))


def gray_float(image: np.ndarray) -> np.ndarray:
    """A float32 H×W luma image in the input's own units (BT.601 weights; alpha ignored).

    Gray (H×W or H×W×1) passes through; 2 channels (gray + alpha) keep the first; 3 or 4
    channels (RGB, RGBA) are weighted ``0.299 R + 0.587 G + 0.114 B``. No rounding, no rescaling.
    """
    c = channels(image)
    if c in (1, 2):
        g = image if image.ndim == 2 else image[..., 0]
        return g.astype(np.float32)
    # ``(R·w0 + G·w1) + B·w2`` in float32, as one expression on the whole image would compute
    # it, but by blocks of rows (in cache): about 4× faster on a 2-megapixel image
    h, w = image.shape[:2]
    out = np.empty((h, w), np.float32)
    step = row_block(w, 3)
    tmp = np.empty((step, w), np.float32)
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        rgb = image[y0:y1, :, :3].astype(np.float32)
        o, t = out[y0:y1], tmp[: y1 - y0]
        np.multiply(rgb[..., 0], LUMA_601[0], out=o)
        np.multiply(rgb[..., 1], LUMA_601[1], out=t)
        o += t
        np.multiply(rgb[..., 2], LUMA_601[2], out=t)
        o += t
    return out


#: the memo of :func:`shared_luma` in force (None: every :func:`luma` call computes its own)
_SHARED_LUMA: contextvars.ContextVar[dict[int, tuple[np.ndarray, np.ndarray]] | None] = (
    contextvars.ContextVar("pixelmill_shared_luma", default=None))


@contextmanager
def shared_luma() -> Iterator[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Within it, :func:`luma` computes each image's luma once.

    :meth:`Pipeline.run <pixelmill.pipeline.Pipeline.run>` opens one per run, so a run of
    measuring steps on the same image (``sharpness``, ``brightness_contrast``, ``phash``...)
    shares one luma instead of each weighting the channels again. The memo keys on the image
    object, which it keeps alive; whoever may change the image in place (a pixel step)
    must ``clear()`` the yielded memo first.
    """
    memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    token = _SHARED_LUMA.set(memo)
    try:
        yield memo
    finally:
        _SHARED_LUMA.reset(token)
        memo.clear()


def luma(image: np.ndarray) -> np.ndarray:
    """:func:`gray_float` of ``image``, read-only; within :func:`shared_luma` computed once per
    image object (the same values either way)."""
    memo = _SHARED_LUMA.get()
    if memo is None:
        return gray_float(image)
    hit = memo.get(id(image))
    if hit is not None and hit[0] is image:
        return hit[1]
    gray = gray_float(image)  # always a new array (never a view of ``image``)
    gray.flags.writeable = False
    memo[id(image)] = (image, gray)
    return gray


def per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray],
                max_channels: int = 4) -> np.ndarray:
    """Apply ``fn`` to the whole array when it has at most ``max_channels``, else channel by channel.

    Results keep the input's shape (an H×W×1 input gives H×W×1 back).
    """
    if image.ndim == 2 or image.shape[2] <= max_channels:
        out = fn(image)
        if image.ndim == 3 and out.ndim == 2:
            out = out[..., None]
        return out
    return np.stack([fn(np.ascontiguousarray(image[..., i])) for i in range(image.shape[2])], -1)


def fold_periodic(kernel: np.ndarray, n: int) -> np.ndarray:
    """A centred odd-length 1-D kernel folded onto a period of ``n`` samples.

    Correlating a periodic signal with ``kernel`` equals correlating it with the folded kernel,
    whose taps are the sums of the taps ``n`` apart: for a ``wrap`` border it has at most
    ``n + 1`` taps whatever the kernel's length, so padding and work stay the image's size.
    """
    k = np.asarray(kernel, np.float64).ravel()
    r = k.size // 2
    if k.size <= n:
        return k
    q = n // 2  # offsets -q..q cover every residue mod n once (n odd) or -q twice (n even)
    folded = np.zeros(2 * q + 1)
    for d in range(-r, r + 1):
        c = (d + q) % n - q  # in -q..q-1 (n even) or -q..q (n odd)
        folded[c + q] += k[d + r]
    return folded


#: OpenCV border type giving exactly :func:`numpy.pad`'s fill for each border mode
_CV2_PAD = {
    "reflect": cv2.BORDER_REFLECT,  # numpy "symmetric"
    "mirror": cv2.BORDER_REFLECT_101,  # numpy "reflect"
    "nearest": cv2.BORDER_REPLICATE,  # numpy "edge"
    "wrap": cv2.BORDER_WRAP,
    "constant": cv2.BORDER_CONSTANT,
}


def pad_border(image: np.ndarray, width: tuple[int, int, int, int], mode: str,
               cval: float = 0.0) -> np.ndarray:
    """``numpy.pad(image, [(top, bottom), (left, right)], mode=NUMPY_PAD[mode])`` (constant:
    ``cval``), C-contiguous, of the same shape rank.

    OpenCV's ``copyMakeBorder`` fills the margin with the same pixels several times faster
    (a 2-megapixel RGB image: 0.2 ms against 2-5 ms). It is used where its fill is the same by
    construction: margins shorter than the image side (numpy and OpenCV both reflect once),
    at most 4 channels, and for ``constant`` a fill value the dtype holds exactly (numpy casts
    an out-of-range value unsafely, OpenCV saturates). Otherwise :func:`numpy.pad` runs.
    """
    top, bottom, left, right = (int(v) for v in width)
    h, w = image.shape[:2]
    c = 1 if image.ndim == 2 else image.shape[2]
    exact_fill = True
    if mode == "constant" and cval != 0:
        dtype = image.dtype
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            exact_fill = float(cval).is_integer() and info.min <= cval <= info.max
        else:
            exact_fill = dtype.kind == "f" and float(np.asarray(cval, dtype)) == cval
    if (c <= 4 and exact_fill and max(top, bottom) < h and max(left, right) < w
            and image.dtype.kind in "uif" and image.dtype.itemsize <= 8
            and image.dtype != np.int64 and image.dtype != np.uint32):
        out = cv2.copyMakeBorder(image, top, bottom, left, right, _CV2_PAD[mode],
                                 value=(float(cval),) * 4)
        return out.reshape((h + top + bottom, w + left + right, *image.shape[2:]))
    pads = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    kw = {"constant_values": cval} if mode == "constant" else {}
    return np.ascontiguousarray(np.pad(image, pads, mode=NUMPY_PAD[mode], **kw))


def with_border(
    image: np.ndarray,
    radius: int,
    mode: str,
    fn: Callable[[np.ndarray, int], np.ndarray],
    cval: float = 0.0,
) -> np.ndarray:
    """Run ``fn(array, cv2_border_type)`` honouring ``mode`` at the image edge.

    OpenCV's filters take every mode but ``wrap``; for ``wrap`` (and for ``constant`` with a
    non-zero ``cval``) the image is padded by ``radius`` (:func:`pad_border`) and the padded
    margin is cropped off the result, so the result is the same as a native border.
    """
    if mode in ("wrap",) or (mode == "constant" and cval != 0):
        r = int(radius)
        padded = pad_border(image, (r, r, r, r), mode, cval)
        out = fn(padded, cv2.BORDER_REFLECT)
        return out[r : r + image.shape[0], r : r + image.shape[1]]
    return fn(image, CV2_BORDER[mode])
