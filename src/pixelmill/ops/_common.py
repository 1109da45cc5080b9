"""Conventions shared by the op families: border modes, dtype checks, channel handling."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from pixelmill.errors import InvalidParameterError

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

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32)


def check_image(image: np.ndarray, op_name: str, dtypes=SUPPORTED_DTYPES) -> np.ndarray:
    """Raise a clear error for arrays an op cannot take (wrong ndim or dtype)."""
    if not isinstance(image, np.ndarray):
        raise InvalidParameterError(f"{op_name}: expected a NumPy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InvalidParameterError(
            f"{op_name}: expected an H×W or H×W×C array, got shape {image.shape}"
        )
    if image.dtype.type not in dtypes:
        names = ", ".join(np.dtype(d).name for d in dtypes)
        raise InvalidParameterError(f"{op_name}: dtype {image.dtype} not supported (use {names})")
    return image


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
