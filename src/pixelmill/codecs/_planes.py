"""A 4:2:0 JPEG's own Y, Cb and Cr planes: decoded without colour conversion, encoded back.

A JPEG stores luma at full size and the two chroma planes at half size each way (4:2:0, what
cameras and phones write). Decoding to RGB upsamples the chroma and converts every pixel;
encoding a JPEG converts back and downsamples again. Linear, per-channel filters (an area
resize, a gaussian) commute with that conversion, so a JPEG → JPEG job of such steps can run
on the planes instead: a quarter of the chroma pixels to filter and no conversion either way.
``pixelmill.jobs`` does so where a pipeline allows it (see ``jobs/_planar.py``).

The planes come from a small C extension over libjpeg-turbo (``_jpegyuv.c``), built when
pixelmill is installed where a C compiler and the libjpeg headers are; without it
:func:`planes_available` is False and every JPEG is decoded to RGB as before.
"""

from __future__ import annotations

from typing import Any

from pixelmill.codecs._decode import (
    apply_orientation,
    check_channels,
    check_decode_options,
    check_pixel_limit,
)
from pixelmill.codecs._imports import lazy_modules
from pixelmill.codecs._info import DEFAULT_MAX_PIXELS, ImageInfo
from pixelmill.codecs._probe import probe

__all__ = ["decode_planes", "encode_planes", "planes_available"]

cv2, np, Image = lazy_modules(globals())

try:
    from pixelmill.codecs import _jpegyuv
except ImportError:  # built without a C compiler or libjpeg headers: RGB decoding only
    _jpegyuv = None


def planes_available() -> bool:
    """Whether this installation decodes JPEGs to their Y/Cb/Cr planes (the C extension was
    built) and encodes planes (simplejpeg)."""
    if _jpegyuv is None:
        return False
    try:
        import simplejpeg  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency
        return False
    return True


def decode_planes(data: bytes, *, reduce: int = 1,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  info: ImageInfo | None = None) -> tuple[Any, Any, Any] | None:
    """The Y, Cb, Cr planes (uint8, H×W views) of an 8-bit 4:2:0 JPEG at 1/``reduce`` scale.

    Luma is ``ceil(height / reduce)`` × ``ceil(width / reduce)``; chroma is half that each way
    rounded up, or (at reduce 2, 4 and 8, where libjpeg-turbo scales chroma up in its inverse
    DCT instead of upsampling it) the luma size. The planes are turned upright for the EXIF
    orientation, as :func:`~pixelmill.codecs.decode` turns pixels (a quarter turn or a mirror
    moves each chroma pixel with its 2×2 luma pixels). None — decode to RGB instead — for any
    other JPEG (gray, 4:4:4, 4:2:2, CMYK, 12-bit, lossless), an EXIF orientation other than 1
    on a full-size decode of odd width or height (the chroma pixel at the odd edge, half
    outside the image, would land on the wrong side), a missing extension, and any damage
    libjpeg reports, even one it recovers from (:func:`~pixelmill.codecs.decode` then names
    it). The pixel limit and the header checks are :func:`~pixelmill.codecs.decode`'s, before
    any pixel is decoded; ``info`` is as there.
    """
    check_decode_options(max_pixels=max_pixels, reduce=reduce)
    if info is None:
        info = probe(data, whole=True)
    check_pixel_limit(info, max_pixels)
    check_channels(info.channels)
    upright = info.orientation in (None, 0, 1)
    if (_jpegyuv is None or info.format != "jpg" or info.stored_mode != "RGB"
            or info.bit_depth != 8
            or (not upright and reduce == 1 and (info.width % 2 or info.height % 2))):
        return None
    got = _jpegyuv.decode_planes(data, reduce)
    if got is None:
        return None
    planes = []
    for buf, width, height, stride, rows in got:
        planes.append(np.frombuffer(buf, np.uint8).reshape(rows, stride)[:height, :width])
    y = planes[0]
    if y.shape != info.shape(apply_exif=False, reduce=reduce)[:2]:
        return None  # pragma: no cover - libjpeg's scaled sizes are these
    if not upright:
        planes = [apply_orientation(p, info.orientation) for p in planes]
    return planes[0], planes[1], planes[2]


def encode_planes(y: Any, cb: Any, cr: Any, *, quality: int | None = None,
                  icc_profile: bytes | None = None) -> bytes:
    """A 4:2:0 JPEG of these planes: chroma must be ``ceil(h/2)`` × ``ceil(w/2)`` of luma's
    ``h`` × ``w``. ``quality`` as :func:`~pixelmill.codecs.encode` takes it (default 95, libjpeg's
    scaling of its tables).

    Encoded by the extension with libjpeg's accurate integer DCT, as OpenCV encodes RGB: the
    planes of a decoded JPEG written back at its quality come back within rounding (Y 71-76 dB
    on photos), where simplejpeg's plane encoder (the fallback without the extension) loses
    some 15 dB of that on luma (56 dB; ``tests/jobs/test_planar.py``)."""
    from pixelmill.codecs._encode import _check_quality, with_profile

    _check_quality(quality, "jpg")
    if any(np.asarray(p).dtype != np.uint8 for p in (y, cb, cr)):
        raise ValueError("planes: expected uint8 Y/Cb/Cr planes, got "
                         f"{'/'.join(str(np.asarray(p).dtype) for p in (y, cb, cr))}")
    h, w = y.shape
    if cb.shape != cr.shape or cb.shape != (-(-h // 2), -(-w // 2)):
        raise ValueError(f"planes: chroma {cb.shape}/{cr.shape} is not 4:2:0 of luma {y.shape}")
    q = int(quality or 95)
    if _jpegyuv is None:
        import simplejpeg

        blob = simplejpeg.encode_jpeg_yuv_planes(
            np.ascontiguousarray(y), np.ascontiguousarray(cb), np.ascontiguousarray(cr),
            quality=q)
    else:  # whole 16×16 MCUs, the edge replicated as libjpeg pads an RGB image's
        rows, cols = -(-h // 16), -(-w // 16)
        py = _edge_padded(y, rows * 16, cols * 16)
        pb, pr = _edge_padded(cb, rows * 8, cols * 8), _edge_padded(cr, rows * 8, cols * 8)
        blob = _jpegyuv.encode_planes(py, pb, pr, w, h, py.shape[1], pb.shape[1], q)
    return with_profile(blob, "jpg", icc_profile, (h, w, 3))


def _edge_padded(plane: Any, rows: int, cols: int) -> Any:
    """``plane`` (uint8 h×w) in a C-ordered rows×cols array, its last row and column repeated."""
    h, w = plane.shape
    if (h, w) == (rows, cols) and plane.flags.c_contiguous and plane.dtype == np.uint8:
        return plane
    out = np.empty((rows, cols), np.uint8)
    out[:h, :w] = plane
    out[:h, w:] = plane[:, w - 1 : w]
    out[h:] = out[h - 1 : h]
    return out
