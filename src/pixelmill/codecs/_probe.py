"""Header probing: format, size, channels, bit depth, pages, orientation — no pixel decoded.

PNG and JPEG headers are parsed here directly (the hot path of ``scan``: no OpenCV, Pillow or
NumPy import); TIFF through tifffile (BigTIFF included); the rest through Pillow's lazy open.
"""

from __future__ import annotations

import io
import re
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
#: baseline and extended sequential frames with Huffman coding: their data has a least size
_JPEG_SEQUENTIAL_HUFFMAN = {0xC0, 0xC1}
#: the (first fill byte of the) marker that ends entropy-coded data: not a stuffed 0xFF00 nor a
#: restart marker (a one-byte literal prefix keeps the search at ~1 ms per MB)
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
#: marker segments allowed between the scans of a sequential JPEG (tables, restart interval,
#: number of lines, comments, application data)
_JPEG_BETWEEN_SCANS = {0xC4, 0xDB, 0xDD, 0xDC, 0xFE, *range(0xE0, 0xF0)}


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
    elif trns and ctype == 0:  # a gray key colour: gray + alpha, as RGB with a key is RGBA
        channels = 2
    stored = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[ctype]
    return ImageInfo("png", width, height, channels, depth, MODES[channels], 1, orientation,
                     stored)


def png_gray_key(data: bytes) -> int | None:
    """The transparent gray level of a gray PNG's ``tRNS`` chunk, in its stored bit depth
    (None when it has none)."""
    pos = 33
    while pos + 8 <= len(data):
        n, cid = struct.unpack_from(">I4s", data, pos)
        if cid == b"IDAT":
            return None
        if cid == b"tRNS" and n >= 2:
            return int(struct.unpack_from(">H", data, pos + 8)[0])
        pos += 12 + n
    return None


def _probe_jpeg(data: bytes, whole: bool = False) -> ImageInfo:
    pos, n, orientation = 2, len(data), 1
    info: ImageInfo | None = None
    frame: dict[int, tuple[int, int]] | None = None
    kind = ""
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            if info is not None:  # past the frame header: libjpeg skips such bytes too
                return info
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
        elif marker in _JPEG_SOF and info is None:
            if pos + 10 > n:
                break
            precision, height, width, comps = struct.unpack_from(">BHHB", data, pos + 4)
            if width == 0 or height == 0 or comps not in (1, 3, 4):
                raise DecodeError(f"invalid JPEG frame header ({width}x{height}, {comps} components)")
            stored = {1: "L", 3: "RGB", 4: "CMYK"}[comps]
            channels = 1 if comps == 1 else 3
            info = ImageInfo("jpg", width, height, channels, precision, MODES[channels], 1,
                             orientation, stored)
            if marker not in _JPEG_SEQUENTIAL_HUFFMAN and marker != 0xC2:
                return info  # lossless, hierarchical, arithmetic: no size rule checked
            frame = _jpeg_frame(data, pos, width, height, comps)
            if frame is None:
                return info
            kind = ("baseline" if marker == 0xC0 else "sequential" if marker == 0xC1
                    else "progressive")
        elif marker == 0xDA:
            if info is not None and frame is not None:
                if kind == "progressive":
                    _check_progressive_data(data, pos, frame, info, whole)
                else:
                    _check_sequential_data(data, pos, frame, info, kind, whole)
                return info
            break
        elif marker == 0xD9 and info is not None:
            return info
        pos += 2 + length
    if info is not None:  # the bytes end before the image data (a head of the file)
        return info
    raise DecodeError("truncated JPEG header (no frame header found)")


def _jpeg_frame(data: bytes, pos: int, width: int, height: int,
                comps: int) -> dict[int, tuple[int, int]] | None:
    """Component id -> (non-interleaved blocks, interleaved blocks) of a frame header at ``pos``.

    ``None`` when the header is cut short by the end of ``data``; bad sampling factors raise.
    """
    if pos + 10 + 3 * comps > len(data):
        return None
    sampling = [(data[pos + 10 + 3 * i], data[pos + 11 + 3 * i] >> 4,
                 data[pos + 11 + 3 * i] & 15) for i in range(comps)]
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for _, h, v in sampling):
        raise DecodeError("invalid JPEG frame header (sampling factors outside 1..4)")
    hmax, vmax = max(h for _, h, _ in sampling), max(v for _, _, v in sampling)
    mcus = -(-width // (8 * hmax)) * -(-height // (8 * vmax))
    frame = {}
    for cid, h, v in sampling:
        cw, ch = -(-width * h // hmax), -(-height * v // vmax)
        frame[cid] = (-(-cw // 8) * -(-ch // 8), mcus * h * v)
    return frame


def _check_sequential_data(data: bytes, sos: int, frame: dict[int, tuple[int, int]],
                           info: ImageInfo, kind: str, whole: bool) -> None:
    """Refuse a sequential Huffman JPEG whose entropy-coded data is too short for its size.

    Every 8×8 block of every component holds at least a DC code and an AC code or an end of
    block, each at least one bit long: a frame of ``blocks`` blocks needs ``blocks / 4`` bytes
    at least (whatever its Huffman tables). The data is counted from the first scan up to the
    end-of-image marker; bytes that end before that marker (a head of the file, or a
    truncated one) are judged only when they are the ``whole`` file. Raises DecodeError.
    """
    n, pos = len(data), sos
    # the quick answer for a sound file (no scan for markers through its image data): from the
    # first scan to the last end-of-image marker there are twice the bytes the largest block
    # count needs, and 64 KiB more than any segments between scans could take
    eoi = data.rfind(b"\xff\xd9")
    if eoi < sos and not whole:
        return  # a head of the file: nothing to judge
    end = eoi if eoi > sos else n
    if end - sos >= sum(max(counts) for counts in frame.values()) // 2 + 65536:
        return
    coded: dict[int, int] = {}  # blocks of each component met in a scan
    entropy, terminated = 0, False
    try:
        while not terminated:
            (length,) = struct.unpack_from(">H", data, pos + 2)
            ns = data[pos + 4]
            start = pos + 2 + length
            if start > n or length != 6 + 2 * ns:
                return
            for cid in data[pos + 5 : pos + 5 + 2 * ns : 2]:
                if cid not in frame:
                    return
                coded[cid] = frame[cid][1 if ns > 1 else 0]
            found = _JPEG_MARKER.search(data, start)
            if found is None:
                entropy += n - start
                break
            entropy += found.start() - start
            pos = found.start()
            while data[pos + 1] == 0xFF:  # fill bytes before the marker
                pos += 1
            while True:  # the segments between two scans, up to the next scan or the end
                marker = data[pos + 1]
                if marker == 0xD9:
                    terminated = True
                    break
                if marker == 0xDA:
                    break
                if marker not in _JPEG_BETWEEN_SCANS:
                    return
                pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
                while pos + 1 < n and data[pos] == 0xFF and data[pos + 1] == 0xFF:
                    pos += 1
                if pos + 2 > n or data[pos] != 0xFF:
                    return
    except (struct.error, IndexError):
        return
    if not (terminated or whole):
        return
    blocks = sum(coded.get(cid, counts[0]) for cid, counts in frame.items())
    if entropy * 4 >= blocks:
        return
    raise DecodeError(
        f"{'corrupt' if terminated else 'truncated'} JPEG: {_size(entropy)} of image data "
        f"cannot hold {info.width}×{info.height} pixels (a {kind} JPEG needs at least "
        f"{_size(-(-blocks // 4))})")


def _check_progressive_data(data: bytes, sos: int, frame: dict[int, tuple[int, int]],
                            info: ImageInfo, whole: bool) -> None:
    """Refuse a progressive Huffman JPEG whose data is too short for its size.

    Its AC scans can code a band of blocks in a few bits (end-of-band runs), but its first DC
    scans code every block of every component with a Huffman code of at least one bit: the
    bytes from the first scan to the end-of-image marker (tables between scans included, which
    only adds) must hold ``blocks / 8``. A 541-byte file claiming 20000×20000 made libjpeg
    allocate 2.4 GB before it warned. Raises DecodeError.
    """
    eoi = data.rfind(b"\xff\xd9")
    if eoi < sos and not whole:
        return  # a head of the file: nothing to judge
    end = eoi if eoi > sos else len(data)
    blocks = sum(min(counts) for counts in frame.values())
    if (end - sos) * 8 >= blocks:
        return
    raise DecodeError(
        f"{'corrupt' if eoi > sos else 'truncated'} JPEG: {_size(end - sos)} of image data "
        f"cannot hold {info.width}×{info.height} pixels (a progressive JPEG needs at least "
        f"{_size(-(-blocks // 8))})")


def _size(n: int) -> str:
    """A byte count for a reason: ``812 bytes``, ``1.2 KB``, ``2.3 MB`` (powers of 1000)."""
    if n < 1000:
        return f"{n} byte{'s' if n != 1 else ''}"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 999.95 or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


#: the first four bytes of a TIFF (little/big endian) and a BigTIFF
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _probe_tiff(data: bytes) -> ImageInfo:
    return probe_tiff_file(io.BytesIO(data))


def probe_tiff_file(f: Any) -> ImageInfo:
    """:func:`probe` of a TIFF/BigTIFF read through a seekable binary file object: only its
    header and IFDs are read (kilobytes, wherever they lie, of a file of any size)."""
    import tifffile

    try:
        with tifffile.TiffFile(f) as tif:
            page = tif.pages.first
            pages = len(tif.pages)
            channels, stored = _tiff_layout(page)
            tags = page.tags
            orientation = int(tags["Orientation"].value) if "Orientation" in tags else 1
            depth = int(page.bitspersample)
            return ImageInfo("tif", int(page.imagewidth), int(page.imagelength), channels,
                             depth, MODES.get(channels, ""), pages,
                             orientation if 1 <= orientation <= 8 else 1, stored)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"not a readable TIFF: {e}") from e


def _tiff_layout(page) -> tuple[int, str]:
    """(channels of the decoded array, stored mode) of a TIFF page: every sample is a channel
    (more than 4 are reported as they are, and :func:`~pixelmill.codecs.decode` refuses them)."""
    photometric = int(page.photometric)
    spp = int(page.samplesperpixel)
    if photometric == 3:  # palette
        return 3, "P"
    if photometric == 5:  # separated (CMYK, then extra samples): CMYK becomes RGB
        return (spp - 1 if spp > 4 else 3), "CMYK" if spp <= 4 else f"CMYK+{spp - 4}"
    if photometric in (0, 1):  # min-is-white / min-is-black, then extra samples
        return spp, {1: "L", 2: "LA"}.get(spp, f"L+{spp - 1}")
    if spp in (3, 4):
        return spp, MODES[spp]
    if spp > 4:
        return spp, f"{spp} samples"
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


def _pnm_maxval(data: bytes) -> int:
    """The maxval of a binary or plain PGM/PPM header (1 for a PBM bitmap, 0 unparsed)."""
    if data[:2] in (b"P1", b"P4"):
        return 1
    tokens: list[bytes] = []
    for line in bytes(data[:512]).split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 4:
            break
    try:
        return int(tokens[3])
    except (IndexError, ValueError):
        return 0


def probe(data: bytes, *, whole: bool = False) -> ImageInfo:
    """Read an image's header (no pixel is decoded).

    ``data`` may be only the first bytes of the file (64 KiB hold a JPEG or PNG header). A
    baseline or extended sequential JPEG whose image data is too short for the size its header
    claims (at least 2 bits per 8×8 block) is refused when the data ends at its end-of-image
    marker, or, with ``whole=True`` (``data`` is the whole file), when it ends anywhere.

    Raises :class:`~pixelmill.errors.DecodeError` when the bytes are not an image this module
    can read, with the reason in the message.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    head = bytes(data[:8])
    if head == _PNG_SIG:
        return _probe_png(data)
    if head[:3] == b"\xff\xd8\xff":
        return _probe_jpeg(data, whole)
    if head[:4] in TIFF_MAGIC:
        return _probe_tiff(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = _PIL_FORMATS.get(im.format or "", (im.format or "unknown").lower())
            channels, depth = _pil_layout(im)
            orientation = 1
            if fmt == "webp" and "exif" in im.info:
                orientation = exif_orientation(im.info["exif"])
            pages = int(getattr(im, "n_frames", 1) or 1)
            stored = im.mode
            if fmt == "pnm" and _pnm_maxval(data) > 255:  # Pillow reads 16-bit P6 as 8-bit
                depth, stored = 16, "I;16"
            return ImageInfo(fmt, im.width, im.height, channels, depth, MODES[channels], pages,
                             orientation, stored)
    except DecodeError:
        raise
    except Exception as e:
        kind = "not an image" if isinstance(e, Image.UnidentifiedImageError) else "unreadable"
        raise DecodeError(f"{kind}: {e}" if kind == "unreadable" else
                          "not a recognised image format") from e
