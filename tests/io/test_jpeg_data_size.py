"""A JPEG header that claims more pixels than its data can hold is refused from the header.

Bug: a 120×80 baseline JPEG with only its SOF0 size patched to 20000×20000 (1–3 KB on disk)
was a valid image to ``scan --verify`` (libjpeg warns "premature end of data segment" and fills
gray), an ``ok`` row with a gray output in ``run``, and cost 1.2 GB to decode. Every 8×8 block of
a sequential Huffman JPEG takes at least 2 bits (a DC code and an AC code or end of block, each
at least one bit), so its image data needs at least blocks/4 bytes. The independent reference
for "corrupt" is libjpeg itself (through OpenCV): it warns on exactly such files.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from pixelmill import codecs
from pixelmill.codecs import _decode
from pixelmill.errors import DecodeError
from pixelmill.images import read_image
from pixelmill.inventory import scan


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment up to the first SOS (end: after its header)."""
    out, pos = [], 2
    while True:
        marker, length = data[pos + 1], struct.unpack_from(">H", data, pos + 2)[0]
        out.append((marker, pos, pos + 2 + length))
        if marker == 0xDA:
            return out
        pos += 2 + length


def _image_data(data: bytes) -> tuple[int, int]:
    """(start, end) of a single-scan JPEG's entropy-coded data (from the SOS header to EOI)."""
    start = _segments(data)[-1][2]
    end = data.rindex(b"\xff\xd9")
    return start, end


def _patch_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    sof = next(p for m, p, _ in _segments(data) if m in (0xC0, 0xC1, 0xC2))
    struct.pack_into(">HH", out, sof + 5, height, width)
    return bytes(out)


def _libjpeg_warns(data: bytes, capfd) -> bool:
    """Whether libjpeg (OpenCV's decoder) reports corrupt or missing data for ``data``."""
    capfd.readouterr()
    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    err = capfd.readouterr().err
    return "Corrupt JPEG data" in err or "Premature end" in err


@pytest.fixture(scope="module")
def small_jpeg(photo) -> bytes:
    """A 120×80 baseline JPEG written by OpenCV (the bug report's file, before patching)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(photo[:80, :120], cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture
def no_pixel_decoder(monkeypatch):
    """Fail the test if OpenCV is asked to decode pixels (the refusal must come first)."""

    class _NoDecode:
        def __getattr__(self, name):
            if name == "imdecode":
                raise AssertionError("pixels decoded: the header should have refused the file")
            return getattr(cv2, name)

    class _NoSimplejpeg:
        def decode_jpeg(self, *a, **k):
            raise AssertionError("pixels decoded: the header should have refused the file")

    monkeypatch.setattr(_decode, "cv2", _NoDecode())
    monkeypatch.setattr(_decode, "_simplejpeg", _NoSimplejpeg)


def test_patched_sof_is_refused_from_the_header(small_jpeg, no_pixel_decoder):
    bomb = _patch_size(small_jpeg, 20000, 20000)
    assert len(bomb) == len(small_jpeg) < 10_000
    with pytest.raises(DecodeError) as e:
        codecs.probe(bomb)
    # 4:2:0: 1250×1250 MCUs of 6 blocks = 9,375,000 blocks = 2,343,750 bytes at 2 bits a block
    assert str(e.value).startswith("corrupt JPEG: ")
    assert "cannot hold 20000×20000 pixels (a baseline JPEG needs at least 2.3 MB)" in str(e.value)
    for fn in (codecs.decode, codecs.verify):
        with pytest.raises(DecodeError, match="cannot hold 20000×20000"):
            fn(bomb)


def test_patched_sof_is_an_invalid_scan_row_with_or_without_verify(
        tmp_path, small_jpeg, capfd, engine):
    bomb = _patch_size(small_jpeg, 20000, 20000)
    assert _libjpeg_warns(bomb, capfd) and not _libjpeg_warns(small_jpeg, capfd)
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    (tmp_path / "good.jpg").write_bytes(small_jpeg)
    for verify in (False, True):
        rows = {r["uri"].rsplit("/", 1)[-1]: r
                for r in scan(str(tmp_path), verify=verify, engine=engine).to_pylist()}
        assert rows["good.jpg"]["valid"], verify
        assert not rows["bomb.jpg"]["valid"], verify
        assert "corrupt JPEG" in rows["bomb.jpg"]["reason"]
        assert "20000×20000" in rows["bomb.jpg"]["reason"]


def test_truncated_bomb_is_refused_by_decode_before_any_pixel(tmp_path, small_jpeg,
                                                              no_pixel_decoder):
    # without its end-of-image marker the bytes could be only the head of a file: probe cannot
    # judge them, but decode has the whole file
    cut = _patch_size(small_jpeg, 20000, 20000)[:-2]
    assert codecs.probe(cut).width == 20000
    for fn in (codecs.decode, codecs.verify):
        with pytest.raises(DecodeError, match=r"^truncated JPEG: .* cannot hold 20000×20000"):
            fn(cut)
    (tmp_path / "cut.jpg").write_bytes(cut)
    with pytest.raises(DecodeError, match=r"cut\.jpg: truncated JPEG"):
        read_image(str(tmp_path / "cut.jpg"))


def test_a_head_of_a_large_jpeg_is_not_judged(rng):
    noise = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    data = codecs.encode(noise, "jpg", quality=95)
    assert len(data) > 2 * 65536
    head = data[:65536]  # what a header-only scan reads
    assert codecs.probe(head).width == 400
    bomb = _patch_size(data, 60000, 60000)
    assert codecs.probe(bomb[:65536]).width == 60000  # the head alone cannot tell
    with pytest.raises(DecodeError, match=r"corrupt JPEG: .* 60000×60000"):
        codecs.probe(bomb)  # the whole file can


def _pil_jpeg(array: np.ndarray, mode: str, **save_kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, "JPEG", **save_kw)
    return buf.getvalue()


def _real_jpegs(photo: np.ndarray, rng) -> dict[str, bytes]:
    black = np.zeros((57, 91, 3), np.uint8)  # odd sizes: MCU padding in both directions
    noise = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = {}
    for name, arr in (("photo", photo), ("black", black), ("noise", noise),
                      ("1x1", photo[:1, :1]), ("17x9", photo[:9, :17])):
        for q in (1, 50, 95, 100):
            for sub in (0, 1, 2):
                for optimize in (False, True):
                    out[f"pil-{name}-q{q}-s{sub}-o{optimize}"] = _pil_jpeg(
                        arr, "RGB", quality=q, subsampling=sub, optimize=optimize)
            out[f"pil-{name}-q{q}-progressive"] = _pil_jpeg(arr, "RGB", quality=q,
                                                            progressive=True, optimize=True)
            out[f"pil-{name}-q{q}-gray"] = _pil_jpeg(arr, "L", quality=q, optimize=True)
            out[f"pil-{name}-q{q}-cmyk"] = _pil_jpeg(arr, "CMYK", quality=q, optimize=True)
            bgr = np.ascontiguousarray(arr[..., ::-1])
            for rst in (0, 1):
                for factor in (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411,
                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444):
                    _, buf = cv2.imencode(".jpg", bgr, [
                        cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_OPTIMIZE, 1,
                        cv2.IMWRITE_JPEG_RST_INTERVAL, rst,
                        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
                    out[f"cv2-{name}-q{q}-rst{rst}-{factor:x}"] = buf.tobytes()
    return out


def test_every_real_jpeg_passes(photo, rng):
    for name, data in _real_jpegs(photo, rng).items():
        info = codecs.probe(data, whole=True)
        assert info.format == "jpg", name
        codecs.verify(data)


def test_flat_black_optimized_is_the_tightest_case_and_the_rule_holds_there(capfd):
    # one Huffman code per table, 1 bit each: exactly 2 bits a block, so the rule is as tight
    # as it can be without refusing a real file; a few bytes less and libjpeg warns too
    width, height = 389, 257
    data = _pil_jpeg(np.zeros((height, width, 3), np.uint8), "RGB", quality=75, subsampling=2,
                     optimize=True)
    blocks = -(-width // 16) * -(-height // 16) * (4 + 1 + 1)  # 4:2:0 MCUs of 6 blocks
    start, end = _image_data(data)
    assert blocks <= 4 * (end - start) < 1.01 * blocks  # 2 bits a block, and the last byte
    codecs.probe(data, whole=True)
    assert not _libjpeg_warns(data, capfd)
    cut = data[:start + 16] + data[start + 16 + 3 : ]  # 3 bytes short: 24 blocks' worth
    assert _libjpeg_warns(cut, capfd)
    with pytest.raises(DecodeError) as e:
        codecs.probe(cut)
    assert str(e.value) == (f"corrupt JPEG: {end - start - 3} bytes of image data cannot hold "
                            f"389×257 pixels (a baseline JPEG needs at least {-(-blocks // 4)} bytes)")


def _multi_scan_black(width: int, height: int, scans: int = 3) -> bytes:
    """A sequential JPEG of 3 components coded in separate (non-interleaved) scans, built from
    Pillow's gray JPEGs of a black image (same tables), one scan per component."""
    gray = _pil_jpeg(np.zeros((height, width), np.uint8), "L", quality=75, optimize=True)
    segs = _segments(gray)
    tables = b"".join(gray[p:e] for m, p, e in segs if m in (0xDB, 0xC4))
    start, end = _image_data(gray)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(
        [1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    body = b"".join(b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, cid, 0x00, 0, 63, 0)
                    + gray[start:end] for cid in (1, 2, 3)[:scans])
    return b"\xff\xd8" + tables + sof + body + b"\xff\xd9"


def test_data_of_every_scan_counts(capfd):
    data = _multi_scan_black(75, 41)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), 0), 0)
    assert not _libjpeg_warns(data, capfd)
    assert codecs.probe(data, whole=True).shape() == (41, 75, 3)
    # the third component coded nowhere: a third of the blocks have no data (libjpeg leaves
    # that plane empty without a word)
    with pytest.raises(DecodeError, match="corrupt JPEG"):
        codecs.probe(_multi_scan_black(75, 41, scans=2))


def test_progressive_needs_a_bit_per_block(no_pixel_decoder):
    """AC scans can code a band of blocks in a few bits, but the first DC scans code every
    block: a 541-byte progressive file claiming 20000×20000 made libjpeg allocate 2.4 GB
    before warning (an audit). Flat black, the tightest case, passes at every subsampling."""
    data = _pil_jpeg(np.zeros((64, 64, 3), np.uint8), "RGB", progressive=True)
    bomb = _patch_size(data, 20000, 20000)
    with pytest.raises(DecodeError, match=r"^corrupt JPEG: .* cannot hold 20000×20000 pixels "
                                          r"\(a progressive JPEG needs at least 1\.2 MB\)"):
        codecs.probe(bomb)
    for mode, kw in (("RGB", {"subsampling": 0}), ("RGB", {"subsampling": 2}), ("L", {})):
        for side in (8, 1000, 2048):
            flat = _pil_jpeg(np.zeros((side, side, 3) if mode == "RGB" else (side, side),
                                      np.uint8), mode, progressive=True, optimize=True, **kw)
            assert codecs.probe(flat).width == side


def test_truncated_real_jpeg_keeps_its_reason(photo):
    data = codecs.encode(photo, "jpg")
    cut = data[: len(data) // 2]
    assert codecs.probe(cut).width == 128
    with pytest.raises(DecodeError, match=r"truncated JPEG data \(libjpeg: premature end"):
        codecs.verify(cut)


def test_bad_sampling_factors_are_refused():
    data = bytearray(_pil_jpeg(np.zeros((16, 16, 3), np.uint8), "RGB"))
    sof = next(p for m, p, _ in _segments(bytes(data)) if m == 0xC0)
    data[sof + 11] = 0x05  # H=0, V=5
    with pytest.raises(DecodeError, match="sampling factors"):
        codecs.probe(bytes(data))


# ---- hostile-input audit: data cut short, then an end-of-image marker appended ------------
def test_data_cut_short_then_terminated_is_invalid(tmp_path, photo, capfd, engine):
    """Data cut at 60 % with an end-of-image marker appended passes every size rule; libjpeg
    only warns ("premature end of data segment") and fills the rest gray. It was `valid` to
    scan --verify and an `ok` row with a gray lower part in run."""
    data = codecs.encode(photo, "jpg")
    start, end = _image_data(data)
    cut = data[:start + (end - start) * 6 // 10] + b"\xff\xd9"
    assert _libjpeg_warns(cut, capfd) and not _libjpeg_warns(data, capfd)  # the reference
    for kw in ({}, {"reduce": 2}, {"reduce": 8}):
        with pytest.raises(DecodeError, match=r"truncated JPEG data \(libjpeg: premature end"):
            codecs.decode(cut, **kw)
    with pytest.raises(DecodeError, match="truncated JPEG data"):
        codecs.verify(cut)
    (tmp_path / "cut.jpg").write_bytes(cut)
    (tmp_path / "good.jpg").write_bytes(data)
    rows = {r["uri"].rsplit("/", 1)[-1]: r
            for r in scan(str(tmp_path), verify=True, engine=engine).to_pylist()}
    assert rows["good.jpg"]["valid"] and not rows["cut.jpg"]["valid"]
    assert "truncated JPEG data" in rows["cut.jpg"]["reason"]


def test_libjpeg_warnings_that_lose_no_data_are_tolerated(photo, monkeypatch):
    """Warnings such as "N extraneous bytes before marker" come with files every viewer shows:
    the image is decoded as libjpeg recovers it, not refused."""
    import simplejpeg

    data = codecs.encode(photo, "jpg")
    want = codecs.decode(data)
    calls = []

    class _Warns:
        def decode_jpeg(self, buf, space, strict=True, **kw):
            calls.append(strict)
            if strict:
                raise ValueError("Corrupt JPEG data: 3 extraneous bytes before marker 0xc4")
            return simplejpeg.decode_jpeg(buf, space, strict=False, **kw)

    monkeypatch.setattr(_decode, "_simplejpeg", _Warns)
    np.testing.assert_array_equal(codecs.decode(data), want)
    assert calls == [True, False]


def test_every_scale_decodes_the_pixels_opencv_decodes(photo, gray_photo):
    """simplejpeg and OpenCV both run libjpeg-turbo: the same pixels at 1, 1/2, 1/4 and 1/8."""
    for image in (photo, gray_photo):
        data = codecs.encode(image, "jpg")
        for r in (1, 2, 4, 8):
            flags, rgb = _decode._jpeg_flags(image.ndim == 2, r)  # OpenCV's route
            want = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if image.ndim == 3 and not rgb:
                want = cv2.cvtColor(want, cv2.COLOR_BGR2RGB)
            got = codecs.decode(data, reduce=r)
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)


# ---- a job probes each file once and hands the header to the decoder ----------------------
def test_decode_with_the_probed_header_is_decode(photo, gray_photo):
    for img in (photo, gray_photo):
        for fmt in ("jpg", "png", "tif"):
            data = codecs.encode(img, fmt)
            info = codecs.probe(data, whole=True)
            for reduce in (1, 2):
                np.testing.assert_array_equal(codecs.decode(data, info=info, reduce=reduce),
                                              codecs.decode(data, reduce=reduce))


def test_a_job_row_of_a_truncated_bomb_keeps_its_size_and_reason(tmp_path, small_jpeg):
    """The worker now probes the whole file (the header decode() judges); bytes too short for
    their size fail that probe, but the row still tells the claimed size, and the decoder, not
    handed a header, names the damage as before."""
    from pixelmill.jobs import run

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.jpg").write_bytes(_patch_size(small_jpeg, 4000, 3000)[:-2])
    (tmp_path / "in" / "good.jpg").write_bytes(small_jpeg)
    run({"steps": [{"op": "sharpness"}]}, str(tmp_path / "in"), None,
        manifest=str(tmp_path / "m.parquet"), workers=1, progress=False, report=False)
    import pyarrow.parquet as pq

    rows = {r["relpath"]: r for r in pq.read_table(tmp_path / "m.parquet").to_pylist()}
    assert rows["good.jpg"]["status"] == "ok" and rows["good.jpg"]["sharpness"] > 0
    cut = rows["cut.jpg"]
    assert cut["status"] == "invalid" and (cut["width"], cut["height"]) == (4000, 3000)
    assert cut["reason"].startswith("decode: DecodeError: truncated JPEG: ")
    assert "cannot hold 4000×3000" in cut["reason"]
