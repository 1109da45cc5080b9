"""Audit of the Python image I/O API (read_image, write_image, iter_images) and the encoders,
checked against independent readers (Pillow, tifffile, imagecodecs)."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

import pixelmill
from pixelmill import codecs
from pixelmill.errors import DecodeError, InvalidParameterError
from pixelmill.images import iter_images


def _pil_read(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _independent_read(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "tif":
        return tifffile.imread(io.BytesIO(data))
    if fmt == "png":
        return imagecodecs.png_decode(data)  # Pillow truncates 16-bit colour PNGs
    return _pil_read(data)


@pytest.mark.parametrize(("fmt", "dtype"), [
    ("png", np.uint8), ("png", np.uint16), ("tif", np.uint8), ("tif", np.uint16),
    ("tif", np.float32), ("webp", np.uint8)])
@pytest.mark.parametrize("channels", [0, 1, 2, 3, 4])
def test_lossless_writes_are_bit_exact_for_independent_readers(tmp_path, fmt, dtype, channels):
    rng = np.random.default_rng(channels)
    shape = (7, 9) if channels == 0 else (7, 9, channels)
    top = 1.5 if dtype == np.float32 else np.iinfo(dtype).max
    image = (rng.random(shape) * top).astype(dtype)
    if channels in (2, 4):
        image[::2, :, -1] = 0  # fully transparent pixels keep their colour too
    path = tmp_path / f"x.{fmt}"
    pixelmill.write_image(str(path), image)
    want = image[..., 0] if channels == 1 else image
    if fmt == "webp" and channels in (0, 1, 2):  # WebP has no gray model: stored as RGB(A)
        gray = want if channels != 2 else want[..., 0]
        want = np.dstack([gray] * 3 + ([want[..., 1]] if channels == 2 else []))
    for got in (_independent_read(path.read_bytes(), fmt), pixelmill.read_image(str(path))):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_lossless_webp_keeps_colour_under_transparent_pixels():
    # OpenCV's lossless WebP zeroed the RGB of every pixel with alpha 0
    rng = np.random.default_rng(7)
    rgba = (rng.random((16, 16, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = 0
    np.testing.assert_array_equal(_pil_read(codecs.encode(rgba, "webp")), rgba)
    la = (rng.random((16, 16, 2)) * 255).astype(np.uint8)
    la[..., 1] = 0
    got = _pil_read(codecs.encode(la, "webp"))
    np.testing.assert_array_equal(got[..., 0], la[..., 0])
    np.testing.assert_array_equal(got[..., 3], la[..., 1])


def test_jpeg_keeps_rgb_order(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 220, 40, 90
    pixelmill.write_image(str(tmp_path / "c.jpg"), image)
    got = _pil_read((tmp_path / "c.jpg").read_bytes())
    assert np.abs(got.astype(int) - image).max() <= 3


@pytest.mark.parametrize("quality", [True, False, np.bool_(True)])
def test_bool_quality_is_refused(quality):
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InvalidParameterError, match=r"quality: expected an integer 1\.\.100"):
        codecs.encode(image, "jpg", quality=quality)


@pytest.mark.parametrize("fmt", ["jpg", "png", "tif", "webp"])
@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (0, 0, 2)])
def test_empty_image_is_refused_and_nothing_written(tmp_path, fmt, shape):
    if fmt == "jpg" and shape[-1] == 2:
        shape = (0, 0)
    path = tmp_path / f"e.{fmt}"
    with pytest.raises(InvalidParameterError, match="cannot write an empty image"):
        pixelmill.write_image(str(path), np.zeros(shape, np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fmt", "side"), [("jpg", 65501), ("webp", 16384)])
def test_sizes_a_format_cannot_hold_are_refused_before_computing(tmp_path, fmt, side):
    with pytest.raises(InvalidParameterError, match=f"{fmt} holds at most {side - 1} pixels"):
        pixelmill.images.check_output(f"out.{fmt}", (1, side, 3), np.uint8)
    with pytest.raises(InvalidParameterError, match="use png or tif"):
        pixelmill.write_image(str(tmp_path / f"w.{fmt}"), np.zeros((1, side, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    assert codecs.decode(codecs.encode(np.zeros((1, side - 1, 3), np.uint8), fmt)).shape == (
        1, side - 1, 3)


@pytest.mark.parametrize(("format", "fmt"), [
    ("PNG", "png"), ("JPEG", "jpg"), (".tif", "tif"), ("TIFF", "tif"), ("Webp", "webp")])
def test_write_image_format_names_in_any_case(tmp_path, photo, format, fmt):
    path = tmp_path / "noext"
    pixelmill.write_image(str(path), photo, format=format)
    got = _independent_read(path.read_bytes(), fmt)
    assert got.shape == photo.shape
    assert np.abs(got.astype(int) - photo).mean() < 6  # a lossy jpg/webp; BGR: ~40
    assert pixelmill.images.check_output("x", format=format) == fmt
    with pytest.raises(InvalidParameterError, match="cannot write BMP"):
        pixelmill.write_image(str(tmp_path / "x.png"), photo, format="BMP")


def test_read_image_takes_bytes_and_binary_files(tmp_path, photo):
    path = tmp_path / "p.png"
    pixelmill.write_image(str(path), photo)
    data = path.read_bytes()
    np.testing.assert_array_equal(pixelmill.read_image(data), photo)
    np.testing.assert_array_equal(pixelmill.read_image(io.BytesIO(data)), photo)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(pixelmill.read_image(f, reduce=1), photo)
    with pytest.raises(DecodeError, match=r"^<bytes>: not a recognised"):
        pixelmill.read_image(b"junk")


def _tiff(*pages: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        for p in pages:
            w.write(p)
    return buf.getvalue()


def test_page_out_of_range_names_the_file_and_iter_images_skips_it(tmp_path, photo, gray_photo):
    (tmp_path / "a_two.tif").write_bytes(_tiff(photo, gray_photo))
    (tmp_path / "b_one.tif").write_bytes(_tiff(photo))
    (tmp_path / "c_one.png").write_bytes(codecs.encode(photo, "png"))
    np.testing.assert_array_equal(pixelmill.read_image(str(tmp_path / "a_two.tif"), page=1),
                                  gray_photo)
    with pytest.raises(InvalidParameterError, match=r"b_one\.tif: page: expected 0\.\.0, got 1"):
        pixelmill.read_image(str(tmp_path / "b_one.tif"), page=1)
    items = list(pixelmill.iter_images(str(tmp_path), page=1))
    assert [i.uri.rsplit("/", 1)[-1] for i in items] == ["a_two.tif"]
    np.testing.assert_array_equal(items[0].image, gray_photo)
    with pytest.raises(InvalidParameterError, match=r"b_one\.tif: page"):
        list(pixelmill.iter_images(str(tmp_path), page=1, on_error="raise"))
    with pytest.raises(InvalidParameterError, match=r"^reduce: expected"):  # every file's
        list(pixelmill.iter_images(str(tmp_path), reduce=3))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    y, x = np.mgrid[0:24, 0:40]
    image = np.dstack([x * 6, y * 10, (x + y) * 3]).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG", exif=exif.tobytes())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        upright = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(codecs.decode(data), upright)
    np.testing.assert_array_equal(codecs.decode(data, apply_exif=False), image)


# ---- the patches that audit left for codecs/_decode.py and _probe.py ----------------------

def test_16_bit_pnm_keeps_its_16_bits():
    """Pillow opens a P6 file of maxval 65535 as 8-bit RGB: decode returned uint8, 8 of the 16
    bits gone without a word; a 16-bit (or 12-bit) PGM was refused as 32-bit integers."""
    import cv2

    rgb = (np.arange(12, dtype=np.uint16).reshape(2, 2, 3) * 5000)
    ok, ppm = cv2.imencode(".ppm", rgb[..., ::-1])
    assert ok
    info = codecs.probe(bytes(ppm))
    assert (info.format, info.bit_depth, info.channels) == ("pnm", 16, 3)
    got = codecs.decode(bytes(ppm))
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, rgb)
    gray = np.arange(4, dtype=np.uint16).reshape(2, 2) * 1000
    pgm = b"P5\n# 12-bit\n2 2\n4095\n" + gray.astype(">u2").tobytes()
    np.testing.assert_array_equal(codecs.decode(pgm), gray)  # the stored values, not rescaled
    ok, ppm8 = cv2.imencode(".ppm", (rgb // 256).astype(np.uint8))
    assert codecs.decode(bytes(ppm8)).dtype == np.uint8 and codecs.probe(bytes(ppm8)).bit_depth == 8


@pytest.mark.parametrize("kw", [{"page": 1.0}, {"page": True}, {"page": -1},
                                {"max_pixels": "600"}, {"max_pixels": True}])
def test_decode_options_of_the_wrong_type_are_named(kw, tmp_path):
    """page=1.0 was a DecodeError from tifffile, page=True read page 1, max_pixels='600' a
    TypeError; iter_images must not skip every file for an option wrong for all of them."""
    data = codecs.encode(np.zeros((4, 4), np.uint8), "png")
    with pytest.raises(InvalidParameterError, match=next(iter(kw))):
        codecs.decode(data, **kw)
    (tmp_path / "a.png").write_bytes(data)
    with pytest.raises(InvalidParameterError, match=next(iter(kw))):
        list(iter_images(str(tmp_path), **kw))


@pytest.mark.parametrize("bits", [1, 8, 16])
def test_a_gray_png_with_a_transparent_level_is_gray_plus_alpha(bits):
    """RGB and palette PNGs with tRNS came back with alpha; gray ones (libpng leaves the key
    out) came back opaque, the transparency lost. Compared with Pillow's reading."""
    top = {1: 1, 8: 255, 16: 65535}[bits]
    levels = np.array([[0, top], [top // 3, 0]])
    dtype = np.uint16 if bits == 16 else np.uint8
    buf = io.BytesIO()
    if bits == 1:
        Image.fromarray((levels * 255).astype(np.uint8), "L").convert("1").save(
            buf, "PNG", transparency=0)
        data = buf.getvalue()
    elif bits == 8:
        Image.fromarray(levels.astype(dtype), "L").save(buf, "PNG", transparency=top // 3)
        data = buf.getvalue()
    else:  # a tRNS chunk put into a 16-bit gray PNG, before its pixel data
        import struct
        import zlib

        plain = bytes(imagecodecs.png_encode(levels.astype(dtype)))
        body = struct.pack(">H", top // 3)
        chunk = struct.pack(">I", 2) + b"tRNS" + body + struct.pack(
            ">I", zlib.crc32(b"tRNS" + body))
        at = plain.index(b"IDAT") - 4
        data = plain[:at] + chunk + plain[at:]
    info = codecs.probe(data)
    assert (info.channels, info.mode) == (2, "LA")
    got = codecs.decode(data)
    assert got.shape == (2, 2, 2) and got.dtype == dtype
    full = np.iinfo(dtype).max
    key = 0 if bits == 1 else top // 3
    gray = (levels * 255).astype(dtype) if bits == 1 else levels.astype(dtype)
    np.testing.assert_array_equal(got[..., 0], gray)
    np.testing.assert_array_equal(got[..., 1], np.where(levels == key, 0, full))
    if bits != 16:  # Pillow's own reading agrees
        np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(data)).convert("LA")))
