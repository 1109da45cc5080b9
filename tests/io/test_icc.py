"""ICC colour profiles: read from and written into JPEG, PNG, WebP and TIFF, checked with Pillow
(an independent reader and writer); pixels unchanged by embedding; damaged data ignored."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from pixelmill import codecs
from pixelmill.codecs._icc import MAX_ICC_BYTES, icc_colour_space


@pytest.fixture(scope="module")
def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def gray_profile(srgb) -> bytes:
    return srgb[:16] + b"GRAY" + srgb[20:]  # only the header's colour space is read


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


def test_a_profile_larger_than_one_jpeg_segment_is_split_and_joined_in_order(srgb):
    big = srgb + bytes(range(256)) * 700  # 179,788 bytes: three APP2 segments
    tagged = codecs.encode(RGB, "jpg", icc_profile=big)
    assert tagged.count(b"ICC_PROFILE\x00") == 3
    assert pillow_icc(tagged) == big and codecs.icc_profile(tagged) == big


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
    whole = codecs.encode(RGB, "jpg", icc_profile=srgb + bytes(70000))
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
