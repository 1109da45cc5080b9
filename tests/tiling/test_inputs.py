"""Odd and hostile inputs of the tiled path are read as the in-memory decoder reads them.

Independent reference: :func:`pixelmill.images.read_image` (``pixelmill run``/``upscale``): the
same orientation, dtypes and channels, the same refusals, and a decompression bomb refused from
its header (the bombs here are headers only; nothing is ever decoded).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import psutil
import pytest
import tifffile
import zarr

from pixelmill import regions
from pixelmill.cli import main
from pixelmill.codecs import DEFAULT_MAX_PIXELS
from pixelmill.errors import DecodeError, ExitCode, PixelLimitError
from pixelmill.images import read_image
from pixelmill.manifest import read_manifest
from pixelmill.pipeline import load_pipeline
from pixelmill.regions import _spill
from tests._images import bomb_png

from .conftest import make_image

PIPE = [{"op": "gaussian", "sigma": 1}]
FIVE = "5 channels: pixelmill reads images with 1 to 4 channels (gray, gray+alpha, RGB, RGBA)"


def _tile(capsys, *args) -> tuple[int, str, str]:
    code = main(["tile", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


@pytest.fixture
def never_decoded(monkeypatch):
    """Fail the test if anything reaches a decoder."""
    from pixelmill import codecs

    def refuse(*a, **k):
        raise AssertionError("decoded an image that should have been refused from its header")

    monkeypatch.setattr(codecs, "decode", refuse)


@pytest.fixture
def pipe(tmp_path):
    path = tmp_path / "gauss.yaml"
    path.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    return str(path)


# ---- bug: no pixel limit for formats decoded whole ---------------------------------------

def test_a_png_bomb_is_refused_from_its_header(tmp_path, never_decoded):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(100_000, 100_000, depth=1, color=0))
    spill = tmp_path / "spill.npy"
    with pytest.raises(PixelLimitError) as e:
        regions.open_source(str(bomb), spill_uri=str(spill))
    assert isinstance(e.value, DecodeError)  # `pixelmill run` makes it an invalid row
    msg = str(e.value)
    assert msg.startswith(f"{bomb}: exceeds the pixel limit")
    assert "100000x100000 = 10,000.0 MP" in msg and f"{DEFAULT_MAX_PIXELS // 10**6} MP" in msg
    assert "tiled TIFF or OME-Zarr" in msg
    assert sorted(os.listdir(tmp_path)) == ["bomb.png"]


def test_a_bomb_through_tile_and_upscale_is_an_error_before_any_work(tmp_path, pipe, capsys,
                                                                     never_decoded):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(100_000, 100_000, depth=1, color=0))
    code, _, err = _tile(capsys, pipe, bomb, tmp_path / "out" / "o.tif", "--memory", "1GB")
    assert code == ExitCode.ERROR and f"error: {bomb}: exceeds the pixel limit" in err, err
    assert main(["upscale", str(bomb), str(tmp_path / "up.tif"), "--model", "bicubic"]) == 1
    assert "exceeds the pixel limit" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bomb.png", "gauss.yaml"]  # no spill, store, rows


def test_inputs_refused_on_the_tiled_route_of_run_are_invalid_rows(tmp_path, inline_engine,
                                                                   never_decoded):
    from pixelmill.jobs import run

    (tmp_path / "in").mkdir()
    # 4 MP: under the pixel limit, but its decode does not fit a 1 MB budget
    (tmp_path / "in" / "big.png").write_bytes(bomb_png(2000, 2000))
    tifffile.imwrite(tmp_path / "in" / "five.tif", make_image((40, 30, 5), "uint8"),
                     photometric="minisblack", planarconfig="contig")
    summary = run(PIPE, str(tmp_path / "in"), str(tmp_path / "out"), engine=inline_engine,
                  progress=False, report=False, tile_threshold=100, memory="1MB")
    assert summary.invalid == 2
    rows = {r["key"].rsplit("/", 1)[-1]: r
            for r in read_manifest(str(tmp_path / "out" / "manifest.parquet"))}
    assert {k: r["status"] for k, r in rows.items()} == {"big.png": "invalid",
                                                          "five.tif": "invalid"}
    assert rows["big.png"]["reason"].startswith("tiled: PixelLimitError: ")
    assert ("about 23 MiB, more than the 0 bytes left of the memory budget of 977 KiB (this process "
            "holds") in rows["big.png"]["reason"]
    assert FIVE in rows["five.tif"]["reason"]


def test_a_decode_that_would_not_fit_the_memory_is_refused(tmp_path, monkeypatch, never_decoded):
    big = tmp_path / "big.png"  # 400 MP RGB: under the pixel limit, 1.2 GB decoded
    big.write_bytes(bomb_png(20_000, 20_000))
    with pytest.raises(PixelLimitError, match="left of the memory budget of 512 MiB"):
        regions.open_source(str(big), spill_uri=str(tmp_path / "s.npy"), memory=2**29)
    # the budget holds this process too: a decode that fits the budget alone but not beside
    # what the process holds already is refused (a 100 MP PNG peaked 12 % over --memory)
    held = psutil.Process().memory_info().rss
    need = len(big.read_bytes()) + 2 * 20_000 * 20_000 * 3
    with pytest.raises(PixelLimitError, match=r"left of the memory budget of .* \(this process "
                                              "holds"):
        regions.open_source(str(big), spill_uri=str(tmp_path / "s.npy"), memory=need + held // 2)

    class Scarce:
        available = 2**30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Scarce())
    with pytest.raises(PixelLimitError, match=r"about 2\.2 GiB, more than the 1\.0 GiB of "
                                              "memory available"):
        regions.open_source(str(big), spill_uri=str(tmp_path / "s.npy"))
    assert sorted(os.listdir(tmp_path)) == ["big.png"]


def test_region_read_inputs_have_no_pixel_limit(tmp_path):
    path = str(tmp_path / "huge.tif")  # 625 MP, tiles all zero (stored compressed: 0.7 MB)
    side, tile = 25_000, 512
    blank = zlib.compress(bytes(tile * tile))
    tifffile.imwrite(path, data=(blank for _ in range((-(-side // tile)) ** 2)),
                     shape=(side, side), dtype=np.uint8, tile=(tile, tile), compression="zlib")
    assert side * side > DEFAULT_MAX_PIXELS
    source = regions.open_source(path, spill_uri=str(tmp_path / "s.npy"), memory=2**20)
    assert source.kind == "tiff" and source.shape == (side, side)
    assert not regions.read_region(source, (side - 9, side, 100, 140)).any()


# ---- bug: EXIF / TIFF orientation ignored -----------------------------------------------

def _exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_decoded_inputs_are_turned_upright_as_in_memory(tmp_path, monkeypatch, fmt,
                                                        orientation):
    from PIL import Image

    image = make_image((37, 23, 3), "uint8", seed=orientation)
    path = str(tmp_path / f"in.{fmt}")
    Image.fromarray(image).save(path, exif=_exif(orientation), **(
        {"quality": 95} if fmt == "jpg" else {}))
    monkeypatch.setattr(_spill, "SPILL_BAND_BYTES", 100)  # many bands: each one mapped back
    expected = read_image(path)
    source = regions.open_source(path, spill_uri=str(tmp_path / "spill.npy"))
    assert (source.height, source.width) == expected.shape[:2]
    assert np.array_equal(regions.read_region(source, (0, source.height, 0, source.width)),
                          expected)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("layout", [{"tile": (16, 16)}, {"rowsperstrip": 5},
                                    {"tile": (16, 16), "compression": "zlib"}], ids=str)
def test_tiff_orientation_is_applied_to_every_window(tmp_path, layout, orientation):
    image = make_image((45, 29, 3), "uint16", seed=orientation)
    path = str(tmp_path / "in.tif")
    tifffile.imwrite(path, image, photometric="rgb", **layout,
                     extratags=[(274, "H", 1, orientation, True)])
    expected = read_image(path)
    source = regions.open_source(path)
    assert source.shape == expected.shape
    h, w = expected.shape[:2]
    for box in [(0, h, 0, w), (3, 20, 5, 17), (h - 1, h, 0, 7), (-4, h + 3, -2, w + 5)]:
        pad = [(max(0, -box[0]), max(0, box[1] - h)), (max(0, -box[2]), max(0, box[3] - w)),
               (0, 0)]
        ref = np.pad(expected, pad, mode="wrap")
        ref = ref[box[0] + pad[0][0]:box[1] + pad[0][0], box[2] + pad[1][0]:box[3] + pad[1][0]]
        assert np.array_equal(regions.read_region(source, box), ref), box


@pytest.mark.parametrize("orientation", [1, 3, 6, 7])
@pytest.mark.parametrize("photometric", ["rgb", "palette"])
def test_tiffs_spilled_for_their_huge_strips_read_as_in_memory(tmp_path, monkeypatch,
                                                               orientation, photometric):
    if photometric == "rgb":
        image, kw = make_image((45, 29, 3), "uint16", seed=orientation), {}
    else:
        cmap = np.random.default_rng(2).integers(0, 65535, (3, 256)).astype(np.uint16)
        image, kw = make_image((45, 29), "uint8", seed=orientation), {"colormap": cmap}
    path = str(tmp_path / "in.tif")  # one compressed strip: no random access
    tifffile.imwrite(path, image, photometric=photometric, compression="zlib", **kw,
                     extratags=[(274, "H", 1, orientation, True)])
    monkeypatch.setattr(regions._source, "MAX_SEGMENT_BYTES", 500)  # spilled, in bands
    monkeypatch.setattr(regions._spill, "MAX_SEGMENT_BYTES", 500)
    expected = read_image(path)
    source = regions.open_source(path, spill_uri=str(tmp_path / "spill.npy"))
    assert source.kind == "npy" and source.shape == expected.shape
    h, w = expected.shape[:2]
    assert np.array_equal(regions.read_region(source, (0, h, 0, w)), expected)
    assert np.array_equal(regions.read_region(source, (4, 25, 2, 21)), expected[4:25, 2:21])


def test_a_tiff_whose_strips_would_not_fit_the_memory_is_refused(tmp_path, monkeypatch):
    path = str(tmp_path / "one-strip.tif")
    tifffile.imwrite(path, make_image((300, 200, 3), "uint8"), compression="zlib")
    monkeypatch.setattr(regions._source, "MAX_SEGMENT_BYTES", 1000)
    with pytest.raises(PixelLimitError, match=r"strips or tiles hold 176 KiB each .* about 352 "
                                              "KiB, more than the 0 bytes left of the memory budget of 98 KiB"):
        regions.open_source(path, spill_uri=str(tmp_path / "s.npy"), memory=100_000)
    assert sorted(os.listdir(tmp_path)) == ["one-strip.tif"]


def test_tile_of_an_exif_rotated_jpeg_matches_run(tmp_path, pipe, capsys):
    from PIL import Image

    image = make_image((80, 120, 3), "uint8")
    src = tmp_path / "exif6.jpg"
    Image.fromarray(image).save(src, exif=_exif(6), quality=95)
    code, _, err = _tile(capsys, pipe, src, tmp_path / "o.tif", "--tile", "32", "-q")
    assert code == ExitCode.OK, err
    out = tifffile.imread(tmp_path / "o.tif")
    assert out.shape == (120, 80, 3)
    assert np.array_equal(out, load_pipeline(PIPE)(read_image(str(src))))


# ---- bug: more than 4 channels ----------------------------------------------------------

def _five(tmp_path, kind: str) -> str:
    image = make_image((40, 30, 5), "uint8")
    if kind == "contig":
        path = tmp_path / "five.tif"
        tifffile.imwrite(path, image, photometric="minisblack", planarconfig="contig")
    elif kind == "planar":
        path = tmp_path / "five.tif"
        tifffile.imwrite(path, np.moveaxis(image, -1, 0), photometric="minisblack",
                         planarconfig="separate")
    elif kind == "npy":
        path = tmp_path / "five.npy"
        np.save(path, image)
    else:
        path = tmp_path / "five.zarr"
        zarr.create_array(str(path), shape=image.shape, dtype="uint8")[:] = image
    return str(path)


@pytest.mark.parametrize("kind", ["contig", "planar", "npy", "zarr"])
def test_more_than_four_channels_are_refused_up_front(tmp_path, pipe, capsys, kind):
    path = _five(tmp_path, kind)
    with pytest.raises(DecodeError) as e:
        regions.open_source(path, spill_uri=str(tmp_path / "s.npy"))
    assert str(e.value).startswith(f"{path}: {FIVE}")
    before = sorted(os.listdir(tmp_path))
    code, _, err = _tile(capsys, pipe, path, tmp_path / "o.tif")
    assert code == ExitCode.ERROR and f"error: {path}: {FIVE}" in err, err
    assert sorted(os.listdir(tmp_path)) == before  # no tile store, no manifest rows


def test_cmyk_with_alpha_is_four_channels_as_in_memory(tmp_path):
    cmyka = make_image((40, 30, 5), "uint8")
    path = str(tmp_path / "cmyka.tif")
    tifffile.imwrite(path, cmyka, photometric="separated", extrasamples=[2], tile=(16, 16))
    expected = read_image(path)
    source = regions.open_source(path)
    assert source.shape == expected.shape == (40, 30, 4)
    assert np.array_equal(regions.read_region(source, (0, 40, 0, 30)), expected)


# ---- bug: sample types the in-memory decoder converts or refuses ------------------------

@pytest.mark.parametrize("case", ["float64", "float16", "bool", "miniswhite", "palette"])
def test_tiff_samples_are_converted_as_in_memory(tmp_path, case):
    path = str(tmp_path / f"{case}.tif")
    gray = make_image((41, 27), "uint8")
    if case in ("float64", "float16"):
        tifffile.imwrite(path, make_image((41, 27, 3), "float32").astype(case),
                         photometric="rgb", tile=(16, 16))
    elif case == "bool":
        tifffile.imwrite(path, gray > 128, rowsperstrip=8)
    elif case == "miniswhite":
        tifffile.imwrite(path, gray, photometric="miniswhite", tile=(16, 16))
    else:
        cmap = np.random.default_rng(1).integers(0, 65535, (3, 256)).astype(np.uint16)
        tifffile.imwrite(path, gray, photometric="palette", colormap=cmap, rowsperstrip=8)
    expected = read_image(path)
    source = regions.open_source(path)
    assert source.shape == expected.shape and source.dtype == expected.dtype.name
    assert np.array_equal(regions.read_region(source, (0, 41, 0, 27)), expected)
    assert np.array_equal(regions.read_region(source, (5, 30, 3, 20)), expected[5:30, 3:20])


@pytest.mark.parametrize("dtype", ["int16", "int32", "uint32"])
def test_tiff_sample_types_refused_in_memory_are_refused_up_front(tmp_path, dtype):
    path = str(tmp_path / f"{dtype}.tif")
    tifffile.imwrite(path, np.arange(600, dtype=dtype).reshape(20, 30), tile=(16, 16))
    with pytest.raises(DecodeError) as in_memory:
        read_image(path)
    with pytest.raises(DecodeError) as tiled:
        regions.open_source(path)
    assert str(tiled.value) == str(in_memory.value) == (
        f"{path}: unsupported TIFF sample type {dtype}")


def test_a_float64_tiff_tiles_as_it_runs(tmp_path, pipe, capsys):
    image = make_image((80, 120, 3), "float32").astype(np.float64)
    src = tmp_path / "f64.tif"
    tifffile.imwrite(src, image, photometric="rgb")
    code, _, err = _tile(capsys, pipe, src, tmp_path / "o.tif", "--tile", "32", "-q")
    assert code == ExitCode.OK, err
    out = tifffile.imread(tmp_path / "o.tif")
    expected = load_pipeline(PIPE)(read_image(str(src)))
    assert out.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_float64_arrays_are_read_as_float32(tmp_path):
    image = make_image((20, 30, 3), "float32").astype(np.float64)
    path = str(tmp_path / "f64.npy")
    np.save(path, image)
    source = regions.open_source(path)
    assert source.dtype == "float32"
    assert np.array_equal(regions.read_region(source, (2, 9, 4, 30)),
                          image[2:9, 4:30].astype(np.float32))


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_gray_alpha_to_a_tiled_tiff_equals_the_whole_image(tmp_path, compression):
    """A 2-channel (gray + alpha) result written as a TIFF: tifffile needs the alpha declared
    as an extra sample to lay out 2-sample tiles (it raised 'tile is too large')."""
    from pixelmill.tiled import run_tiled

    la = make_image((70, 90, 2), "uint8")
    tifffile.imwrite(str(tmp_path / "la.tif"), la, photometric="minisblack",
                     extrasamples=["unassalpha"], tile=(16, 16))
    pipe = load_pipeline({"steps": [{"op": "gaussian", "sigma": 1.0}]})
    out = tmp_path / "out.tif"
    run_tiled(pipe, str(tmp_path / "la.tif"), str(out), tile=32, compression=compression,
              progress=False)
    got = tifffile.imread(str(out))
    assert got.shape == (70, 90, 2)
    np.testing.assert_array_equal(got, pipe.run(read_image(str(tmp_path / "la.tif"))).image)


# ---- hostile-input audit: special files, truncated raw TIFFs ------------------------------
@pytest.mark.timeout(60)
def test_a_pipe_or_a_device_is_refused_before_it_is_opened(tmp_path, pipe, capsys):
    """`tile` on a named pipe waited for a writer forever; on a link to /dev/zero it read until
    memory ran out (`run` and `scan` already refused them)."""
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    (tmp_path / "z.png").symlink_to("/dev/zero")
    for name, kind in (("f.png", "a named pipe"), ("z.png", "a character device")):
        code, _, err = _tile(capsys, pipe, tmp_path / name, tmp_path / f"out-{name}.tif")
        assert code == ExitCode.ERROR and f"not a regular file ({kind})" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "gauss.yaml", "z.png"]


@pytest.mark.parametrize("tile", [None, (64, 64)])
def test_a_truncated_uncompressed_tiff_is_a_decode_error(tmp_path, tile):
    """The raw strip/tile reader reshaped whatever os.pread returned: a ValueError traceback
    ("cannot reshape array of size 6008 into shape (32,64,3)") instead of a reason."""
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, np.zeros((128, 128, 3), np.uint8), tile=tile)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:len(data) // 2])
    src = regions.open_source(str(cut))
    with pytest.raises(DecodeError, match="truncated TIFF"):
        regions.read_region(src, (0, 128, 0, 128))
    np.testing.assert_array_equal(regions.read_region(src, (0, 16, 0, 16)), 0)  # what is there


@pytest.mark.parametrize("steps", ["  - op: equalize_hist\n", "  - op: gaussian\n    sigma: 2\n"])
def test_a_refused_job_leaves_no_decoded_spill(tmp_path, capsys, steps):
    """A PNG is decoded once to a spill beside the output; a job refused after that (a global
    op over the budget, a budget too small) left the spill behind (400 MB for 400 MP)."""
    # room for the 3 MB decode beside what this process holds, not for a worker too
    memory = str(psutil.Process().memory_info().rss + 24 * 2**20)
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1000, 1000), dtype=np.uint8)).save(tmp_path / "big.png")
    pipe_file = tmp_path / "p.yaml"
    pipe_file.write_text("steps:\n" + steps)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _tile(capsys, pipe_file, tmp_path / "big.png", out / "o.tif", "--memory",
                         memory)
    assert code == ExitCode.USAGE, err
    assert list(out.iterdir()) == []


def test_a_job_with_failed_tiles_exits_3(tmp_path, pipe, capsys):
    """Some tiles failed, the job ran: exit 3 as for any job with failed items (it was 1, the
    code for a job that could not run)."""
    src = tmp_path / "bad.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(src, rng.integers(0, 256, (128, 128), dtype=np.uint8), tile=(64, 64),
                     compression="zlib")
    with tifffile.TiffFile(src) as tif:
        offset, count = tif.pages[0].dataoffsets[3], tif.pages[0].databytecounts[3]
    data = bytearray(src.read_bytes())
    data[offset:offset + count] = b"\0" * count  # the last tile's deflate stream, zeroed
    src.write_bytes(bytes(data))
    code, _, err = _tile(capsys, pipe, src, tmp_path / "out.tif", "--tile", "64")
    assert code == ExitCode.PARTIAL, err
    assert "tiles failed" in err and not (tmp_path / "out.tif").exists()


def test_a_job_refused_as_busy_keeps_the_spill_the_running_job_reads(tmp_path):
    """The refusal that leaves no spill must not take the spill of a job running on the same
    output: its manifest is locked (ManifestBusyError), and its workers read that file."""
    from PIL import Image

    from pixelmill.manifest import ManifestBusyError, ManifestWriter
    from pixelmill.tiled import run_tiled

    Image.fromarray(np.zeros((300, 300), np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "o.tif"
    running = ManifestWriter(str(out) + ".manifest.parquet")  # the other job holds the lock
    try:
        with pytest.raises(ManifestBusyError):
            run_tiled(load_pipeline(PIPE), str(tmp_path / "in.png"), str(out), resume=True,
                      progress=False)
        assert (tmp_path / ".o.tif.pixelmill-spill.npy").exists()
    finally:
        running.close()


def _rss_file_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssFile:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc")
def test_npy_windows_are_read_without_mapping_the_file(tmp_path):
    """A spill read through a memory map stayed in the worker's resident memory (the map was
    cached open): a 100 MP PNG's tiled job overran --memory by the whole spill."""
    path = tmp_path / "big.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(4096, 8192, 2))
    arr[:] = np.arange(8192, dtype=np.uint8)[None, :, None]
    arr[:, :, 1] = 7
    del arr
    source = regions.open_source(str(path))
    before = _rss_file_bytes()
    for y in range(0, 4096, 512):
        for x in range(0, 8192, 2048):
            got = regions.read_region(source, (y, y + 512, x, x + 2048))
            assert got[0, 0, 0] == x % 256 and got[-1, -1, 1] == 7
    whole_rows = regions.read_region(source, (100, 103, 0, 8192))
    assert np.array_equal(whole_rows[:, :, 0], np.tile(np.arange(8192, dtype=np.uint8), (3, 1)))
    assert _rss_file_bytes() - before < 16 * 2**20  # the file is 64 MiB


def test_a_truncated_npy_is_a_decode_error_naming_it(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((64, 64), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 1000])
    source = regions.open_source(str(path))
    np.testing.assert_array_equal(regions.read_region(source, (0, 8, 0, 64)), 1)
    with pytest.raises(DecodeError, match=r"cut\.npy: truncated \.npy"):
        regions.read_region(source, (56, 64, 0, 64))
