"""Decode and encode images; probe headers without decoding; refuse decompression bombs.

Arrays are H×W (gray) or H×W×C with channels last in RGB(A) order, uint8 or uint16 as stored.
(SKELETON — to be completed by the foundation work: EXIF, CMYK, TIFF pages, shrink-on-load.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pixelmill.errors import DecodeError, PixelLimitError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageInfo", "decode", "encode", "probe"]

DEFAULT_MAX_PIXELS = 500_000_000


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    channels: int
    bit_depth: int
    mode: str


def probe(data: bytes) -> ImageInfo:
    try:
        with Image.open(io.BytesIO(data)) as im:
            bands = len(im.getbands())
            depth = 16 if im.mode.startswith("I;16") or im.mode == "I" else 8
            return ImageInfo(im.format.lower(), im.width, im.height, bands, depth, im.mode)
    except Exception as e:
        raise DecodeError(f"not a readable image: {e}") from e


def decode(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    info = probe(data)
    if max_pixels and info.width * info.height > max_pixels:
        raise PixelLimitError(f"{info.width}x{info.height} exceeds the pixel limit {max_pixels}")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DecodeError("decoder could not read the image")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def encode(image: np.ndarray, format: str = "png", *, quality: int | None = None) -> bytes:
    fmt = format.lower().lstrip(".")
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    params = []
    if fmt in ("jpg", "jpeg") and quality is not None:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else fmt), arr, params)
    if not ok:
        raise DecodeError(f"cannot encode as {format}")
    return buf.tobytes()
