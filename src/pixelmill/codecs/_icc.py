"""ICC colour profiles: read from an encoded image, written into an encoded one.

Phones and cameras tag their photos with the colour space the pixel values are in (Display P3,
Adobe RGB, ...). Decoding returns the values as stored; an output written without the profile
is read as sRGB by every viewer, so its colours shift (a P3 photo's thumbnail looks dull).
A batch job and ``pixelmill upscale`` therefore write the input's profile into the output when
the output's values are still in that space (README, "Keeps colour profiles").

Profiles are read from JPEG (APP2 ``ICC_PROFILE`` segments, in sequence), PNG (``iCCP``),
WebP (``ICCP``) and TIFF (tag 34675), and written the same way; Pillow reads them back
identically (tests). Malformed or hostile profile data is ignored (no profile), never an error.
"""

from __future__ import annotations

import io
import zlib
from typing import Any

__all__ = ["MAX_ICC_BYTES", "embed_icc", "icc_colour_space", "icc_description", "icc_fits",
           "icc_profile", "icc_profile_of_file", "well_formed_icc"]

#: profiles larger than this are ignored (real ones are 0.5–60 KB; a compressed iCCP chunk
#: must not inflate without bound)
MAX_ICC_BYTES = 4 << 20

_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_ICC_CHUNK = 65535 - 2 - len(_JPEG_ICC) - 2  # a segment's payload after its header
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def icc_profile(data: bytes) -> bytes | None:
    """The ICC profile embedded in an encoded image, or None (none, unreadable, or another
    format)."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_icc(data)
        if data[:8] == _PNG_SIGNATURE:
            return _png_icc(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_icc(data)
        if data[:4] in _TIFF_MAGIC:
            return _tiff_icc(io.BytesIO(data))
    except Exception:  # a damaged header: the decoder says what is wrong, not this
        return None
    return None


def icc_profile_of_file(f: Any, head: int = 1 << 20) -> bytes | None:
    """The ICC profile of the image in the seekable binary file ``f``, read without the pixels
    (an image too large to read whole): a TIFF's tag through its IFD, the other formats' from
    their first ``head`` bytes (JPEG APP2 segments, PNG ``iCCP`` and WebP ``ICCP`` chunks come
    before the image data; one cut short there is no profile)."""
    try:
        f.seek(0)
        magic = f.read(4)
        f.seek(0)
        return _tiff_icc(f) if magic in _TIFF_MAGIC else icc_profile(f.read(head))
    except Exception:
        return None


def icc_description(profile: bytes | None) -> str | None:
    """A profile's name as colour tools show it (its ``desc`` tag: ``Display P3``, ``Adobe RGB
    (1998)``, ``sRGB IEC61966-2.1``), from an ICC v2 ``desc`` or v4 ``mluc`` (first record);
    its colour space when it has none; None for no or a malformed profile."""
    profile = well_formed_icc(profile)
    if profile is None:
        return None
    count = int.from_bytes(profile[128:132], "big")
    for i in range(132, 132 + 12 * count, 12):
        if profile[i:i + 4] != b"desc":
            continue
        start = int.from_bytes(profile[i + 4:i + 8], "big")
        tag = profile[start:start + int.from_bytes(profile[i + 8:i + 12], "big")]
        text = ""
        if tag[:4] == b"desc" and len(tag) >= 12:  # v2: ASCII count (with its NUL), ASCII
            n = int.from_bytes(tag[8:12], "big")
            text = tag[12:12 + n].split(b"\x00", 1)[0].decode("latin-1")
        elif tag[:4] == b"mluc" and len(tag) >= 28:  # v4: records of UTF-16BE strings
            length = int.from_bytes(tag[20:24], "big")
            offset = int.from_bytes(tag[24:28], "big")
            text = tag[offset:offset + length].decode("utf-16-be", "replace")
        text = "".join(ch for ch in text if ch.isprintable()).strip()[:200]
        if text:
            return text
    return icc_colour_space(profile) or None


def icc_colour_space(profile: bytes) -> str:
    """The data colour space a profile's header names (``RGB``, ``GRAY``, ``CMYK``, ``Lab``,
    ...; empty when the header is too short)."""
    return bytes(profile[16:20]).decode("latin-1").strip() if len(profile) >= 128 else ""


#: profile classes that describe an image's colour space (input, display, output, colour
#: space); device links, abstract and named-colour profiles are never an image's profile
_IMAGE_CLASSES = (b"scnr", b"mntr", b"prtr", b"spac")


def icc_fits(profile: bytes | None, channels: int) -> bool:
    """Whether ``profile`` is a well-formed profile that describes images of ``channels``
    channels (alpha aside): an RGB profile 3 or 4, a gray one 1 or 2."""
    profile = well_formed_icc(profile)
    if profile is None or bytes(profile[12:16]) not in _IMAGE_CLASSES:
        return False
    space = icc_colour_space(profile)
    return (space == "RGB" and channels in (3, 4)) or (space == "GRAY" and channels in (1, 2))


def well_formed_icc(profile: bytes | None) -> bytes | None:
    """``profile`` as colour-management engines read it (the size its header states), or None
    when it is not a well-formed profile: no ``acsp`` signature, a stated size below the
    header's or beyond the data (cut short), a tag table or tag outside it. The checks are
    skcms's (Chrome, Android), which ignores such a profile altogether."""
    if not profile or not 128 <= len(profile) <= MAX_ICC_BYTES:
        return None
    profile = bytes(profile)
    size = int.from_bytes(profile[:4], "big")
    if profile[36:40] != b"acsp" or not 132 <= size <= len(profile):
        return None
    count = int.from_bytes(profile[128:132], "big")
    if count > (size - 132) // 12:
        return None
    for i in range(132, 132 + 12 * count, 12):
        offset = int.from_bytes(profile[i + 4:i + 8], "big")
        length = int.from_bytes(profile[i + 8:i + 12], "big")
        if length < 4 or offset + length > size:
            return None
    return profile[:size]


def _jpeg_icc(data: bytes) -> bytes | None:
    """The profile of a JPEG's APP2 ``ICC_PROFILE`` segments, read as libjpeg's
    ``jpeg_read_icc_profile`` does: every segment names the same count, each sequence number
    1..count exactly once, or there is no profile."""
    parts: dict[int, bytes] = {}
    counts: set[int] = set()
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:  # bytes between segments: libjpeg skips to the next marker
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # scan data or the end: every APPn came before
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > n:  # cut short: this segment's data is not all there
            break
        if marker == 0xE2 and length >= 16 and data[pos + 4:pos + 16] == _JPEG_ICC:
            seq = data[pos + 16]
            if seq in parts:  # two segments claim one place: which one is meant is unknown
                return None
            counts.add(data[pos + 17])
            parts[seq] = data[pos + 18:end]
        pos = end
    if not parts or len(counts) != 1:
        return None
    count = counts.pop()
    if sorted(parts) != list(range(1, count + 1)):
        return None  # a chunk is missing: no profile rather than a wrong one
    return well_formed_icc(b"".join(parts[i] for i in range(1, count + 1)))


def _png_chunks(data: bytes):
    """(start, type, body start, end) of each whole chunk; stops at one cut short."""
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return
        yield pos, data[pos + 4:pos + 8], pos + 8, end
        pos = end


def _png_icc(data: bytes) -> bytes | None:
    for start, kind, body_start, end in _png_chunks(data):
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"iCCP":
            if zlib.crc32(data[start + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
                return None  # damaged: libpng drops the chunk, Pillow refuses the file
            body = data[body_start:end - 4]
            name_end = body.find(b"\x00")
            if name_end < 0 or body[name_end + 1:name_end + 2] != b"\x00":
                return None  # 0 is the only compression method
            inflater = zlib.decompressobj()
            profile = inflater.decompress(body[name_end + 2:], MAX_ICC_BYTES + 1)
            if inflater.unconsumed_tail or not inflater.eof:  # too large, or cut short
                return None
            return well_formed_icc(profile)
    return None


def _webp_chunks(data: bytes):
    """(type, body start, body end) of each whole chunk; stops at one cut short."""
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos:pos + 4]
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        if pos + 8 + length > len(data):
            return
        yield kind, pos + 8, pos + 8 + length
        pos += 8 + length + (length & 1)


def _webp_icc(data: bytes) -> bytes | None:
    # libwebp's demuxer (and so Pillow, browsers) takes the ICCP chunk of an extended file
    # whose VP8X header has the ICC flag, and of no other
    if data[12:16] != b"VP8X" or len(data) < 21 or not data[20] & 0x20:
        return None
    for kind, start, end in _webp_chunks(data):
        if kind == b"ICCP":
            return well_formed_icc(data[start:end])
    return None


def _tiff_icc(f: Any) -> bytes | None:
    """The profile tag of a TIFF's first page, ``f`` a binary file object (read by its IFD)."""
    import tifffile

    with tifffile.TiffFile(f) as tif:
        tag = tif.pages[0].tags.get(34675)
        if tag is None or tag.valuebytecount > MAX_ICC_BYTES:
            return None
        return well_formed_icc(bytes(tag.value))


def embed_icc(blob: bytes, format: str, profile: bytes, width: int = 0, height: int = 0) -> bytes:
    """``blob`` (a JPEG, PNG or WebP this package encoded) with ``profile`` embedded, replacing
    any it had. ``width``/``height`` are needed for a simple WebP, which becomes an extended
    one. TIFF takes its profile when encoded (:func:`pixelmill.codecs.encode`)."""
    if format == "jpg":
        return _jpeg_embed(blob, profile)
    if format == "png":
        return _png_embed(blob, profile)
    if format == "webp":
        return _webp_embed(blob, profile, width, height)
    raise ValueError(f"embed_icc: cannot embed a profile in {format!r} after encoding")


def _jpeg_embed(blob: bytes, profile: bytes) -> bytes:
    parts = [profile[i:i + _JPEG_ICC_CHUNK] for i in range(0, len(profile), _JPEG_ICC_CHUNK)]
    if not parts or len(parts) > 255:
        return blob
    segments = b"".join(
        b"\xff\xe2" + (len(p) + 16).to_bytes(2, "big") + _JPEG_ICC + bytes((i + 1, len(parts)))
        + p for i, p in enumerate(parts))
    head, pos = [], 2
    while (pos + 4 <= len(blob) and blob[pos] == 0xFF and 0xC0 <= blob[pos + 1] <= 0xFE
           and not 0xD0 <= blob[pos + 1] <= 0xDA):  # the segments before the scan
        end = pos + 2 + int.from_bytes(blob[pos + 2:pos + 4], "big")
        if not (blob[pos + 1] == 0xE2 and blob[pos + 4:pos + 16] == _JPEG_ICC):
            head.append(blob[pos:end])  # a profile it had is replaced
        pos = end
    app0 = 0
    while app0 < len(head) and head[app0][1] == 0xE0:  # after JFIF, which readers want first
        app0 += 1
    return b"".join([blob[:2], *head[:app0], segments, *head[app0:], blob[pos:]])


def _png_embed(blob: bytes, profile: bytes) -> bytes:
    body = b"ICC Profile\x00\x00" + zlib.compress(profile)
    iccp = (len(body).to_bytes(4, "big") + b"iCCP" + body
            + zlib.crc32(b"iCCP" + body).to_bytes(4, "big"))
    out = [_PNG_SIGNATURE]
    for start, kind, _, end in _png_chunks(blob):
        if kind in (b"iCCP", b"sRGB"):  # one colour space: the profile's
            continue
        out.append(blob[start:end])
        if kind == b"IHDR":
            out.append(iccp)
    return b"".join(out)


def _webp_embed(blob: bytes, profile: bytes, width: int, height: int) -> bytes:
    chunks = [(k, blob[a:b]) for k, a, b in _webp_chunks(blob) if k != b"ICCP"]
    if chunks and chunks[0][0] == b"VP8X":
        head = chunks.pop(0)[1]
        vp8x = bytes((head[0] | 0x20,)) + head[1:]
    else:
        flags = 0x20
        if chunks and chunks[0][0] == b"VP8L" and len(chunks[0][1]) >= 5:
            bits = int.from_bytes(chunks[0][1][1:5], "little")
            flags |= 0x10 if (bits >> 28) & 1 else 0  # the lossless stream's alpha bit
        vp8x = (bytes((flags, 0, 0, 0)) + (width - 1).to_bytes(3, "little")
                + (height - 1).to_bytes(3, "little"))
    body = b"".join(k + len(b).to_bytes(4, "little") + b + (b"\x00" if len(b) & 1 else b"")
                    for k, b in [(b"VP8X", vp8x), (b"ICCP", profile), *chunks])
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body
