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

__all__ = ["MAX_ICC_BYTES", "embed_icc", "icc_colour_space", "icc_fits", "icc_profile"]

#: profiles larger than this are ignored (real ones are 0.5–60 KB; a compressed iCCP chunk
#: must not inflate without bound)
MAX_ICC_BYTES = 4 << 20

_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_ICC_CHUNK = 65535 - 2 - len(_JPEG_ICC) - 2  # a segment's payload after its header
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_icc(data)
    except Exception:  # a damaged header: the decoder says what is wrong, not this
        return None
    return None


def icc_colour_space(profile: bytes) -> str:
    """The data colour space a profile's header names (``RGB``, ``GRAY``, ``CMYK``, ``Lab``,
    ...; empty when the header is too short)."""
    return profile[16:20].decode("latin-1").strip() if len(profile) >= 128 else ""


def icc_fits(profile: bytes | None, channels: int) -> bool:
    """Whether ``profile`` describes images of ``channels`` channels (alpha aside): an RGB
    profile 3 or 4, a gray one 1 or 2."""
    if not profile:
        return False
    space = icc_colour_space(profile)
    return (space == "RGB" and channels in (3, 4)) or (space == "GRAY" and channels in (1, 2))


def _valid(profile: bytes | None) -> bytes | None:
    if not profile or len(profile) < 128 or len(profile) > MAX_ICC_BYTES:
        return None
    return bytes(profile)


def _jpeg_icc(data: bytes) -> bytes | None:
    parts: dict[int, bytes] = {}
    count = 0
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            break
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
        if length < 2:
            break
        if marker == 0xE2 and data[pos + 4:pos + 16] == _JPEG_ICC and length >= 16:
            seq, count = data[pos + 16], data[pos + 17]
            parts.setdefault(seq, data[pos + 18:pos + 2 + length])
        pos += 2 + length
    if not parts or sorted(parts) != list(range(1, count + 1)):
        return None  # a chunk is missing: no profile rather than a wrong one
    return _valid(b"".join(parts[i] for i in range(1, count + 1)))


def _png_chunks(data: bytes):
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        yield pos, kind, data[pos + 8:pos + 8 + length], pos + 12 + length
        pos += 12 + length


def _png_icc(data: bytes) -> bytes | None:
    for _, kind, body, _ in _png_chunks(data):
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"iCCP":
            name_end = body.find(b"\x00")
            if name_end < 0 or body[name_end + 1:name_end + 2] != b"\x00":
                return None  # 0 is the only compression method
            inflater = zlib.decompressobj()
            profile = inflater.decompress(body[name_end + 2:], MAX_ICC_BYTES + 1)
            return _valid(profile) if not inflater.unconsumed_tail else None
    return None


def _webp_chunks(data: bytes):
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos:pos + 4]
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 8 + length + (length & 1)


def _webp_icc(data: bytes) -> bytes | None:
    for kind, body in _webp_chunks(data):
        if kind == b"ICCP":
            return _valid(body)
    return None


def _tiff_icc(data: bytes) -> bytes | None:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        tag = tif.pages[0].tags.get(34675)
        return None if tag is None else _valid(bytes(tag.value))


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
    pos = 2
    while blob[pos:pos + 2] == b"\xff\xe0":  # after the JFIF segment, which readers want first
        pos += 2 + int.from_bytes(blob[pos + 2:pos + 4], "big")
    return blob[:pos] + segments + blob[pos:]


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
    chunks = [(k, b) for k, b in _webp_chunks(blob) if k != b"ICCP"]
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
