"""``pixelmill tile`` as the shell sees it: messages and exit codes of the user's mistakes (all
before any work), resuming a finished job, and refusing to replace an earlier run's output."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
import zarr

from pixelmill import regions
from pixelmill.cli import main
from pixelmill.errors import DecodeError, ExitCode
from pixelmill.manifest import read_manifest
from pixelmill.pipeline import load_pipeline

from .conftest import make_image

PIPE = "steps:\n  - op: gaussian\n    sigma: 2\n  - op: unsharp_mask\n    radius: 1\n"


@pytest.fixture(scope="module")
def rgb():
    return make_image((150, 130, 3), "uint8", seed=11)


@pytest.fixture
def job(tmp_path, rgb):
    """A pipeline file and a one-level tiled RGB TIFF in ``tmp_path``."""
    (tmp_path / "sharpen.yaml").write_text(PIPE)
    tifffile.imwrite(tmp_path / "slide.tif", rgb, tile=(64, 64), photometric="rgb")
    return str(tmp_path / "sharpen.yaml"), str(tmp_path / "slide.tif")


def _tile(capsys, *args) -> tuple[int, str, str]:
    code = main(["tile", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def test_a_missing_input_is_named_before_any_work(tmp_path, job, capsys):
    pipe, _ = job
    missing = str(tmp_path / "nonexist.tif")
    code, _, err = _tile(capsys, pipe, missing, tmp_path / "sub" / "x1.tif")
    assert f"error: {missing}: no such file" in err
    # the exit code `pixelmill run` gives the same mistake (errors.StorageError: 1)
    assert code == main(["run", pipe, missing, str(tmp_path / "run-out")]) == ExitCode.ERROR
    assert not (tmp_path / "sub").exists()


def test_an_unreachable_engine_leaves_nothing_that_blocks_the_retry(tmp_path, job, capsys):
    """The journal, the partial TIFF and the tile store were made before the cluster was
    reached: the corrected command was then refused as a resume of an interrupted run."""
    pipe, src = job
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _tile(capsys, pipe, src, out / "o.tif", "--engine",
                         "dask=tcp://127.0.0.1:1", "--compression", "zlib")
    assert code == ExitCode.ERROR and "cannot reach the Dask scheduler" in err
    code, _, err = _tile(capsys, pipe, src, out / "o.tif", "--engine", "dask=tcp://127.0.0.1:1")
    assert code == ExitCode.ERROR
    assert sorted(os.listdir(out)) == []
    code, _, err = _tile(capsys, pipe, src, out / "o.tif")
    assert code == 0, err


@pytest.mark.parametrize("out_name, allowed", [("x1.tif", "zlib, zstd, lzw"),
                                               ("x1.zarr", "zstd, gzip, blosc")])
def test_an_unknown_compression_is_a_usage_error_before_any_work(tmp_path, job, capsys,
                                                                  out_name, allowed):
    pipe, src = job
    code, _, err = _tile(capsys, pipe, src, tmp_path / out_name, "--compression", "foo")
    assert code == ExitCode.USAGE
    assert "--compression" in err and "'foo'" in err and allowed in err, err
    assert sorted(os.listdir(tmp_path)) == ["sharpen.yaml", "slide.tif"]  # no manifest rows


def test_a_codec_that_cannot_hold_the_output_is_refused_before_any_work(tmp_path, job, capsys):
    _, src = job
    (tmp_path / "sobel.yaml").write_text("steps:\n  - op: sobel\n")  # float32 output
    code, _, err = _tile(capsys, tmp_path / "sobel.yaml", src, tmp_path / "s.tif",
                         "--compression", "jpeg")
    assert code == ExitCode.USAGE and "--compression jpeg" in err and "float32" in err, err
    assert sorted(os.listdir(tmp_path)) == ["sharpen.yaml", "slide.tif", "sobel.yaml"]


def test_a_codec_that_cannot_hold_a_global_ops_output_is_refused_before_any_work(
        tmp_path, job, capsys):
    """A pipeline with a global op runs on the whole image, and its codec was checked only at
    assembly: exit 2 after the work, with the tile store and the manifest left behind, so the
    corrected command was then refused as 'results of an earlier run' (audit)."""
    _, src = job
    (tmp_path / "flip.yaml").write_text("steps:\n  - op: flip\n    axis: horizontal\n"
                                        "  - op: sobel\n")  # global, then float32
    code, _, err = _tile(capsys, tmp_path / "flip.yaml", src, tmp_path / "s.tif",
                         "--compression", "jpeg")
    assert code == ExitCode.USAGE and "--compression jpeg" in err and "float32" in err, err
    assert sorted(os.listdir(tmp_path)) == ["flip.yaml", "sharpen.yaml", "slide.tif"]
    code, _, err = _tile(capsys, tmp_path / "flip.yaml", src, tmp_path / "s.tif",
                         "--compression", "zstd")
    assert code == 0, err


def test_compression_reaches_tiff_and_zarr_outputs(tmp_path, job, rgb, capsys):
    pipe, src = job
    expected = load_pipeline(pipe)(rgb)
    tif, store = tmp_path / "c.tif", tmp_path / "c.zarr"
    for out in (tif, store):
        code, _, err = _tile(capsys, pipe, src, out, "--compression", "zstd", "--tile", "64",
                             "--workers", "1", "-q")
        assert code == ExitCode.OK, err
    with tifffile.TiffFile(tif) as f:
        assert f.pages[0].compression == tifffile.COMPRESSION.ZSTD
        assert np.array_equal(f.asarray(), expected)
    import os
    import stat

    probe = tmp_path / "probe"
    probe.write_bytes(b"")  # what an ordinary file gets under this umask (mkstemp gave 0600)
    assert stat.S_IMODE(os.stat(tif).st_mode) == stat.S_IMODE(os.stat(probe).st_mode)
    codecs = [c.to_dict()["name"] for c in zarr.open_array(str(store / "0")).compressors]
    assert codecs == ["zstd"]  # was silently left uncompressed
    source = regions.open_source(str(store))
    assert np.array_equal(regions.read_region(source, (0, 150, 0, 130)), expected)


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0" + b"garbage" * 10, b"hello world",
                                     "truncated"])
def test_an_undecodable_input_is_named_with_the_in_memory_reason(tmp_path, job, rgb, capsys,
                                                                 content):
    from PIL import Image

    from pixelmill.images import read_image

    pipe, _ = job
    bad = tmp_path / "bad.jpg"
    if content == "truncated":
        Image.fromarray(rgb).save(bad, quality=90)
        content = bad.read_bytes()[: bad.stat().st_size // 2]
    bad.write_bytes(content)
    with pytest.raises(DecodeError) as in_memory:
        read_image(str(bad))
    reason = str(in_memory.value)  # "<path>: not a recognised image format", ...
    code, _, err = _tile(capsys, pipe, bad, tmp_path / "x6.tif")
    assert code == ExitCode.ERROR and f"error: {reason}" in err, err
    assert "fsspec" not in err
    # the streaming upscale reads through the same region source
    assert main(["upscale", str(bad), str(tmp_path / "up.tif"), "--model", "bicubic"]) == 1
    assert f"error: {reason}" in capsys.readouterr().err
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no spill left


def test_resuming_a_finished_job_does_nothing(tmp_path, job, rgb, capsys):
    pipe, src = job
    out = tmp_path / "x1.tif"
    manifest = tmp_path / "x1.tif.manifest.parquet"
    args = [pipe, src, out, "--tile", "64", "--workers", "1"]
    code, _, err = _tile(capsys, *args, "-q")
    assert code == ExitCode.OK, err
    before = [(os.stat(p).st_mtime_ns, p.read_bytes()) for p in (out, manifest)]

    code, text, err = _tile(capsys, *args, "--resume")
    assert code == ExitCode.OK, err
    assert "already complete" in text and "nothing to do" in text
    code, text, _ = _tile(capsys, *args, "--resume", "--json")
    summary = json.loads(text)
    assert summary["up_to_date"] and summary["resumed"] == summary["tiles"] == 9
    assert summary["status"] == "ok" and summary["ok"] == 9
    assert [(os.stat(p).st_mtime_ns, p.read_bytes()) for p in (out, manifest)] == before
    assert np.array_equal(tifffile.imread(out), load_pipeline(pipe)(rgb))

    # another pipeline would mix two pipelines' results: refused, output untouched
    (tmp_path / "median.yaml").write_text("steps:\n  - op: median\n    size: 3\n")
    code, _, err = _tile(capsys, tmp_path / "median.yaml", src, out, "--resume")
    assert code == ExitCode.USAGE and "different pipeline" in err and "--overwrite" in err
    assert [(os.stat(p).st_mtime_ns, p.read_bytes()) for p in (out, manifest)] == before

    # a changed input is processed again
    changed = rgb[::-1].copy()
    tifffile.imwrite(src, changed, tile=(64, 64), photometric="rgb")
    code, text, _ = _tile(capsys, *args, "--resume", "--json")
    summary = json.loads(text)
    assert code == ExitCode.OK and not summary["up_to_date"] and summary["resumed"] == 0
    assert np.array_equal(tifffile.imread(out), load_pipeline(pipe)(changed))


def test_an_earlier_output_needs_resume_or_overwrite(tmp_path, job, rgb, capsys):
    pipe, src = job
    out = tmp_path / "x1.tif"
    manifest = tmp_path / "x1.tif.manifest.parquet"
    assert _tile(capsys, pipe, src, out, "--workers", "1", "-q")[0] == ExitCode.OK
    stamp = os.stat(out).st_mtime_ns

    code, _, err = _tile(capsys, pipe, src, out, "--workers", "1")
    assert code == ExitCode.USAGE, err
    assert f"{out} already exists" in err and "--resume" in err and "--overwrite" in err
    assert os.stat(out).st_mtime_ns == stamp
    code, _, err = _tile(capsys, pipe, src, out, "--resume", "--overwrite")
    assert code == ExitCode.USAGE and "exclude each other" in err

    (tmp_path / "median.yaml").write_text("steps:\n  - op: median\n    size: 3\n")
    code, _, err = _tile(capsys, tmp_path / "median.yaml", src, out, "--overwrite",
                         "--workers", "1", "-q")
    assert code == ExitCode.OK, err
    assert np.array_equal(tifffile.imread(out),
                          load_pipeline([{"op": "median", "size": 3}])(rgb))
    assert {r["status"] for r in read_manifest(str(manifest))} == {"ok"}

    os.unlink(out)  # the manifest of an earlier run alone is enough to refuse
    code, _, err = _tile(capsys, pipe, src, out)
    assert code == ExitCode.USAGE and f"{manifest} already exists" in err, err
    assert not out.exists()


def _ome_zarr(path, image) -> None:
    group = regions.create_tile_store(str(path), image.shape, "uint8", (64, 64))
    regions.write_tile(group["0"], (0, image.shape[0], 0, image.shape[1]), image)
    regions.build_pyramid(group, 1)


@pytest.mark.parametrize("kind, levels", [("tif", 1), ("zarr", 2), ("npy", 1), ("png", 1)])
def test_a_level_the_input_lacks_is_a_usage_error(tmp_path, job, rgb, capsys, kind, levels):
    from PIL import Image

    pipe, src = job
    if kind == "zarr":
        src = tmp_path / "in.zarr"
        _ome_zarr(src, rgb)
    elif kind == "npy":
        src = tmp_path / "in.npy"
        np.save(src, rgb)
    elif kind == "png":
        src = tmp_path / "in.png"
        Image.fromarray(rgb).save(src)
    code, _, err = _tile(capsys, pipe, src, tmp_path / "lv.tif", "--level", "3")
    assert code == ExitCode.USAGE, err
    assert "--level 3" in err and f"{levels} pyramid level" in err, err
    assert not (tmp_path / "lv.tif.manifest.parquet").exists()


# ---- found by a walkthrough of the README's `pixelmill tile` section ----------------------

def test_a_16_bit_gray_output_jpeg_cannot_hold_is_refused_before_any_work(tmp_path, job,
                                                                          capsys):
    """The codec check wrote a tile of zeros, which 16-bit JPEG takes; real pixels then failed
    at assembly, after every tile, with a traceback. The check now writes full-range noise."""
    pipe, _ = job
    src = tmp_path / "u16.tif"
    tifffile.imwrite(src, make_image((150, 130), "uint16", seed=3), tile=(64, 64))
    code, _, err = _tile(capsys, pipe, src, tmp_path / "j.tif", "--compression", "jpeg",
                         "--tile", "64")
    assert code == ExitCode.USAGE and "--compression jpeg" in err and "uint16" in err, err
    assert sorted(os.listdir(tmp_path)) == ["sharpen.yaml", "slide.tif", "u16.tif"]


@pytest.mark.parametrize("engine", ["foo", "dask=notanaddress", "local=x"])
def test_a_bad_engine_leaves_nothing_behind(tmp_path, job, capsys, engine):
    """A wrong --engine was found after the partial TIFF and the journal were made, and the
    corrected command was then refused as 'results of an earlier run'."""
    pipe, src = job
    code, _, err = _tile(capsys, pipe, src, tmp_path / "o.tif", "--engine", engine)
    assert code == ExitCode.USAGE and "--engine" in err, err
    assert sorted(os.listdir(tmp_path)) == ["sharpen.yaml", "slide.tif"]
    assert _tile(capsys, pipe, src, tmp_path / "o.tif", "--workers", "1")[0] == ExitCode.OK


@pytest.mark.parametrize("name", ["mine.tif", "mine.zarr"])
def test_resume_never_replaces_an_output_no_earlier_run_left(tmp_path, job, capsys, name):
    """--resume without an earlier run's manifest (nor journal) took any existing OUTPUT as its
    own and replaced it: a user's file, or a folder with their notes in it."""
    pipe, src = job
    out = tmp_path / name
    if name.endswith(".zarr"):
        out.mkdir()
        (out / "notes.txt").write_text("precious")
    else:
        out.write_bytes(b"a file the user made")
    before = sorted(os.listdir(tmp_path))
    code, _, err = _tile(capsys, pipe, src, out, "--resume")
    assert code == ExitCode.USAGE and "no earlier run's manifest" in err, err
    assert sorted(os.listdir(tmp_path)) == before
    if name.endswith(".zarr"):
        assert (out / "notes.txt").read_text() == "precious"
    else:
        assert out.read_bytes() == b"a file the user made"


def test_a_rerun_after_a_kill_names_the_journal(tmp_path, job, capsys):
    """Only the journal of a killed run is there: the refusal named a manifest that did not
    exist; --resume still continues it."""
    from pixelmill.manifest import journal_path

    pipe, src = job
    out = tmp_path / "kk.tif"
    journal = journal_path(str(out) + ".manifest.parquet")
    with open(journal, "w") as f:
        f.write(json.dumps({"key": "x#tile=9,9", "status": "failed"}) + "\n")
    code, _, err = _tile(capsys, pipe, src, out)
    assert code == ExitCode.USAGE and "a run's journal is there" in err, err
    assert _tile(capsys, pipe, src, out, "--resume", "--workers", "1")[0] == ExitCode.OK


def test_memory_sizes_are_printed_in_a_unit_that_shows_them(tmp_path, job, capsys):
    pipe, src = job
    code, _, err = _tile(capsys, pipe, src, tmp_path / "m.tif", "--memory", "1KB")
    assert code == ExitCode.USAGE and "--memory: 1000 bytes is too small" in err, err
    code, _, err = _tile(capsys, pipe, src, tmp_path / "m.tif", "--memory", "2gigs")
    assert code == ExitCode.USAGE and err.startswith("error: --memory: expected a size"), err
