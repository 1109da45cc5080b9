"""ICC colour profiles: read from and written into JPEG, PNG, WebP and TIFF, checked with Pillow
(an independent reader and writer); pixels unchanged by embedding; damaged data ignored."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from pixelmill import codecs
from pixelmill.codecs._icc import MAX_ICC_BYTES, embed_icc, icc_colour_space


@pytest.fixture(scope="module")
def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def gray_profile(srgb) -> bytes:
    return srgb[:16] + b"GRAY" + srgb[20:]  # only the header's colour space is read


def _icc(space: bytes, cls: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2 profile: header, tag table, tags (4-byte aligned)."""
    table, body, first = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", first + len(body), len(data))
        body += data
    body += bytes(-len(body) % 4)
    d50 = struct.pack(">3i", 63190, 65536, 54061)
    header = (struct.pack(">I", first + len(body)) + b"lcms" + bytes((2, 0x10, 0, 0)) + cls
              + space + pcs + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acspAPPL" + bytes(24)
              + d50 + b"lcms" + bytes(44))
    return header + struct.pack(">I", len(tags)) + table + body


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))


def _desc(text: str) -> bytes:
    a = text.encode() + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(a)) + a + bytes(79)


def _lut8(nin: int, nout: int, clut: list[int]) -> bytes:  # a 2-point grid, identity curves
    eye = struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
    return (b"mft1" + bytes(4) + bytes((nin, nout, 2, 0)) + eye + bytes(range(256)) * nin
            + bytes(clut) + bytes(range(256)) * nout)


def large_rgb_profile(entries: int = 12000) -> bytes:
    """A matrix/TRC RGB profile with long tone curves: 72,484 bytes, two JPEG APP2 segments."""
    ramp = struct.pack(f">{entries}H", *(round(65535 * (i / (entries - 1)) ** 2.2)
                                         for i in range(entries)))
    trc = b"curv" + bytes(4) + struct.pack(">I", entries) + ramp
    return _icc(b"RGB ", b"mntr", b"XYZ ", [
        (b"desc", _desc("large test RGB")), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", _xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", trc), (b"gTRC", trc),
        (b"bTRC", trc), (b"cprt", b"text" + bytes(4) + b"public domain\0")])


def cmyk_profile() -> bytes:
    a2b = [v for k in range(16) for v in ((255 if k == 0 else 128 if not k & 1 else 10), 128, 128)]
    b2a = [v for k in range(8) for v in (0, 0, 0, 0 if k & 4 else 255)]
    return _icc(b"CMYK", b"prtr", b"Lab ", [
        (b"desc", _desc("test CMYK")), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"A2B0", _lut8(4, 3, a2b)), (b"B2A0", _lut8(3, 4, b2a))])


def cms(profile: bytes) -> str:
    """The colour space LittleCMS reads in the profile (it parses it)."""
    return ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space.strip()


def pillow_icc(blob: bytes) -> bytes | None:
    with Image.open(io.BytesIO(blob)) as im:
        return im.info.get("icc_profile")


def pixels(blob: bytes) -> np.ndarray:
    return codecs.decode(blob)


RGB = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
RGBA = np.dstack([RGB, np.random.default_rng(1).integers(0, 256, (37, 53), np.uint8)])


@pytest.mark.parametrize("fmt, quality, image", [
    ("jpg", 90, RGB), ("png", None, RGB), ("png", None, RGBA), ("tif", None, RGB),
    ("tif", None, RGBA), ("webp", None, RGB), ("webp", 80, RGB), ("webp", None, RGBA),
    ("webp", 80, RGBA), ("png", None, RGB.astype(np.uint16) * 257)])
def test_embedded_profile_reads_back_in_pillow_and_pixels_are_unchanged(fmt, quality, image,
                                                                        srgb):
    plain = codecs.encode(image, fmt, quality=quality)
    tagged = codecs.encode(image, fmt, quality=quality, icc_profile=srgb)
    assert pillow_icc(plain) is None and codecs.icc_profile(plain) is None
    assert pillow_icc(tagged) == srgb
    assert codecs.icc_profile(tagged) == srgb
    np.testing.assert_array_equal(pixels(tagged), pixels(plain))
    with Image.open(io.BytesIO(tagged)) as im:  # Pillow decodes the whole file too
        im.load()
        assert im.size == (image.shape[1], image.shape[0])


def test_a_profile_larger_than_one_jpeg_segment_is_split_and_joined_in_order():
    big = large_rgb_profile()
    assert len(big) > 65519 and cms(big) == "RGB"
    tagged = codecs.encode(RGB, "jpg", icc_profile=big)
    assert tagged.count(b"ICC_PROFILE\x00") == 2
    assert pillow_icc(tagged) == big and codecs.icc_profile(tagged) == big
    for kw in ({"progressive": True}, {"optimize": True, "quality": 60}):  # Pillow's too
        out = io.BytesIO()
        Image.fromarray(RGB).save(out, "JPEG", icc_profile=big, **kw)
        assert codecs.icc_profile(out.getvalue()) == big
    # decoded bit-identically by libjpeg (OpenCV) and Pillow with the segments inserted
    import cv2

    plain = codecs.encode(RGB, "jpg")
    for blob in (plain, tagged):
        assert cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR) is not None
    assert np.array_equal(cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR),
                          cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR))
    with Image.open(io.BytesIO(tagged)) as a, Image.open(io.BytesIO(plain)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_profiles_written_by_pillow_are_read(fmt, srgb):
    out = io.BytesIO()
    Image.fromarray(RGB).save(out, fmt, icc_profile=srgb)
    assert codecs.icc_profile(out.getvalue()) == srgb


def test_gray_profiles_go_with_gray_images_only(srgb, gray_profile):
    gray = RGB[..., 0]
    assert icc_colour_space(gray_profile) == "GRAY" and icc_colour_space(srgb) == "RGB"
    assert codecs.icc_profile(codecs.encode(gray, "png", icc_profile=gray_profile)) == gray_profile
    assert pillow_icc(codecs.encode(gray, "jpg", icc_profile=gray_profile)) == gray_profile
    # an RGB profile on a gray image, a gray one on an RGB image: the formats forbid it
    assert codecs.icc_profile(codecs.encode(gray, "png", icc_profile=srgb)) is None
    assert codecs.icc_profile(codecs.encode(RGB, "tif", icc_profile=gray_profile)) is None
    # WebP stores gray as RGB: an RGB profile fits it, a gray one does not
    assert codecs.icc_profile(codecs.encode(gray, "webp", icc_profile=srgb)) == srgb
    assert codecs.icc_profile(codecs.encode(gray, "webp", icc_profile=gray_profile)) is None
    assert codecs.icc_fits(srgb, 4) and codecs.icc_fits(gray_profile, 2)
    assert not codecs.icc_fits(srgb, 1) and not codecs.icc_fits(None, 3)


def test_damaged_or_hostile_profile_data_is_no_profile(srgb):
    whole = codecs.encode(RGB, "jpg", icc_profile=large_rgb_profile())
    first = whole.index(b"ICC_PROFILE\x00") - 4
    length = int.from_bytes(whole[first + 2:first + 4], "big")
    missing = whole[:first] + whole[first + 2 + length:]  # segment 1 of 2 removed
    assert codecs.icc_profile(missing) is None
    assert pillow_icc(missing) is None  # Pillow agrees: no profile rather than half of one
    # an iCCP chunk that inflates past the limit (a zlib bomb) is not inflated
    bomb = zlib.compress(bytes(MAX_ICC_BYTES + 1024), 9)
    body = b"x\x00\x00" + bomb
    chunk = len(body).to_bytes(4, "big") + b"iCCP" + body + zlib.crc32(b"iCCP" + body).to_bytes(4, "big")
    png = codecs.encode(RGB, "png")
    assert codecs.icc_profile(png[:33] + chunk + png[33:]) is None
    # a profile shorter than its own 128-byte header, garbage, truncated files
    assert codecs.icc_profile(codecs.encode(RGB, "png", icc_profile=b"tiny")) is None
    for blob in (b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe2\x00", png[:40], b"RIFF\x00\x00\x00\x00WEBPICCP",
                 b"II*\x00garbage"):
        assert codecs.icc_profile(blob) is None


def test_write_image_embeds_a_profile(tmp_path, srgb):
    from pixelmill.images import read_image, write_image

    write_image(str(tmp_path / "a.webp"), RGB, quality=90, icc_profile=srgb)
    assert pillow_icc((tmp_path / "a.webp").read_bytes()) == srgb
    assert read_image(str(tmp_path / "a.webp")).shape == RGB.shape


def _app2(seq: int, count: int, part: bytes) -> bytes:
    return b"\xff\xe2" + (len(part) + 16).to_bytes(2, "big") + b"ICC_PROFILE\x00" + bytes(
        (seq, count)) + part


def test_jpeg_segments_are_read_as_libjpeg_reads_them(srgb):
    big = large_rgb_profile()
    one, two = big[:65519], big[65519:]
    plain = codecs.encode(RGB, "jpg")
    jfif = 2 + 2 + int.from_bytes(plain[4:6], "big")

    def jpeg(*segments: bytes) -> bytes:
        return plain[:jfif] + b"".join(segments) + plain[jfif:]

    assert codecs.icc_profile(jpeg(_app2(2, 2, two), _app2(1, 2, one))) == big  # any order
    # two segments in one place (which is meant?), counts that disagree: no profile, as
    # libjpeg's jpeg_read_icc_profile (Pillow agrees on the duplicate)
    dup = jpeg(_app2(1, 2, one), _app2(1, 2, one), _app2(2, 2, two))
    assert codecs.icc_profile(dup) is None and pillow_icc(dup) is None
    assert codecs.icc_profile(jpeg(_app2(1, 3, one), _app2(2, 2, two))) is None
    # bytes between segments are skipped to the next marker, by libjpeg and Pillow alike
    junk = jpeg(b"\x00\x17junk", _app2(1, 1, srgb))
    assert codecs.icc_profile(junk) == srgb == pillow_icc(junk)
    # a file cut inside its last ICC segment: the profile is cut short, so there is none
    whole = jpeg(_app2(1, 1, srgb))
    cut = whole[:whole.index(b"ICC_PROFILE") + 300]
    assert codecs.icc_profile(cut) is None


def test_embedding_replaces_a_jpeg_profile_it_had(srgb):
    out = io.BytesIO()
    Image.fromarray(RGB).save(out, "JPEG", icc_profile=large_rgb_profile())
    again = embed_icc(out.getvalue(), "jpg", srgb)
    assert again.count(b"ICC_PROFILE\x00") == 1
    assert codecs.icc_profile(again) == srgb == pillow_icc(again)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def test_a_damaged_png_iccp_chunk_is_no_profile(srgb):
    png = codecs.encode(RGB, "png")
    good = _chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(srgb))
    assert codecs.icc_profile(png[:33] + good + png[33:]) == srgb
    bad_crc = good[:-4] + bytes(4)  # libpng drops the chunk; Pillow refuses the whole file
    assert codecs.icc_profile(png[:33] + bad_crc + png[33:]) is None
    cut_stream = _chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(srgb)[:-40])
    assert codecs.icc_profile(png[:33] + cut_stream + png[33:]) is None
    assert codecs.icc_profile(png[:33] + good[:-100]) is None  # the file ends in the chunk
    # beside sRGB (which the spec forbids with iCCP) or gAMA/cHRM, iCCP is the colour space
    srgb_chunk, gama = _chunk(b"sRGB", b"\x00"), _chunk(b"gAMA", (45455).to_bytes(4, "big"))
    both = png[:33] + srgb_chunk + gama + good + png[33:]
    assert codecs.icc_profile(both) == srgb == pillow_icc(both)


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(k + len(b).to_bytes(4, "little") + b + bytes(len(b) & 1) for k, b in chunks)
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 12
    while pos < len(data):
        n = int.from_bytes(data[pos + 4:pos + 8], "little")
        out.append((data[pos:pos + 4], data[pos + 8:pos + 8 + n]))
        pos += 8 + n + (n & 1)
    return out


def test_webp_profile_is_read_where_libwebp_reads_it(srgb):
    odd = large_rgb_profile(101) + b"\x00"  # an odd size: the chunk is padded
    odd = len(odd).to_bytes(4, "big") + odd[4:]
    out = io.BytesIO()
    Image.fromarray(RGBA).save(out, "WEBP", quality=80, icc_profile=odd)
    chunks = _webp_chunks(out.getvalue())
    assert [k for k, _ in chunks] == [b"VP8X", b"ICCP", b"ALPH", b"VP8 "]
    assert codecs.icc_profile(out.getvalue()) == odd
    vp8x = chunks[0][1]
    unflagged = _riff([(b"VP8X", bytes((vp8x[0] & ~0x20,)) + vp8x[1:]), *chunks[1:]])
    assert pillow_icc(unflagged) is None and codecs.icc_profile(unflagged) is None
    whole = out.getvalue()
    assert codecs.icc_profile(whole[:whole.index(b"ICCP") + 300]) is None  # cut short
    # the profile libwebp sees in a file pixelmill wrote, with the pixels of the untagged file
    for quality in (None, 80):
        tagged = codecs.encode(RGBA, "webp", quality=quality, icc_profile=odd)
        assert pillow_icc(tagged) == odd
        np.testing.assert_array_equal(pixels(tagged), pixels(codecs.encode(RGBA, "webp",
                                                                           quality=quality)))


def test_malformed_profiles_are_no_profile_and_are_not_written(srgb):
    size = len(srgb)
    broken = {
        "cut short": srgb[:400],  # its header says 588 bytes
        "huge stated size": struct.pack(">I", 0xFFFFFFF0) + srgb[4:],
        "stated size 0": bytes(4) + srgb[4:],
        "no acsp signature": srgb[:36] + b"xxxx" + srgb[40:],
        "tag past the end": srgb[:132 + 4] + struct.pack(">I", size) + srgb[140:],
        "tag count past the end": srgb[:128] + struct.pack(">I", 10**6) + srgb[132:],
    }
    for name, profile in broken.items():
        for fmt in ("jpg", "png", "webp", "tif"):
            tagged = codecs.encode(RGB, fmt, icc_profile=profile)
            assert codecs.icc_profile(tagged) is None, (name, fmt)
        out = io.BytesIO()
        Image.fromarray(RGB).save(out, "PNG", icc_profile=profile)  # Pillow writes anything
        assert codecs.icc_profile(out.getvalue()) is None, name
    # bytes past the stated size are no part of the profile (colour engines read that size)
    padded = codecs.encode(RGB, "png", icc_profile=srgb + bytes(1000))
    assert codecs.icc_profile(padded) == srgb == pillow_icc(padded)


def test_only_image_profiles_are_embedded(srgb):
    link = srgb[:12] + b"link" + srgb[16:]  # a device link: RGB in, RGB out, no colour space
    assert not codecs.icc_fits(link, 3) and codecs.icc_fits(srgb, 3)
    assert codecs.icc_profile(codecs.encode(RGB, "png", icc_profile=link)) is None


def test_a_cmyk_jpeg_profile_does_not_go_with_its_rgb_pixels():
    cmyk = cmyk_profile()
    assert cms(cmyk) == "CMYK"
    out = io.BytesIO()
    Image.fromarray(RGB).convert("CMYK").save(out, "JPEG", icc_profile=cmyk)
    assert codecs.icc_profile(out.getvalue()) == cmyk
    image = codecs.decode(out.getvalue())
    assert image.shape == RGB.shape  # decoded to RGB: the CMYK profile no longer applies
    for fmt in ("jpg", "png", "tif", "webp"):
        assert codecs.icc_profile(codecs.encode(image, fmt, icc_profile=cmyk)) is None


def _v2_profile(name: bytes) -> bytes:
    """A minimal ICC v2 display profile whose only tag is a v2 ``desc`` (ASCII) naming it."""
    desc = b"desc" + bytes(4) + (len(name) + 1).to_bytes(4, "big") + name + b"\x00" + bytes(79)
    size = 128 + 4 + 12 + len(desc)
    header = bytearray(128)
    header[0:4] = size.to_bytes(4, "big")
    header[8:12] = b"\x02\x10\x00\x00"
    header[12:16], header[16:20], header[20:24], header[36:40] = b"mntr", b"RGB ", b"XYZ ", b"acsp"
    return (bytes(header) + (1).to_bytes(4, "big") + b"desc" + (144).to_bytes(4, "big")
            + len(desc).to_bytes(4, "big") + desc)


def test_profile_names_read_as_littlecms_reads_them(srgb):
    from pixelmill.codecs._icc import icc_description

    adobe = _v2_profile(b"Adobe RGB (1998)")
    for profile in (srgb, adobe, ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()):
        want = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
        assert icc_description(profile) == want.strip()
    assert icc_description(adobe) == "Adobe RGB (1998)"
    assert icc_description(None) is None and icc_description(b"junk" * 40) is None
    no_desc = adobe[:128] + bytes(4) + adobe[132:]  # no tags: its colour space instead
    assert icc_description(no_desc) == "RGB"
