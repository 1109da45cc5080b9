"""Fixes from a user's audit of super-resolution: a network of another scale, the pair cache
under concurrent runs, 16-bit gray + alpha files in the protocol, what `sr train` says and
does without a held-out split or after its time budget, checkpoint file modes, and what
`upscale` advises when --memory cannot hold the network at all."""

from __future__ import annotations

import json
import stat
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixelmill.cli import main
from pixelmill.errors import InvalidParameterError

from .conftest import require_shipped

#: tiny training runs: one step of 2 patches of 8×8 per epoch, one torch thread
TINY = ["--iters", "1", "--batch", "2", "--patch", "8", "--threads", "1"]


def write_png(path, image):
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


def gray_alpha_png16(gray: np.ndarray) -> bytes:
    """A 16-bit gray + alpha PNG (colour type 4), which PIL reports as mode RGBA."""
    h, w = gray.shape
    values = np.dstack([gray.astype(np.uint16) * 257, np.full((h, w), 65535, np.uint16)])
    raw = b"".join(b"\x00" + values[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# 1 ------------------------------------------------------------------------------------------

def test_a_network_of_another_scale_is_refused_not_a_wrong_sized_result(small_rgb):
    """``upscale_image(lr, load_model("espcn", 2), 4)`` returned a 2× gray image where 4× was
    asked (and a ValueError traceback for colour, a broadcast error through the tiles)."""
    require_shipped("espcn", 2)
    import pixelmill.sr as sr

    x2 = sr.load_model("espcn", 2)
    gray = small_rgb[:20, :30, 0].copy()
    for image in (gray, small_rgb[:20, :30]):
        with pytest.raises(InvalidParameterError, match="x2, not x4"):
            sr.upscale_image(image, x2, 4)
        with pytest.raises(InvalidParameterError, match="x2, not x4"):
            sr.upscale_tiled(image, x2, 4, tile=16)
    assert sr.upscale_image(gray, x2, 2).shape == (40, 60)  # its own scale still works


# 2 ------------------------------------------------------------------------------------------

def test_pair_cache_survives_a_concurrent_writer_and_a_damaged_entry(tmp_path, small_rgb,
                                                                     monkeypatch):
    """Two `sr train` runs preparing the same pairs at once shared one temporary file name:
    the second one's rename failed with FileNotFoundError (a traceback; reproduced with three
    processes), or their bytes interleaved into a damaged entry that every later run failed
    to load. Each writer now has its own temporary file, and a damaged entry is made again."""
    from pixelmill.sr import data as srdata

    folder = tmp_path / "d"
    folder.mkdir()
    for k in range(2):
        write_png(folder / f"i{k}.png", small_rgb[k * 40 : k * 40 + 48, :64])
    files = srdata.list_images(folder)
    cache = tmp_path / "cache"
    expected = srdata.load_pairs(files, 2)

    real_savez = np.savez
    busy = []

    def savez_then_another_run(*args, **kwargs):  # a second run writes while the first does
        real_savez(*args, **kwargs)
        if not busy:
            busy.append(1)
            srdata.load_pairs(files, 2, cache_dir=cache)

    monkeypatch.setattr(srdata.np, "savez", savez_then_another_run)
    pairs = srdata.load_pairs(files, 2, cache_dir=cache)
    monkeypatch.setattr(srdata.np, "savez", real_savez)
    assert busy and [p.name for p in cache.iterdir() if "tmp" in p.name] == []
    for got in (pairs, srdata.load_pairs(files, 2, cache_dir=cache)):  # computed, then cached
        assert got.names == expected.names
        assert all(np.array_equal(a, b) for a, b in zip(got.hr, expected.hr, strict=True))

    (entry,) = cache.glob("pairs-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # a damaged entry: made again, not a traceback
    again = srdata.load_pairs(files, 2, cache_dir=cache)
    assert all(np.array_equal(a, b) for a, b in zip(again.lr, expected.lr, strict=True))
    with np.load(entry) as z:  # and replaced by a whole one
        assert int(z["n"]) == len(expected.lr)


# 3 ------------------------------------------------------------------------------------------

def test_a_16_bit_gray_alpha_png_is_gray_to_the_protocol(tmp_path):
    """PIL calls a 16-bit gray + alpha PNG "RGBA", so `sr eval` (and training) took it for an
    RGB picture and scored Y = 16 + 219/255 v instead of its gray values, as the README says
    gray + alpha files are scored."""
    from skimage import data

    from pixelmill.sr.data import read_rgb

    gray = data.camera()[100:164, 100:172]
    la16 = tmp_path / "la16" / "g.png"
    la16.parent.mkdir()
    la16.write_bytes(gray_alpha_png16(gray))
    assert np.array_equal(read_rgb(la16), gray)
    plain = tmp_path / "gray" / "g.png"
    plain.parent.mkdir()
    write_png(plain, gray)
    scores = []
    for folder in (la16.parent, plain.parent):
        out = _run_json(["sr", "eval", str(folder), "--model", "bicubic", "--json"])
        scores.append(out["images"][0])
    assert scores[0]["psnr"] == pytest.approx(scores[1]["psnr"], abs=1e-9)
    assert scores[0]["ssim"] == pytest.approx(scores[1]["ssim"], abs=1e-12)


def _run_json(argv):
    from click.testing import CliRunner

    from pixelmill.cli import cli

    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# 4 ------------------------------------------------------------------------------------------

@pytest.fixture
def one_image(tmp_path, small_rgb) -> Path:
    """A folder too small for a held-out split: it validates on its training image."""
    d = tmp_path / "one"
    d.mkdir()
    write_png(d / "a.png", small_rgb[:56, :64])
    return d


def test_train_without_a_held_out_split_does_not_call_its_figures_held_out(tmp_path, one_image,
                                                                           capsys):
    """`sr train` on such a folder printed "bicubic on the held-out … crops" and "best held-out
    PSNR", though the card says "held_out": 0 and the figures come from a training image."""
    out = tmp_path / "run"
    assert main(["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(one_image),
                 "--out", str(out), "--epochs", "1", *TINY]) == 0
    text = capsys.readouterr().out
    assert "held-out" not in text.replace("no held-out split", ""), text
    assert "best validation (training image: no held-out split) PSNR" in text, text
    assert json.loads((out / "espcn_x2.json").read_text())["training_data"]["held_out"] == 0


def test_checkpoint_has_an_ordinary_file_mode(tmp_path, one_image):
    """checkpoint.safetensors was left 0600 (safetensors' private temporary) beside a 0644
    checkpoint.json and model, as the model's weights were before they were fixed."""
    out = tmp_path / "run"
    assert main(["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(one_image),
                 "--out", str(out), "--epochs", "1", *TINY]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes["checkpoint.safetensors"] == modes["checkpoint.json"], modes
    assert modes["checkpoint.safetensors"] == modes["espcn_x2.safetensors"], modes


def test_resume_of_a_run_that_used_its_time_budget_trains_no_more(tmp_path, one_image, capsys):
    """A run that stopped on --minutes, resumed with the same --minutes, ran one more epoch
    at learning rate 0 (compute for nothing, recorded as an epoch) before stopping again."""
    out = tmp_path / "run"
    argv = ["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(one_image),
            "--out", str(out), "--epochs", "1000", "--minutes", "0.0001", *TINY]
    assert main(argv) == 0
    assert "time budget of 0.0001 min reached" in capsys.readouterr().out
    before = (out / "checkpoint.safetensors").read_bytes()
    epochs = json.loads((out / "checkpoint.json").read_text())["epoch"]
    assert main([*argv, "--resume"]) == 0
    text = capsys.readouterr().out
    assert "already reached" in text, text
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == epochs
    assert (out / "checkpoint.safetensors").read_bytes() == before


# 5 ------------------------------------------------------------------------------------------

def test_in_memory_budget_below_the_network_does_not_point_to_streaming(tmp_path, small_rgb,
                                                                        capsys):
    """`upscale small.png out.png --memory 300MB` said to "write a .tif or .zarr OUTPUT to
    stream it within a fixed budget", which then failed too: most of what it needs is torch
    and the model, which streaming needs as well. It now says so and what --memory to give."""
    src = tmp_path / "small.png"
    write_png(src, small_rgb[:40, :50])
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--model", "espcn",
                 "--memory", "300MB"]) == 2
    err = capsys.readouterr().err
    assert "torch and a model alone take about" in err and "give --memory" in err, err
    assert "write a .tif or .zarr OUTPUT to stream" not in err, err
    assert not (tmp_path / "o.png").exists()
