"""Encoding to jpg, png, tif and webp; never rescales values a format cannot hold."""

from __future__ import annotations

import io
from typing import Any

from pixelmill.codecs._imports import lazy_modules
from pixelmill.codecs._info import ENCODE_FORMATS
from pixelmill.errors import DecodeError, InvalidParameterError

__all__ = ["check_encodable", "encode"]

cv2, np, Image = lazy_modules(globals())


#: the largest width or height each format can store (libjpeg's JPEG_MAX_DIMENSION; WebP's
#: 14-bit sizes); PNG and TIFF hold any size pixelmill reads
_MAX_SIDE = {"jpg": 65500, "webp": 16383}


def _check_quality(quality: int | None, fmt: str) -> None:
    if quality is not None and (isinstance(quality, bool | np.bool_) or not (
            isinstance(quality, int | np.integer) and 1 <= quality <= 100)):
        raise InvalidParameterError(f"quality: expected an integer 1..100, got {quality!r}",
                                    field="quality")
    if quality is not None and fmt not in ("jpg", "webp"):
        raise InvalidParameterError(f"quality: {fmt} is lossless and takes no quality",
                                    field="quality")


def check_encodable(shape: tuple[int, ...], dtype: Any, format: str = "png", *,
                    quality: int | None = None) -> str:
    """Raise :class:`~pixelmill.errors.InvalidParameterError` when an array of ``shape`` and
    ``dtype`` cannot be written as ``format`` (before computing it); return the format's
    canonical name (``jpg``, ``png``, ``tif``, ``webp``)."""
    fmt = {"jpeg": "jpg", "tiff": "tif"}.get(format.lower().lstrip("."), format.lower().lstrip("."))
    if fmt not in ENCODE_FORMATS:
        raise InvalidParameterError(
            f"format: expected one of {', '.join(ENCODE_FORMATS)}, got {format!r}", field="format")
    _check_quality(quality, fmt)
    ndim = len(shape)
    channels = 1 if ndim == 2 else shape[2] if ndim == 3 else 0
    if channels not in (1, 2, 3, 4):
        raise InvalidParameterError(f"image: expected H×W or H×W×C (C ≤ 4), got shape {shape}",
                                    field="image")
    if 0 in shape[:2]:
        raise InvalidParameterError(f"image: cannot write an empty image (shape {shape})",
                                    field="image")
    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(shape[:2]) > limit:
        raise InvalidParameterError(
            f"image: {fmt} holds at most {limit} pixels a side, got {shape[1]}×{shape[0]}; "
            "use png or tif", field="image")
    allowed = {"jpg": ("uint8",), "webp": ("uint8",), "png": ("uint8", "uint16"),
               "tif": ("uint8", "uint16", "float32")}[fmt]
    if np.dtype(dtype).name not in allowed:
        raise InvalidParameterError(
            f"image: {fmt} cannot hold {np.dtype(dtype)} pixels (allowed: {', '.join(allowed)}); "
            "convert explicitly", field="image")
    if fmt == "jpg" and channels in (2, 4):
        raise InvalidParameterError("image: jpg cannot hold an alpha channel; drop it or use png",
                                    field="image")
    return fmt


def encode(image: Any, format: str = "png", *, quality: int | None = None,
           icc_profile: bytes | None = None) -> bytes:
    """Encode an array as ``jpg``, ``png``, ``tif`` or ``webp``.

    ``quality`` (1–100) applies to jpg (default 95) and webp (default lossless: every value
    kept, the colour of fully transparent pixels included). jpg and webp hold 8-bit L/RGB(A)
    only (jpg: no alpha; webp has no gray model: gray is stored, and read back, as RGB); jpg
    holds at most 65500 pixels a side, webp 16383; png holds 8/16-bit; tif also float32. Values
    are never rescaled: an array a format cannot hold raises
    :class:`~pixelmill.errors.InvalidParameterError` (:func:`check_encodable` says so first).

    ``icc_profile`` (the bytes of an ICC profile, e.g. :func:`~pixelmill.codecs.icc_profile` of
    the input) is embedded in the file: the values are in that colour space, not sRGB. A
    profile of another colour model than the file stores (an RGB profile on a gray PNG, a gray
    one on a WebP, which stores gray as RGB) is left out, as the formats require, and so is
    one that is not a well-formed image profile (cut short, a device link; see
    :func:`~pixelmill.codecs.icc_fits`).
    """
    arr = np.asarray(image)
    fmt = check_encodable(arr.shape, arr.dtype, format, quality=quality)
    if fmt == "tif":  # tifffile writes the profile itself
        return _encode(arr, fmt, quality, embedded_profile(icc_profile, arr.shape, fmt))
    return with_profile(_encode(arr, fmt, quality, None), fmt, icc_profile, arr.shape)


def with_profile(blob: bytes, fmt: str, icc_profile: bytes | None,
                 shape: tuple[int, ...]) -> bytes:
    """``blob`` (a ``fmt`` file of an array of ``shape``) with ``icc_profile`` embedded, as far
    as :func:`embedded_profile` lets it be."""
    icc_profile = embedded_profile(icc_profile, shape, fmt)
    if not icc_profile:
        return blob
    from pixelmill.codecs._icc import embed_icc

    return embed_icc(blob, fmt, icc_profile, shape[1], shape[0])


def embedded_profile(icc_profile: bytes | None, shape: tuple[int, ...], fmt: str) -> bytes | None:
    """The profile :func:`encode` writes into a ``fmt`` file of an array of ``shape``: None for
    one whose colour model the file does not store (webp stores gray as RGB) or that is not a
    well-formed image profile (colour-managed viewers reject those); one with bytes past the
    size its header states, cut to that size."""
    from pixelmill.codecs._icc import icc_fits, well_formed_icc

    channels = 1 if len(shape) == 2 else shape[2]
    stored = channels + 2 if fmt == "webp" and channels < 3 else channels
    return well_formed_icc(icc_profile) if icc_fits(icc_profile, stored) else None


def _encode(arr: Any, fmt: str, quality: int | None, icc_profile: bytes | None) -> bytes:
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim == 3 and channels == 1:
        arr = arr[..., 0]
    if fmt == "tif":
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, np.ascontiguousarray(arr),
                         photometric="minisblack" if channels <= 2 else "rgb",
                         extrasamples=("unassalpha",) if channels in (2, 4) else None,
                         compression="zlib", iccprofile=icc_profile or None)
        return buf.getvalue()
    if channels == 2 and fmt == "png":  # gray+alpha: OpenCV cannot write it
        import imagecodecs

        return bytes(imagecodecs.png_encode(np.ascontiguousarray(arr)))
    if fmt == "webp" and (quality is None or channels == 2):
        # Pillow: gray+alpha (OpenCV cannot write it), and lossless with ``exact`` (OpenCV's
        # lossless WebP zeroes the colour of fully transparent pixels)
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(  # uint8 L, LA, RGB or RGBA
            out, "WEBP", lossless=quality is None, quality=quality or 100, exact=True)
        return out.getvalue()
    params: list[int] = []
    if fmt == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality or 95)]
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    bgr = arr
    if channels == 3:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode("." + fmt, bgr, params)
    if not ok:  # pragma: no cover - OpenCV refuses only what was checked above
        raise DecodeError(f"OpenCV could not encode a {arr.dtype} {arr.shape} image as {fmt}")
    return buf.tobytes()
