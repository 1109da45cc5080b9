"""Audit of the Y/Cb/Cr plane route (codecs/_planes.py, _jpegyuv.c, jobs/_planar.py).

Which pipelines the planes may take: those where the half-size chroma plane cannot follow the
luma (enlargements, gaussians truncated short, gaussians too narrow for half-size chroma) must
go the RGB way, as the exact float computation shows. And the plane decoder's robustness:
odd sizes at every scale, progressive/restart/optimized files, threads, damaged data.
"""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pixelmill import codecs
from pixelmill.jobs import JobSpec, WorkUnit, process_unit
from pixelmill.jobs._planar import planar_fits, planar_pipeline
from pixelmill.pipeline import Pipeline

needs_planes = pytest.mark.skipif(not codecs.planes_available(),
                                  reason="the plane decoder (C extension) is not built here")


def _photo(size: tuple[int, int], seed: int = 0, source: str = "astronaut") -> np.ndarray:
    from skimage import data

    img = getattr(data, source)()
    interp = cv2.INTER_AREA if size[0] < img.shape[1] else cv2.INTER_CUBIC
    big = cv2.resize(img, size, interpolation=interp).astype(np.int16)
    noise = np.random.default_rng(seed).normal(0, 3, big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _run(tmp_path: Path, data: bytes, pipe: Pipeline, planes: bool):
    src = tmp_path / "in.jpg"
    src.write_bytes(data)
    out = tmp_path / ("planes.jpg" if planes else "rgb.jpg")
    row = process_unit(JobSpec(pipe, quality=95, planes=planes),
                       WorkUnit(0, str(src), "in.jpg", output=str(out), format="jpg"))
    assert row["status"] == "ok", row
    return row, codecs.decode(out.read_bytes())


def _compare(tmp_path, data, steps):
    """(row of the default job, PSNR of its output against the exact float computation,
    the RGB route's PSNR against it, PSNR between the two outputs)."""
    pipe = Pipeline.from_steps(steps)
    row, got = _run(tmp_path, data, pipe, True)
    _, rgb = _run(tmp_path, data, pipe, False)
    exact = np.clip(pipe.run(codecs.decode(data).astype(np.float32)).image, 0, 255)
    return row, _psnr(got, exact), _psnr(rgb, exact), _psnr(got, rgb)


# ---- pipelines the half-size chroma cannot follow ------------------------------------------
@pytest.mark.parametrize("steps", [
    [{"op": "resize", "long_side": 512}],                      # 64×48 → 512×384
    [{"op": "resize", "factor": 2}],
    [{"op": "resize", "width": 66, "height": 48}],              # wider only
    [{"op": "resize", "factor": 0.5}, {"op": "resize", "factor": 4}],
])
def test_enlargements_are_not_taken(steps):
    assert planar_pipeline(Pipeline.from_steps(steps))
    assert not planar_fits(Pipeline.from_steps(steps), 64, 48, 1)


@needs_planes
def test_enlarged_small_jpeg_is_as_exact_as_the_rgb_route(tmp_path):
    """``area`` enlarges by replication: on planes the stored half-size chroma came out in
    2×2-luma blocks, 11 dB further from the exact result than the RGB route's (35.8 vs 46.8)."""
    data = _jpeg(_photo((64, 48)))
    row, p_planes, p_rgb, _ = _compare(tmp_path, data, [{"op": "resize", "long_side": 512}])
    assert p_planes >= p_rgb - 0.3, (p_planes, p_rgb)
    assert "decode_planes" not in row


@pytest.mark.parametrize(("truncate", "ok"), [(0.5, False), (1.0, False), (1.9, False),
                                              (2.0, True), (4.0, True)])
def test_short_truncated_gaussians_are_not_taken(truncate, ok):
    pipe = Pipeline.from_steps([{"op": "resize", "long_side": 120},
                                {"op": "gaussian", "sigma": 3, "truncate": truncate}])
    assert planar_pipeline(pipe) is ok
    assert planar_fits(pipe, 640, 480, 4) is ok


@needs_planes
def test_short_truncated_gaussian_is_as_exact_as_the_rgb_route(tmp_path):
    """The kernel radius ``int(truncate * sigma + 0.5)`` is rounded at each plane's scale: at
    truncate 1, sigma 3 the luma kernel reaches 3 luma pixels, the chroma one (sigma 1.5, radius
    2) 4, where its taps weigh 60 % of the centre: 39.4 dB against the RGB route's 43.9."""
    data = _jpeg(_photo((640, 480)))
    row, p_planes, p_rgb, _ = _compare(tmp_path, data, [
        {"op": "resize", "long_side": 120}, {"op": "gaussian", "sigma": 3, "truncate": 1}])
    assert p_planes >= p_rgb - 0.3, (p_planes, p_rgb)
    assert "decode_planes" not in row


@pytest.mark.parametrize(("steps", "reduce", "ok"), [
    ([{"op": "gaussian", "sigma": 0.6}], 1, False),        # 0.3 on the chroma planes
    ([{"op": "gaussian", "sigma": 0.99}], 1, False),
    ([{"op": "gaussian", "sigma": 1.0}], 1, True),
    ([{"op": "gaussian", "sigma": 0}], 1, True),            # the identity
    ([{"op": "resize", "width": 320, "height": 240}, {"op": "gaussian", "sigma": 0.6}], 2, False),
    # at 1/2 libjpeg gives chroma at the luma size: the gaussian runs there at full sigma
    ([{"op": "resize", "width": 320, "height": 240}], 2, True),
    ([{"op": "gaussian", "sigma": 0.6}], 2, True),
])
def test_narrow_gaussians_on_half_size_chroma_are_not_taken(steps, reduce, ok):
    assert planar_fits(Pipeline.from_steps(steps), 640, 480, reduce) is ok


@needs_planes
def test_narrow_gaussian_is_as_exact_as_the_rgb_route(tmp_path):
    """Sigma 0.6 is 0.3 on half-size chroma, where a sampled gaussian has a tenth of that
    variance: the chroma stayed unblurred, 0.9 dB below the RGB route and 42.9 dB from it."""
    data = _jpeg(_photo((640, 480)))
    row, p_planes, p_rgb, between = _compare(tmp_path, data, [{"op": "gaussian", "sigma": 0.6}])
    assert p_planes >= p_rgb - 0.3, (p_planes, p_rgb)
    assert between >= 44
    assert "decode_planes" not in row


@needs_planes
def test_the_thumbnail_job_still_takes_the_planes(tmp_path):
    data = _jpeg(_photo((1280, 720)))
    row, p_planes, p_rgb, between = _compare(tmp_path, data, [
        {"op": "resize", "long_side": 512}, {"op": "gaussian", "sigma": 1.5}])
    assert row.get("decode_planes") is True
    # measured 45.16 vs 45.60 dB (46.2 dB apart) on this photo: the 0.3 dB of test_planar.py's
    # four photos is not a bound for every photo
    assert p_planes >= p_rgb - 0.6 and between >= 44, (p_planes, p_rgb, between)


# ---- the plane decoder ----------------------------------------------------------------------
def _variants(img: np.ndarray) -> dict[str, bytes]:
    out = {}
    for name, kw in {"baseline": {}, "progressive": {"progressive": True},
                     "optimized": {"optimize": True},
                     "restart": {"restart_marker_blocks": 1}}.items():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=85, subsampling=2, **kw)
        out[name] = buf.getvalue()
    return out


@needs_planes
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (17, 9), (9, 17), (8, 600), (600, 8),
                                  (1921, 1081)])
def test_odd_sizes_at_every_scale(size):
    for name, data in _variants(_photo(size, 1)).items():
        for reduce in (1, 2, 4, 8):
            y, cb, cr = codecs.decode_planes(data, reduce=reduce)
            h, w = -(-size[1] // reduce), -(-size[0] // reduce)
            assert y.shape == (h, w), (name, reduce)
            assert cb.shape == cr.shape == ((h, w) if reduce > 1 else (-(-h // 2), -(-w // 2)))
            if h > 1 or w > 1:  # 1×1 at 1/4 and 1/2: simplejpeg's scale is ambiguous
                gray = simplejpeg.decode_jpeg(data, "GRAY", min_height=h, min_width=w,
                                              min_factor=reduce)[..., 0]
                if gray.shape == y.shape:
                    np.testing.assert_array_equal(y, gray, err_msg=f"{name} 1/{reduce}")


@needs_planes
def test_threads_give_the_single_threaded_planes():
    datas = [_variants(_photo(s, 2))[v] for s in ((640, 480), (333, 257))
             for v in ("baseline", "progressive")]
    want = [[tuple(p.copy() for p in codecs.decode_planes(d, reduce=r)) for r in (1, 2, 4, 8)]
            for d in datas]
    bad = []

    def work():
        for _ in range(5):
            for d, per in zip(datas, want, strict=True):
                for r, planes in zip((1, 2, 4, 8), per, strict=True):
                    got = codecs.decode_planes(d, reduce=r)
                    if not all(np.array_equal(a, b) for a, b in zip(got, planes, strict=True)):
                        bad.append(r)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@needs_planes
def test_damaged_and_odd_buffers_never_crash():
    from pixelmill.codecs import _planes

    ext = _planes._jpegyuv
    base = list(_variants(_photo((97, 61), 3)).values())
    rng = random.Random(7)
    for _ in range(600):
        d = bytearray(rng.choice(base))
        kind = rng.randrange(4)
        if kind == 0:
            for _ in range(rng.randint(1, 6)):
                d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            d = d[:rng.randrange(len(d))]
        elif kind == 2:
            i = rng.randrange(len(d))
            del d[i:i + rng.randint(1, 100)]
        else:
            d[rng.randrange(min(len(d), 400))] = rng.randrange(256)
        got = ext.decode_planes(memoryview(d), rng.choice((1, 2, 4, 8)))
        assert got is None or len(got) == 3
    assert ext.decode_planes(b"", 1) is None
    assert ext.decode_planes(b"\xff\xd8", 8) is None
    data = base[0]
    assert ext.decode_planes(data + b"\x00" * 100, 2) is not None  # extra data after EOI
    twelve = bytearray(data)  # the frame header says 12 bits: refused, not decoded as 8
    sof = twelve.find(b"\xff\xc0")
    twelve[sof + 4] = 12
    assert ext.decode_planes(bytes(twelve), 1) is None
    with pytest.raises(ValueError):
        ext.decode_planes(data, 3)
