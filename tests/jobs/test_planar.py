"""JPEG → JPEG jobs on the file's own Y/Cb/Cr planes (codecs/_planes.py, jobs/_planar.py).

The plane decoder is checked against libjpeg-turbo's own RGB and gray decoders (simplejpeg) and
against an independent encoder's planes; the job's outputs against the RGB route and against
an exact float computation from the full-size decode; every input the planes cannot take goes
the RGB way with the same row it always had.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pixelmill import codecs
from pixelmill.codecs import _planes
from pixelmill.errors import DecodeError, PixelLimitError
from pixelmill.jobs import JobSpec, WorkUnit, process_unit
from pixelmill.jobs._planar import planar_fits, planar_pipeline
from pixelmill.pipeline import Pipeline

needs_planes = pytest.mark.skipif(not codecs.planes_available(),
                                  reason="the plane decoder (C extension) is not built here")

THUMB = Pipeline.from_steps([{"op": "resize", "long_side": 512, "method": "area"},
                             {"op": "gaussian", "sigma": 1.5}])


def _photo(size: tuple[int, int], seed: int = 0, source: str = "coffee") -> np.ndarray:
    from skimage import data

    img = getattr(data, source)()
    big = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noise = np.random.default_rng(seed).normal(0, 4, big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int = 90, **flags: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for k, v in flags.items():
        params += [getattr(cv2, k), v]
    ok, buf = cv2.imencode(".jpg", img[..., ::-1] if img.ndim == 3 else img, params)
    assert ok
    return buf.tobytes()


def _ycc_to_rgb(y, cb, cr):
    """JFIF's YCbCr → RGB (libjpeg's equations, rounded)."""
    y, cb, cr = (a.astype(np.float64) for a in (y, cb, cr))
    rgb = np.dstack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                     y + 1.772 * (cb - 128)])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def _unit(tmp_path: Path, data: bytes, name: str = "in.jpg", fmt: str = "jpg") -> WorkUnit:
    src = tmp_path / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    out = tmp_path / "out" / (Path(name).stem + "." + fmt)
    return WorkUnit(0, str(src), name, output=str(out), format=fmt)


def _run(tmp_path, data, pipe=THUMB, name="in.jpg", fmt="jpg", **spec):
    unit = _unit(tmp_path, data, name, fmt)
    row = process_unit(JobSpec(pipe, quality=85, **spec), unit)
    out = Path(unit.output).read_bytes() if row["status"] == "ok" else None
    return row, out


# ---- the plane decoder -----------------------------------------------------------------------
@needs_planes
@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
@pytest.mark.parametrize("size", [(1920, 1080), (1001, 667), (37, 23)])
@pytest.mark.parametrize("progressive", [0, 1])
def test_luma_plane_is_libjpegs_gray_decode(reduce, size, progressive):
    data = _jpeg(_photo(size), IMWRITE_JPEG_PROGRESSIVE=progressive)
    y, cb, cr = codecs.decode_planes(data, reduce=reduce)
    h, w = -(-size[1] // reduce), -(-size[0] // reduce)
    gray = simplejpeg.decode_jpeg(data, "GRAY", min_height=h, min_width=w)[..., 0]
    assert y.shape == gray.shape == (h, w)
    np.testing.assert_array_equal(y, gray)
    want = (h, w) if reduce > 1 else (-(-h // 2), -(-w // 2))  # chroma scaled up in the IDCT
    assert cb.shape == cr.shape == want


@needs_planes
@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_scaled_planes_convert_to_libjpegs_rgb_decode(reduce):
    """At 1/2, 1/4, 1/8 libjpeg-turbo scales chroma up in its inverse DCT, so its RGB decode is
    exactly the colour conversion of these planes (to its integer rounding: ±1)."""
    data = _jpeg(_photo((1280, 720), 1, "astronaut"))
    y, cb, cr = codecs.decode_planes(data, reduce=reduce)
    rgb = simplejpeg.decode_jpeg(data, "RGB", min_height=y.shape[0], min_width=y.shape[1])
    diff = np.abs(_ycc_to_rgb(y, cb, cr).astype(int) - rgb)
    assert diff.max() <= 1


@needs_planes
def test_full_size_planes_round_trip_an_independent_encoder():
    """Planes written by simplejpeg's plane encoder (TurboJPEG) come back as written, to the
    error of quality 100."""
    rng = np.random.default_rng(5)
    y = cv2.GaussianBlur(rng.integers(0, 256, (90, 130), np.uint8), (0, 0), 2)
    cb = cv2.GaussianBlur(rng.integers(0, 256, (45, 65), np.uint8), (0, 0), 2)
    cr = cv2.GaussianBlur(rng.integers(0, 256, (45, 65), np.uint8), (0, 0), 2)
    data = simplejpeg.encode_jpeg_yuv_planes(y, cb, cr, quality=100)
    got = codecs.decode_planes(data)
    for a, b in zip(got, (y, cb, cr), strict=True):
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b).max() <= 2


def _icc_srgb() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@needs_planes
def test_other_jpegs_are_not_taken():
    img = _photo((64, 48))
    assert codecs.decode_planes(_jpeg(img)) is not None
    for data in (_jpeg(img, IMWRITE_JPEG_SAMPLING_FACTOR=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
                 _jpeg(img, IMWRITE_JPEG_SAMPLING_FACTOR=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
                 _jpeg(img[..., 0])):
        assert codecs.decode_planes(data) is None
    # CMYK, and an EXIF-rotated photo of odd size at full size (see the upright test below)
    buf = io.BytesIO()
    Image.fromarray(img).convert("CMYK").save(buf, "JPEG")
    assert codecs.decode_planes(buf.getvalue()) is None
    assert codecs.decode_planes(_exif_jpeg(_photo((65, 48)), 6)) is None
    with pytest.raises(DecodeError):
        codecs.decode_planes(b"not a jpeg at all")


@needs_planes
def test_damaged_or_hostile_data_never_gives_planes_that_rgb_decoding_refuses():
    """Any damage libjpeg reports, even one it recovers from, gives None (the RGB decode then
    names it); 400 mutated files neither crash the process nor yield planes from a file the
    strict RGB decoder rejects."""
    data = _jpeg(_photo((320, 240), 2))
    assert codecs.decode_planes(data[: len(data) // 2] + b"\xff\xd9") is None  # cut short
    rng = np.random.default_rng(11)
    yielded = 0
    for _ in range(400):
        bad = bytearray(data)
        for pos in rng.integers(300, len(bad), rng.integers(1, 6)):
            bad[pos] = rng.integers(0, 256)
        try:
            got = codecs.decode_planes(bytes(bad), reduce=int(rng.choice([1, 2, 4, 8])))
        except Exception:
            continue  # refused from the header, as decode() refuses it
        if got is None:
            continue
        yielded += 1
        simplejpeg.decode_jpeg(bytes(bad), "RGB")  # strict: raises on any libjpeg warning
    assert yielded > 0  # some mutations leave valid data (they hit no code the decoder reads)


@needs_planes
def test_pixel_limit_before_any_plane_is_decoded():
    data = _jpeg(_photo((400, 300)))
    with pytest.raises(PixelLimitError, match="pixel limit"):
        codecs.decode_planes(data, max_pixels=1000)


def test_encode_planes_checks_its_arguments():
    y = np.zeros((10, 12), np.uint8)
    with pytest.raises(ValueError, match="4:2:0"):
        codecs.encode_planes(y, np.zeros((4, 6), np.uint8), np.zeros((5, 6), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        codecs.encode_planes(y, np.zeros((5, 6), np.uint8), np.zeros((5, 6), np.uint8),
                             quality=101)
    out = codecs.encode_planes(y, np.zeros((5, 6), np.uint8), np.zeros((5, 6), np.uint8),
                               icc_profile=_icc_srgb())
    assert codecs.icc_profile(out) == _icc_srgb()
    assert codecs.decode(out).shape == (10, 12, 3)


# ---- which jobs take the planes ----------------------------------------------------------------
@pytest.mark.parametrize(("steps", "ok"), [
    ([{"op": "resize", "long_side": 512}], True),
    ([{"op": "gaussian", "sigma": 2}, {"op": "resize", "factor": 0.5},
      {"op": "gaussian", "sigma": 1, "mode": "nearest"}], True),
    ([{"op": "resize", "long_side": 512, "method": "bilinear"}], False),
    ([{"op": "gaussian", "sigma": 1, "mode": "constant"}], False),  # zero chroma is not grey
    # mirror reflects about the edge pixel's centre: half a luma pixel off on chroma
    ([{"op": "resize", "factor": 0.5}, {"op": "gaussian", "sigma": 2, "mode": "mirror"}], False),
    ([{"op": "resize", "factor": 0.5}, {"op": "gaussian", "sigma": 2, "mode": "wrap"}], True),
    ([{"op": "resize", "long_side": 512}, {"op": "unsharp_mask"}], False),
    ([{"op": "resize", "long_side": 512}, {"op": "sharpness"}], False),  # measures need RGB
])
def test_planar_pipelines(steps, ok):
    assert planar_pipeline(Pipeline.from_steps(steps)) is ok


@pytest.mark.parametrize(("size", "reduce", "ok"), [
    ((1920, 1080), 2, True),   # 960×540 → 512×288
    ((1920, 1080), 1, True),
    ((1500, 1000), 1, False),  # → 512×341: a chroma pixel would not be 2×2 luma pixels
    ((1921, 1080), 1, False),  # odd full-size width: chroma is not exactly half
])
def test_planar_sizes(size, reduce, ok):
    assert planar_fits(THUMB, *size, reduce) is ok


# ---- the job on planes -----------------------------------------------------------------------
@needs_planes
@pytest.mark.parametrize(("source", "size"), [("coffee", (1920, 1080)),
                                               ("astronaut", (2048, 1536)),
                                               ("chelsea", (1024, 768)),
                                               ("rocket", (768, 1024))])
def test_planes_output_is_as_exact_as_the_rgb_routes(tmp_path, source, size):
    img = _photo(size, 4, source)
    data = _jpeg(img)
    fast, fast_out = _run(tmp_path / "p", data)
    slow, slow_out = _run(tmp_path / "r", data, planes=False)
    assert fast["status"] == slow["status"] == "ok"
    assert fast.get("decode_planes") is True and "decode_planes" not in slow
    assert fast["decode_reduce"] == slow["decode_reduce"]
    for k in ("out_width", "out_height", "width", "height"):
        assert fast[k] == slow[k]
    assert set(fast) == set(slow) | {"decode_planes"}  # the same timings, per step too
    # the exact result: float pipeline on the full-size decode, no rounding anywhere
    full = codecs.decode(data).astype(np.float32)
    tw, th = fast["out_width"], fast["out_height"]
    small = cv2.resize(full, (tw, th), interpolation=cv2.INTER_AREA)
    k = cv2.getGaussianKernel(2 * int(4 * 1.5 + 0.5) + 1, 1.5)
    exact = cv2.sepFilter2D(small, -1, k, k, borderType=cv2.BORDER_REFLECT)
    got, rgb_route = codecs.decode(fast_out), codecs.decode(slow_out)
    assert got.shape == rgb_route.shape == exact.shape
    # measured: -0.05 to +0.02 dB from the RGB route (42.0-44.9 dB) with the extension's
    # accurate-DCT plane encoder; simplejpeg's plane encoder, used before, was 0.07-0.24 dB
    # below. The two outputs are 46.5-47.2 dB apart
    p_planes, p_rgb = _psnr(got, exact), _psnr(rgb_route, exact)
    assert p_planes >= p_rgb - 0.1, (p_planes, p_rgb)
    assert _psnr(got, rgb_route) >= 45
    # a wrongly placed or scaled chroma plane (half a pixel off, Cb/Cr swapped) costs more
    # than this: the colour itself is checked where the image has colour
    assert np.abs(got.astype(int).mean((0, 1)) - exact.mean((0, 1))).max() < 1.0


@needs_planes
def test_inputs_the_planes_cannot_take_keep_their_rgb_rows(tmp_path):
    img = _photo((1500, 1000), 6)
    cases = {
        "odd_output.jpg": (_jpeg(img), THUMB, "jpg"),
        "444.jpg": (_jpeg(img, IMWRITE_JPEG_SAMPLING_FACTOR=cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
                    THUMB, "jpg"),
        "gray.jpg": (_jpeg(img[..., 1]), THUMB, "jpg"),
        "to_png.jpg": (_jpeg(_photo((1920, 1080))), THUMB, "png"),
        "sharpened.jpg": (_jpeg(_photo((1920, 1080))), Pipeline.from_steps(
            [*THUMB.to_dict()["steps"], {"op": "unsharp_mask"}]), "jpg"),
    }
    for name, (data, pipe, fmt) in cases.items():
        d = tmp_path / name
        fast, fast_out = _run(d / "a", data, pipe, name, fmt)
        _, slow_out = _run(d / "b", data, pipe, name, fmt, planes=False)
        assert fast["status"] == "ok" and "decode_planes" not in fast, name
        assert fast_out == slow_out, name


def _exif_jpeg(img: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


@needs_planes
@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("reduce", [1, 2])
def test_planes_are_turned_upright_as_the_pixels_are(orientation, reduce):
    """Every EXIF orientation: the upright planes, converted, are the upright RGB decode (to
    libjpeg's upsampling); an odd-sized full-size decode is left to the RGB way."""
    data = _exif_jpeg(_photo((640, 480), 7), orientation)
    y, cb, cr = codecs.decode_planes(data, reduce=reduce)
    rgb = codecs.decode(data, reduce=reduce)  # upright
    assert y.shape == rgb.shape[:2]
    up = cv2.resize(np.dstack([cb, cr]), (y.shape[1], y.shape[0]),
                    interpolation=cv2.INTER_LINEAR) if cb.shape != y.shape else np.dstack([cb, cr])
    got = _ycc_to_rgb(y, up[..., 0], up[..., 1])
    assert _psnr(got, rgb) > 35  # a wrongly turned chroma plane is below 25 dB
    assert codecs.decode_planes(_exif_jpeg(_photo((641, 480), 7), orientation)) is None
    assert codecs.decode_planes(_exif_jpeg(_photo((641, 480), 7), orientation),
                                reduce=2) is not None


@needs_planes
def test_exif_rotated_jpeg_takes_the_planes_upright(tmp_path):
    data = _exif_jpeg(_photo((1920, 1080), 7), 6)
    row, out = _run(tmp_path / "p", data)
    slow, slow_out = _run(tmp_path / "r", data, planes=False)
    assert row["status"] == "ok" and row.get("decode_planes") is True
    assert (row["out_width"], row["out_height"]) == (slow["out_width"], slow["out_height"]) \
        == (288, 512)
    assert _psnr(codecs.decode(out), codecs.decode(slow_out)) >= 45


@needs_planes
@pytest.mark.parametrize("damage", ["truncated", "corrupt", "bomb"])
def test_damaged_inputs_get_the_rows_they_always_had(tmp_path, damage):
    data = _jpeg(_photo((1920, 1080), 8))
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "corrupt":
        b = bytearray(data)
        b[len(b) // 2: len(b) // 2 + 64] = bytes(range(64))
        data = bytes(b)
    else:  # a header claiming 30000² over the same data
        i = data.index(b"\xff\xc0") + 5
        data = data[:i] + (30000).to_bytes(2, "big") * 2 + data[i + 4:]
    fast, _ = _run(tmp_path / "a", data)
    slow, _ = _run(tmp_path / "b", data, planes=False)
    assert fast["status"] == slow["status"] and fast["reason"] == slow["reason"], (fast, slow)
    if damage != "corrupt":  # (64 changed bytes mid-scan: garbage libjpeg does not notice)
        assert slow["status"] == "invalid" and "decode_planes" not in fast


@needs_planes
def test_icc_profile_is_carried_on_the_planes(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_photo((1920, 1080), 9)).save(buf, "JPEG", quality=90,
                                                  icc_profile=_icc_srgb())
    row, out = _run(tmp_path, buf.getvalue())
    assert row["decode_planes"] is True and row["icc"]
    assert codecs.icc_profile(out) == _icc_srgb()


def test_without_the_extension_jobs_decode_to_rgb(tmp_path, monkeypatch):
    monkeypatch.setattr(_planes, "_jpegyuv", None)
    assert not codecs.planes_available()
    assert codecs.decode_planes(_jpeg(_photo((64, 48)))) is None
    row, out = _run(tmp_path, _jpeg(_photo((1920, 1080))))
    assert row["status"] == "ok" and "decode_planes" not in row and out


def test_the_extension_is_built_where_it_can_be():
    """A machine with a C compiler and libjpeg's headers (this project's) must have built it:
    a silently failed optional build would only show as a slower benchmark."""
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    headers = [Path(p) / "jpeglib.h" for p in ("/usr/include", "/usr/local/include")]
    if not (shutil.which("cc") or shutil.which("gcc")) or not include.exists() or not any(
            h.exists() for h in headers):
        pytest.skip("no C compiler or no libjpeg headers: the optional build is skipped here")
    assert codecs.planes_available(), (
        "pixelmill.codecs._jpegyuv was not built; reinstall (pip install -e .) and read the "
        "compiler's output")


@needs_planes
def test_run_and_cli_take_no_planes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(_jpeg(_photo((1920, 1080), 10)))
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - op: resize\n    long_side: 512\n  - op: gaussian\n"
                    "    sigma: 1.5\n")
    import pyarrow.parquet as pq

    cols = {}
    for flag in ([], ["--no-planes"]):
        out = tmp_path / ("out" + "".join(flag))
        r = subprocess.run([sys.executable, "-m", "pixelmill", "run", str(pipe), str(src), str(out),
                            "--workers", "1", "-q", "--no-report", *flag],
                           capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        assert r.returncode == 0, r.stderr
        cols[bool(flag)] = pq.read_table(out / "manifest.parquet").column_names
    assert "decode_planes" in cols[False] and "decode_planes" not in cols[True]


# ---- the plane encoder and the steps that only move pixels ------------------------------------
@needs_planes
@pytest.mark.parametrize("size", [(1920, 1080), (1001, 777), (512, 288), (17, 9), (16, 15),
                                  (2, 2), (1, 1)])
def test_planes_written_back_at_their_quality_come_back_within_rounding(size):
    """The encoder pads to whole MCUs by repeating the edge and uses the accurate DCT: the
    planes of a decoded JPEG written back at its quality re-quantize to (nearly) the same
    coefficients, as OpenCV's encoder does with the RGB decode (the RGB route); simplejpeg's
    plane encoder lost 15 dB of luma there. An independent decoder (Pillow's) reads it."""
    data = _jpeg(_photo(size, 2), quality=90)
    y, cb, cr = codecs.decode_planes(data)
    again = codecs.encode_planes(y, cb, cr, quality=90)
    y2, cb2, cr2 = codecs.decode_planes(again)
    rgb = codecs.decode(data)
    _, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    y_cv = codecs.decode_planes(buf.tobytes())[0]  # the RGB route's luma, OpenCV-encoded
    for got, want in ((y2, y), (cb2, cb), (cr2, cr)):
        assert got.shape == want.shape
    if size[0] >= 1000:  # photos: the luma comes back as closely as OpenCV's re-encode gives it
        assert _psnr(y2, y) >= max(65.0, _psnr(y_cv, y) - 1.0), (_psnr(y2, y), _psnr(y_cv, y))
        assert min(_psnr(cb2, cb), _psnr(cr2, cr)) >= 65.0
    pil = np.asarray(Image.open(io.BytesIO(again)).convert("RGB"))
    assert pil.shape == rgb.shape
    if (pil != rgb).any():
        assert _psnr(pil, rgb) >= (60.0 if size[0] >= 1000 else 40.0)


@pytest.mark.parametrize(("steps", "ok"), [
    ([{"op": "rotate", "angle": 90, "expand": True}, {"op": "flip"}], True),
    ([{"op": "rotate", "angle": -90}, {"op": "flip", "axis": "both"}], True),
    ([{"op": "rotate", "angle": 180}, {"op": "resize", "long_side": 512}], True),
    ([{"op": "rotate", "angle": 45}], False),  # interpolates and fills corners: RGB
    ([{"op": "rotate", "angle": 90}, {"op": "crop", "x": 0, "y": 0, "width": 10, "height": 10}],
     True),
    ([{"op": "rotate", "angle": 90}, {"op": "median", "size": 3}], False),
])
def test_pipelines_that_only_move_pixels_are_planar(steps, ok):
    assert planar_pipeline(Pipeline.from_steps(steps)) is ok


ROTATE_FLIP = Pipeline.from_steps([{"op": "rotate", "angle": 90, "expand": True},
                                   {"op": "flip", "axis": "horizontal"}])


@needs_planes
@pytest.mark.parametrize(("source", "size"), [("coffee", (1920, 1080)),
                                               ("astronaut", (2048, 1536)),
                                               ("chelsea", (1024, 768))])
def test_rotated_and_flipped_planes_are_closer_than_the_rgb_route(tmp_path, source, size):
    """A quarter turn and a mirror move each 2×2 block of luma with its chroma pixel: on
    planes they are exact, and only the JPEG encoding changes anything (measured at the job's
    quality 85: 0.1-0.3 dB closer to the rotated decode than the RGB route, which upsamples,
    converts and averages the chroma back, 41.8-44.0 dB; at quality 90, 0.6-1.4 dB)."""
    data = _jpeg(_photo(size, 4, source))
    fast, fast_out = _run(tmp_path / "p", data, pipe=ROTATE_FLIP)
    slow, slow_out = _run(tmp_path / "r", data, pipe=ROTATE_FLIP, planes=False)
    assert fast["status"] == slow["status"] == "ok"
    assert fast.get("decode_planes") is True and "decode_planes" not in slow
    assert (fast["out_width"], fast["out_height"]) == (slow["out_width"], slow["out_height"]) \
        == (size[1], size[0])
    exact = cv2.flip(np.ascontiguousarray(np.rot90(codecs.decode(data))), 1)
    got, rgb_route = codecs.decode(fast_out), codecs.decode(slow_out)
    assert _psnr(got, exact) >= _psnr(rgb_route, exact)
    assert np.abs(got.astype(int).mean((0, 1)) - exact.mean((0, 1))).max() < 0.5


@needs_planes
def test_odd_sized_photos_are_rotated_on_rgb(tmp_path):
    data = _jpeg(_photo((1001, 667), 1))  # a chroma pixel at the odd edge is half outside
    assert not planar_fits(ROTATE_FLIP, 1001, 667, 1)
    row, out = _run(tmp_path, data, pipe=ROTATE_FLIP)
    assert row["status"] == "ok" and "decode_planes" not in row
    assert codecs.decode(out).shape == (1001, 667, 3)


def test_encode_planes_refuses_planes_that_are_not_8_bit():
    """uint16 planes were copied into the padded uint8 planes with NumPy's wrapping cast (a
    luma of 300 came back as 44); the simplejpeg fallback refused them, as this does."""
    y = np.full((16, 16), 300, np.uint16)
    c = np.full((8, 8), 128, np.uint16)
    with pytest.raises(ValueError, match="expected uint8 Y/Cb/Cr planes, got uint16"):
        codecs.encode_planes(y, c, c)
    with pytest.raises(ValueError, match="got float32/uint8/uint8"):
        codecs.encode_planes(y.astype(np.float32), c.astype(np.uint8), c.astype(np.uint8))


@pytest.mark.parametrize(("steps", "size", "reduce", "ok"), [
    ([{"op": "crop", "x": 100, "y": 40, "width": 800, "height": 600}], (1920, 1080), 1, True),
    ([{"op": "crop", "x": 1000, "y": 500, "width": 5000, "height": 5000}], (1920, 1080), 1,
     True),  # clipped at the (even) edge
    ([{"op": "crop", "x": 101, "y": 40, "width": 800, "height": 600}], (1920, 1080), 1, False),
    ([{"op": "crop", "x": 100, "y": 40, "width": 801, "height": 600}], (1920, 1080), 1, False),
    ([{"op": "crop", "x": 2000, "y": 0, "width": 10, "height": 10}], (1920, 1080), 1, False),
    # resize then a centre crop (the classic 256 -> 224): chroma at half size after the resize
    ([{"op": "resize", "width": 512, "height": 288, "method": "area"},
      {"op": "crop", "x": 144, "y": 32, "width": 224, "height": 224}], (1920, 1080), 2, True),
    ([{"op": "resize", "width": 512, "height": 288, "method": "area"},
      {"op": "crop", "x": 143, "y": 32, "width": 224, "height": 224}], (1920, 1080), 2, False),
])
def test_crops_on_whole_chroma_pixels_are_planar(steps, size, reduce, ok):
    assert planar_fits(Pipeline.from_steps(steps), *size, reduce) is ok


@needs_planes
@pytest.mark.parametrize("steps", [
    [{"op": "crop", "x": 100, "y": 40, "width": 800, "height": 600}],
    [{"op": "rotate", "angle": 90}, {"op": "crop", "x": 1000, "y": 500, "width": 5000,
                                      "height": 5000}],
    [{"op": "resize", "width": 512, "height": 288, "method": "area"},  # decoded at 1/2
     {"op": "crop", "x": 144, "y": 32, "width": 224, "height": 224}],
])
def test_cropped_planes_are_the_window_of_the_input(tmp_path, steps):
    data = _jpeg(_photo((1920, 1080), 5, "astronaut"))
    pipe = Pipeline.from_steps(steps)
    fast, fast_out = _run(tmp_path / "p", data, pipe=pipe)
    slow, slow_out = _run(tmp_path / "r", data, pipe=pipe, planes=False)
    assert fast.get("decode_planes") is True and "decode_planes" not in slow
    exact = pipe(codecs.decode(data))
    got, rgb_route = codecs.decode(fast_out), codecs.decode(slow_out)
    assert got.shape == rgb_route.shape == exact.shape
    # a crop alone is exact on planes (closer than the RGB route); after a resize the
    # thumbnail's tolerance applies (the decode at 1/2 is not the reference's full decode)
    moved_only = all(s["op"] != "resize" for s in steps)
    assert _psnr(got, exact) >= _psnr(rgb_route, exact) - (0 if moved_only else 0.1)
    assert np.abs(got.astype(int).mean((0, 1)) - exact.mean((0, 1))).max() < 1.0


@needs_planes
def test_a_crop_outside_the_image_keeps_its_rgb_row(tmp_path):
    data = _jpeg(_photo((640, 480), 5))
    pipe = Pipeline.from_steps([{"op": "crop", "x": 700, "y": 0, "width": 10, "height": 10}])
    fast, _ = _run(tmp_path / "p", data, pipe=pipe)
    slow, _ = _run(tmp_path / "r", data, pipe=pipe, planes=False)
    assert fast["status"] == slow["status"] != "ok" and fast["reason"] == slow["reason"]
    assert "decode_planes" not in fast
