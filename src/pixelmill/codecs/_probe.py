"""Header probing: format, size, channels, bit depth, pages, orientation — no pixel decoded.

PNG and JPEG headers are parsed here directly (the hot path of ``scan``: no OpenCV, Pillow or
NumPy import); TIFF through tifffile (BigTIFF included); the rest through Pillow's lazy open.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from pixelmill.codecs._imports import lazy_modules
from pixelmill.codecs._info import MODES, ImageInfo
from pixelmill.errors import DecodeError

__all__ = ["exif_orientation", "probe"]

cv2, np, Image = lazy_modules(globals())

_PIL_FORMATS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "BMP": "bmp", "DIB": "bmp",
                "WEBP": "webp", "GIF": "gif", "PPM": "pnm"}
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def exif_orientation(exif: bytes) -> int:
    """Orientation (tag 0x0112) from a TIFF-structured EXIF block; 1 when absent or unreadable."""
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(end + "I", exif, 4)
        (count,) = struct.unpack_from(end + "H", exif, ifd)
        for i in range(count):
            tag, typ, _, value = struct.unpack_from(end + "HHI4s", exif, ifd + 2 + 12 * i)
            if tag == 0x0112:
                v = struct.unpack_from(end + "H", value)[0] if typ == 3 else value[0]
                return v if 1 <= v <= 8 else 1
    except struct.error:
        return 1
    return 1


def _probe_png(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeError("truncated PNG header")
    import zlib

    (length,) = struct.unpack_from(">I", data, 8)
    if length != 13 or zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        raise DecodeError("corrupt PNG header (bad IHDR CRC)")
    width, height, depth, ctype, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if width == 0 or height == 0 or ctype not in _PNG_CHANNELS or interlace > 1:
        raise DecodeError(f"invalid PNG header ({width}x{height}, color type {ctype})")
    channels, orientation, trns, pos = _PNG_CHANNELS[ctype], 1, False, 33
    while pos + 8 <= len(data):  # walk chunk headers up to the pixel data
        n, cid = struct.unpack_from(">I4s", data, pos)
        if cid == b"IDAT":
            break
        if cid == b"tRNS":
            trns = True
        elif cid == b"eXIf":
            orientation = exif_orientation(data[pos + 8 : pos + 8 + n])
        pos += 12 + n
    if trns and ctype in (2, 3):
        channels = 4
    stored = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[ctype]
    return ImageInfo("png", width, height, channels, depth, MODES[channels], 1, orientation,
                     stored)


def _probe_jpeg(data: bytes) -> ImageInfo:
    pos, n, orientation = 2, len(data), 1
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise DecodeError("corrupt JPEG: marker expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            orientation = exif_orientation(data[pos + 10 : pos + 2 + length])
        elif marker in _JPEG_SOF:
            if pos + 10 > n:
                break
            precision, height, width, comps = struct.unpack_from(">BHHB", data, pos + 4)
            if width == 0 or height == 0 or comps not in (1, 3, 4):
                raise DecodeError(f"invalid JPEG frame header ({width}x{height}, {comps} components)")
            stored = {1: "L", 3: "RGB", 4: "CMYK"}[comps]
            channels = 1 if comps == 1 else 3
            return ImageInfo("jpg", width, height, channels, precision, MODES[channels], 1,
                             orientation, stored)
        elif marker == 0xDA:
            break
        pos += 2 + length
    raise DecodeError("truncated JPEG header (no frame header found)")


def _probe_tiff(data: bytes) -> ImageInfo:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            pages = len(tif.pages)
            channels, stored = _tiff_layout(page)
            tags = page.tags
            orientation = int(tags["Orientation"].value) if "Orientation" in tags else 1
            depth = int(page.bitspersample)
            return ImageInfo("tif", int(page.imagewidth), int(page.imagelength), channels,
                             depth, MODES[channels], pages, orientation if 1 <= orientation <= 8
                             else 1, stored)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"not a readable TIFF: {e}") from e


def _tiff_layout(page) -> tuple[int, str]:
    """(decoded channels, stored mode) of a TIFF page."""
    photometric = int(page.photometric)
    spp = int(page.samplesperpixel)
    if photometric == 3:  # palette
        return 3, "P"
    if photometric == 5:  # separated (CMYK)
        return (4 if spp > 4 else 3), "CMYK"
    if photometric in (0, 1):  # min-is-white / min-is-black
        return min(spp, 2), "L" if spp == 1 else "LA"
    if spp in (3, 4):
        return spp, MODES[spp]
    if spp > 4:
        return 4, f"{spp} samples"
    raise DecodeError(f"unsupported TIFF layout (photometric {photometric}, {spp} samples)")


def _pil_layout(im: Any) -> tuple[int, int]:
    """(decoded channels, bit depth) for a Pillow image opened lazily."""
    mode = im.mode
    if mode in ("1", "L", "I;16", "I;16L", "I;16B", "I;16N", "F", "I"):
        return 1, {"1": 1, "L": 8, "F": 32, "I": 32}.get(mode, 16)
    if mode in ("LA", "La"):
        return 2, 8
    if mode in ("P", "PA"):
        return (4 if mode == "PA" or "transparency" in im.info else 3), 8
    if mode in ("RGBA", "RGBa"):
        return 4, 8
    return 3, 8  # RGB, RGBX, CMYK, YCbCr, LAB, HSV


def probe(data: bytes) -> ImageInfo:
    """Read an image's header (no pixel is decoded).

    Raises :class:`~pixelmill.errors.DecodeError` when the bytes are not an image this module
    can read, with the reason in the message.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    head = bytes(data[:8])
    if head == _PNG_SIG:
        return _probe_png(data)
    if head[:3] == b"\xff\xd8\xff":
        return _probe_jpeg(data)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _probe_tiff(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = _PIL_FORMATS.get(im.format or "", (im.format or "unknown").lower())
            channels, depth = _pil_layout(im)
            orientation = 1
            if fmt == "webp" and "exif" in im.info:
                orientation = exif_orientation(im.info["exif"])
            pages = int(getattr(im, "n_frames", 1) or 1)
            return ImageInfo(fmt, im.width, im.height, channels, depth, MODES[channels], pages,
                             orientation, im.mode)
    except DecodeError:
        raise
    except Exception as e:
        kind = "not an image" if isinstance(e, Image.UnidentifiedImageError) else "unreadable"
        raise DecodeError(f"{kind}: {e}" if kind == "unreadable" else
                          "not a recognised image format") from e
