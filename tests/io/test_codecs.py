"""codecs: probe, decode, encode — checked against Pillow and tifffile as independent references."""

from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from pixelmill import codecs
from pixelmill.errors import DecodeError, InvalidParameterError, PixelLimitError
from tests._images import bomb_png
from tests.io.conftest import pil_bytes


def _variants(photo, gray):
    """(name, array) for every layout and bit depth pixelmill arrays take."""
    alpha = gray
    return [
        ("rgb8", photo), ("gray8", gray), ("rgba8", np.dstack([photo, alpha])),
        ("la8", np.dstack([gray, alpha])), ("rgb16", photo.astype(np.uint16) * 257 + 3),
        ("gray16", gray.astype(np.uint16) * 250), ("rgba16", np.dstack([photo, alpha]).astype(
            np.uint16) * 200), ("la16", np.dstack([gray, alpha]).astype(np.uint16) * 255),
    ]


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_lossless_round_trip_every_layout_and_depth(fmt, photo, gray_photo):
    for name, arr in _variants(photo, gray_photo):
        data = codecs.encode(arr, fmt)
        info = codecs.probe(data)
        out = codecs.decode(data)
        assert out.dtype == arr.dtype, name
        np.testing.assert_array_equal(out, arr, err_msg=name)
        assert info.shape() == out.shape, name
        assert info.bit_depth == arr.dtype.itemsize * 8, name


def test_float32_tiff_round_trip(rng):
    arr = rng.random((17, 23, 3), dtype=np.float32)
    data = codecs.encode(arr, "tif")
    assert codecs.probe(data).bit_depth == 32
    np.testing.assert_array_equal(codecs.decode(data), arr)


def test_png_decodes_as_pillow_reads_it(photo, gray_photo):
    # Pillow is an independent PNG decoder: 8-bit layouts must match it exactly
    for arr, mode in [(photo, "RGB"), (gray_photo, "L"), (np.dstack([photo, gray_photo]), "RGBA"),
                      (np.dstack([gray_photo, gray_photo]), "LA")]:
        data = pil_bytes(arr, "PNG", mode)
        np.testing.assert_array_equal(codecs.decode(data), np.asarray(Image.open(io.BytesIO(data))))


def test_jpeg_round_trip_close_and_quality_matters(photo, gray_photo):
    for arr in (photo, gray_photo):
        hi = codecs.encode(arr, "jpg", quality=95)
        lo = codecs.encode(arr, "jpg", quality=20)
        assert len(lo) < len(hi)
        out = codecs.decode(hi)
        assert out.shape == arr.shape and out.dtype == np.uint8
        mse = np.mean((out.astype(float) - arr) ** 2)
        assert 10 * np.log10(255**2 / mse) > 32
        # Pillow decodes the same file to within a few levels
        ref = np.asarray(Image.open(io.BytesIO(hi)))
        assert np.abs(out.astype(int) - ref).max() <= 3


def test_webp_lossless_and_lossy(photo, gray_photo):
    np.testing.assert_array_equal(codecs.decode(codecs.encode(photo, "webp")), photo)
    rgba = np.dstack([photo, np.where(gray_photo > 0, gray_photo, 1).astype(np.uint8)])
    np.testing.assert_array_equal(codecs.decode(codecs.encode(rgba, "webp")), rgba)
    lossy = codecs.decode(codecs.encode(photo, "webp", quality=50))
    assert lossy.shape == photo.shape and 0 < np.abs(lossy.astype(int) - photo).mean() < 10
    # WebP has no gray layout: gray comes back as RGB with equal channels
    g = codecs.decode(codecs.encode(gray_photo, "webp"))
    assert g.shape == (*gray_photo.shape, 3)
    np.testing.assert_array_equal(g[..., 1], gray_photo)


def test_probe_equals_decode_shape_for_every_format(photo, gray_photo):
    pal = Image.fromarray(photo).convert("P")
    files = {
        "bmp": pil_bytes(photo, "BMP"), "gif": pil_bytes(photo, "GIF"),
        "webp": pil_bytes(photo, "WEBP"), "ppm": pil_bytes(photo, "PPM"),
        "pgm": pil_bytes(gray_photo, "PPM"), "palette": _save(pal, "PNG"),
        "palette+trns": _save(pal, "PNG", transparency=0), "bilevel": _save(
            Image.fromarray(gray_photo).convert("1"), "PNG"),
        "jpeg-gray": pil_bytes(gray_photo, "JPEG"), "bmp-rgba": pil_bytes(
            np.dstack([photo, gray_photo]), "BMP"),
    }
    for name, data in files.items():
        info = codecs.probe(data)
        out = codecs.decode(data)
        assert info.shape() == out.shape, name
        assert info.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[info.channels]


def _save(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_palette_and_bilevel_expand_like_pillow(photo, gray_photo):
    pal = Image.fromarray(photo).convert("P")
    np.testing.assert_array_equal(codecs.decode(_save(pal, "PNG")),
                                  np.asarray(pal.convert("RGB")))
    one = Image.fromarray(gray_photo).convert("1")
    data = _save(one, "PNG")
    assert codecs.probe(data).bit_depth == 1
    np.testing.assert_array_equal(codecs.decode(data), np.asarray(one.convert("L")))


def test_bit_depth_is_read_from_the_header_not_guessed():
    dark16 = np.full((5, 7), 3, np.uint16)  # values fit in 8 bits; the file is still 16-bit
    data = codecs.encode(dark16, "png")
    assert codecs.probe(data).bit_depth == 16
    assert codecs.decode(data).dtype == np.uint16
    bright8 = np.full((5, 7), 255, np.uint8)
    assert codecs.decode(codecs.encode(bright8, "png")).dtype == np.uint8


def test_gif_first_frame_and_page_count(photo):
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1].copy())]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    info = codecs.probe(data)
    assert info.format == "gif" and info.pages == 2
    ref = Image.open(io.BytesIO(data))
    np.testing.assert_array_equal(codecs.decode(data), np.asarray(ref.convert("RGB")))


def test_tiff_pages_bigtiff_and_planar(photo, gray_photo):
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, bigtiff=True) as tw:
        tw.write(photo, photometric="rgb")
        tw.write(gray_photo, photometric="minisblack")
        tw.write(np.moveaxis(photo[::2, ::2], -1, 0), photometric="rgb", planarconfig="separate")
    data = buf.getvalue()
    assert data[:4] == b"II+\x00"  # BigTIFF
    info = codecs.probe(data)
    assert (info.format, info.pages, info.width, info.height) == ("tif", 3, 128, 96)
    np.testing.assert_array_equal(codecs.decode(data), photo)
    np.testing.assert_array_equal(codecs.decode(data, page=1), gray_photo)
    np.testing.assert_array_equal(codecs.decode(data, page=2), photo[::2, ::2])
    with pytest.raises(InvalidParameterError, match="page"):
        codecs.decode(data, page=3)


def test_cmyk_jpeg_becomes_rgb(photo):
    cmyk = np.asarray(Image.fromarray(photo).convert("CMYK"))
    data = pil_bytes(cmyk, "JPEG", "CMYK", quality=95)
    info = codecs.probe(data)
    assert (info.channels, info.mode, info.stored_mode) == (3, "RGB", "CMYK")
    out = codecs.decode(data)
    ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert out.shape == ref.shape
    assert np.abs(out.astype(int) - ref).max() <= 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(orientation, photo):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pil_bytes(photo[:, :100], "PNG", exif=exif.tobytes())
    info = codecs.probe(data)
    assert info.orientation == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    out = codecs.decode(data)
    np.testing.assert_array_equal(out, expected)
    assert info.shape() == out.shape
    np.testing.assert_array_equal(codecs.decode(data, apply_exif=False), photo[:, :100])


def test_exif_orientation_in_jpeg(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = pil_bytes(photo, "JPEG", exif=exif.tobytes(), quality=95)
    assert codecs.probe(data).orientation == 6
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    out = codecs.decode(data)
    assert out.shape == (128, 96, 3)
    assert np.abs(out.astype(int) - expected).max() <= 3
    assert codecs.decode(data, apply_exif=False).shape == (96, 128, 3)


@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_jpeg_reduce_matches_libjpeg_dct_scaling_in_pillow(reduce):
    from skimage import data as skdata

    img = skdata.astronaut()
    data = pil_bytes(img, "JPEG", quality=90)
    out = codecs.decode(data, reduce=reduce)
    ref_im = Image.open(io.BytesIO(data))
    ref_im.draft("RGB", (512 // reduce, 512 // reduce))  # Pillow's DCT-domain scaling
    ref = np.asarray(ref_im)
    assert out.shape == ref.shape == (512 // reduce, 512 // reduce, 3)
    assert np.abs(out.astype(int) - ref).mean() < 1.0
    assert codecs.probe(data).shape(reduce=reduce) == out.shape
    # other formats ignore reduce
    assert codecs.decode(codecs.encode(img, "png"), reduce=reduce).shape == img.shape
    with pytest.raises(InvalidParameterError, match="reduce"):
        codecs.decode(data, reduce=3)


def test_pixel_limit_rejects_a_bomb_before_allocating():
    data = bomb_png()
    info = codecs.probe(data)
    assert (info.width, info.height) == (100_000, 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(PixelLimitError, match="pixel limit"):
            codecs.decode(data)
        with pytest.raises(PixelLimitError):
            codecs.verify(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # 30 GB of pixels were never asked for
    small = codecs.encode(np.zeros((10, 10), np.uint8), "png")
    with pytest.raises(PixelLimitError):
        codecs.decode(small, max_pixels=99)
    assert codecs.decode(small, max_pixels=100).shape == (10, 10)


def test_zero_bytes_and_text_are_decode_errors():
    with pytest.raises(DecodeError, match="empty"):
        codecs.probe(b"")
    with pytest.raises(DecodeError, match="not a recognised image"):
        codecs.probe(b"this is a text file, not a JPEG\n")


def test_png_bad_crc(photo):
    data = bytearray(codecs.encode(photo, "png"))
    bad_header = bytearray(data)
    bad_header[29] ^= 0xFF  # IHDR CRC
    with pytest.raises(DecodeError, match="CRC"):
        codecs.probe(bytes(bad_header))
    i = data.find(b"IDAT")
    (n,) = struct.unpack(">I", data[i - 4 : i])
    data[i + 4 + n] ^= 0xFF  # IDAT CRC: only a full decode can see it
    codecs.probe(bytes(data))
    with pytest.raises(DecodeError):
        codecs.decode(bytes(data))
    with pytest.raises(DecodeError):
        codecs.verify(bytes(data))


def test_truncated_jpeg_probes_but_fails_verify(photo):
    data = codecs.encode(photo, "jpg")
    cut = data[: len(data) // 2]
    assert codecs.probe(cut).width == 128  # the header is intact
    with pytest.raises(DecodeError, match="truncated"):
        codecs.verify(cut)
    with pytest.raises(DecodeError):
        codecs.decode(cut)
    with pytest.raises(DecodeError, match="truncated JPEG header"):
        codecs.probe(data[:20])


def test_encode_refuses_what_a_format_cannot_hold(photo):
    with pytest.raises(InvalidParameterError, match="uint16"):
        codecs.encode(photo.astype(np.uint16), "jpg")
    with pytest.raises(InvalidParameterError, match="alpha"):
        codecs.encode(np.dstack([photo, photo[..., 0]]), "jpg")
    with pytest.raises(InvalidParameterError, match="float32"):
        codecs.encode(photo.astype(np.float32), "png")
    with pytest.raises(InvalidParameterError, match="quality"):
        codecs.encode(photo, "png", quality=90)
    with pytest.raises(InvalidParameterError, match="quality"):
        codecs.encode(photo, "jpg", quality=0)
    with pytest.raises(InvalidParameterError, match="format"):
        codecs.encode(photo, "xcf")


def test_format_from_name():
    assert codecs.format_from_name("a/b/photo.JPEG") == "jpg"
    assert codecs.format_from_name("s3://x/y.tiff") == "tif"
    assert codecs.format_from_name("z.webp") == "webp"
    with pytest.raises(InvalidParameterError, match="extension"):
        codecs.format_from_name("notes.txt")


def _all_formats(photo, gray_photo):
    from PIL import Image as PILImage

    pal = PILImage.fromarray(photo).convert("P")
    return {
        "jpg": codecs.encode(photo, "jpg"), "png": codecs.encode(photo, "png"),
        "png16": codecs.encode(gray_photo.astype(np.uint16), "png"),
        "tif": codecs.encode(photo, "tif"), "webp": codecs.encode(photo, "webp", quality=80),
        "bmp": pil_bytes(photo, "BMP"), "gif": _save(pal, "GIF"),
    }


def _outcome(fn, data) -> str:
    """"ok" or "invalid"; any exception other than DecodeError propagates and fails the test."""
    try:
        fn(data)
    except DecodeError:
        return "invalid"
    return "ok"


def test_truncated_and_mangled_files_only_ever_raise_decode_error(photo, gray_photo, rng):
    # the scan relies on this: anything a decoder library throws becomes a DecodeError
    for name, data in _all_formats(photo, gray_photo).items():
        for cut in (1, 2, 8, 16):
            assert _outcome(codecs.probe, data[:cut]) == "invalid", (name, cut)
        for cut in rng.integers(33, len(data), 12).tolist():
            assert _outcome(codecs.verify, data[:cut]) in ("ok", "invalid")
            assert _outcome(codecs.decode, data[:cut]) in ("ok", "invalid")
        assert _outcome(codecs.verify, data) == "ok", name
        for _ in range(10):
            mangled = bytearray(data)
            for i in rng.integers(0, len(data), 8):
                mangled[i] = int(rng.integers(0, 256))
            assert _outcome(codecs.decode, bytes(mangled)) in ("ok", "invalid")
