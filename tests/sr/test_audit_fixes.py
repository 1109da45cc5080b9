"""Fixes from an audit of the sr commands: what `sr train`, `sr eval`, `sr export` and
`upscale` refuse (exit 2 naming the flag or the file, before any work, never a traceback),
what they never replace, and what the pair cache and the model cards hold."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from pixelmill.cli import main
from pixelmill.errors import DecodeError, InvalidParameterError
from pixelmill.sr.models import build_model
from pixelmill.sr.weights import WEIGHTS_DIR, save_model

#: tiny training runs: one step of 2 patches of 8×8 per epoch, one torch thread
TINY = ["--iters", "1", "--batch", "2", "--patch", "8", "--threads", "1"]


def write_png(path, image):
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


@pytest.fixture
def data(tmp_path, astronaut) -> Path:
    """A training folder: t0.png and t1.png fall in the training part, v7.png is held out."""
    d = tmp_path / "data"
    d.mkdir()
    for k, name in enumerate(["t0.png", "t1.png", "v7.png"]):
        write_png(d / name, astronaut[k * 60 : k * 60 + 56, 100:164])
    return d


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(data),
            "--out", str(out), "--epochs", "1", *TINY, *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def no_data_work(monkeypatch):
    """Make preparing training pairs fail the test: a refusal must come before it."""
    def boom(*args, **kwargs):
        raise AssertionError("training data prepared before the refusal")

    monkeypatch.setattr("pixelmill.sr.training.load_pairs", boom)


def espcn_card(**extra) -> dict:
    return {"name": "espcn", "architecture": "espcn", "scale": 2, "params": {}, **extra}


# 1 ------------------------------------------------------------------------------------------

def test_train_never_replaces_a_model_in_out_without_overwrite(tmp_path, data, capsys,
                                                               monkeypatch):
    """An --out holding a model and no checkpoint (what `sr export --to` leaves) was replaced
    by the new run with exit 0, with --resume too; now exit 2 before any work, and --resume
    says there is nothing to resume. --overwrite still starts over there."""
    shipped = tmp_path / "shipped"
    save_model(build_model("espcn", 2, {}), espcn_card(validation={"heldout_psnr": 31.0}),
               shipped / "espcn_x2", half=True)
    before = snapshot(shipped)
    with monkeypatch.context() as m:
        no_data_work(m)
        assert main(train_args(data, shipped)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out: {shipped} holds a model (espcn_x2.safetensors, "
                              "espcn_x2.json)") and "--overwrite" in err, err
        assert main(train_args(data, shipped, "--resume")) == 2
        err = capsys.readouterr().err
        assert "error: --resume: nothing to resume" in err and "espcn_x2.safetensors" in err, err
        assert main(train_args(data, tmp_path / "none", "--resume")) == 2
        assert "nothing to resume" in capsys.readouterr().err
        assert snapshot(shipped) == before and not (tmp_path / "none").exists()
    # the Python API takes no output over either
    from pixelmill.sr.training import TrainConfig, train

    with pytest.raises(InvalidParameterError, match="nothing to resume") as e:
        train(TrainConfig(arch="espcn", scale=2, data=str(data), out=str(shipped)),
              resume=True, progress=False)
    assert e.value.field == "resume" and snapshot(shipped) == before
    assert main(train_args(data, shipped, "--overwrite")) == 0
    after = snapshot(shipped)
    assert after["espcn_x2.safetensors"] != before["espcn_x2.safetensors"]
    assert {"checkpoint.safetensors", "checkpoint.json"} <= set(after)


# 2 ------------------------------------------------------------------------------------------

def test_pair_cache_is_keyed_on_the_files_contents(tmp_path, astronaut, camera, monkeypatch):
    """The cache was keyed on the relative path and byte size: another folder with BMPs of
    the same names and sizes (or a file edited in place) got the pixels cached for the first."""
    from pixelmill.sr.data import load_pairs

    cache = tmp_path / "cache"
    pictures = {"A": astronaut[:48, :64], "B": np.dstack([camera[:48, :64]] * 3)}
    for name, picture in pictures.items():
        (tmp_path / name / "set").mkdir(parents=True)
        assert cv2.imwrite(str(tmp_path / name / "set" / "img.bmp"), picture[..., ::-1])
    assert (tmp_path / "A/set/img.bmp").stat().st_size == (tmp_path / "B/set/img.bmp").stat().st_size
    got = {}
    for name in pictures:  # the same relative path, as `--data set` from either folder
        monkeypatch.chdir(tmp_path / name)
        got[name] = load_pairs([Path("set/img.bmp")], 2, cache_dir=cache)
        fresh = load_pairs([Path("set/img.bmp")], 2)
        np.testing.assert_array_equal(got[name].hr[0], fresh.hr[0])
        np.testing.assert_array_equal(got[name].lr[0], fresh.lr[0])
    assert not np.array_equal(got["A"].hr[0], got["B"].hr[0])
    # edited in place: same path, same size, same modification time, other pixels
    monkeypatch.chdir(tmp_path / "A")
    path = Path("set/img.bmp")
    stat = path.stat()
    assert cv2.imwrite(str(path), np.ascontiguousarray(astronaut[100:148, 200:264, ::-1]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = load_pairs([path], 2, cache_dir=cache)
    np.testing.assert_array_equal(edited.hr[0], load_pairs([path], 2).hr[0])
    assert not np.array_equal(edited.hr[0], got["A"].hr[0])


# 3 ------------------------------------------------------------------------------------------

def test_train_refuses_held_out_images_too_small_to_score_before_work(tmp_path, astronaut,
                                                                      capsys, monkeypatch):
    """Held-out images too small to pair were skipped silently: every epoch scored NaN, no
    weights were kept, and the run ended in FileNotFoundError on the card (exit 1)."""
    d = tmp_path / "data"
    d.mkdir()
    for k, name in enumerate(["t0.png", "t1.png"]):
        write_png(d / name, astronaut[k * 60 : k * 60 + 56, 100:164])
    for name in ("v7.png", "v29.png"):  # the held-out part, 6×6
        write_png(d / name, astronaut[:6, :6])
    out = tmp_path / "run"
    no_data_work(monkeypatch)
    assert main(train_args(d, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data: no held-out image can be scored at x2"), err
    assert "at least 8×8 pixels" in err and "v7.png (6×6)" in err and "v29.png (6×6)" in err
    assert not out.exists()
    write_png(d / "v7.png", astronaut[:56, :64])  # one held-out image large enough
    assert main(train_args(d, out, "--val-side", "5")) == 2  # but crops too small for any
    err = capsys.readouterr().err
    assert err.startswith("error: --val-side: central 5px crops are too small to score at x2")
    assert "use --val-side 8 or more" in err and not out.exists()


def test_train_that_never_scores_ends_with_a_message_not_a_traceback(tmp_path, data, capsys,
                                                                     monkeypatch):
    """A run whose every epoch scored NaN (a diverged network) kept no weights and ended in
    FileNotFoundError on the card; now exit 1 with a message, the checkpoint kept."""
    monkeypatch.setattr("pixelmill.sr.training._validate", lambda *args: math.nan)
    out = tmp_path / "run"
    assert main(train_args(data, out)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: espcn_x2: no epoch scored a validation PSNR"), err
    assert (out / "checkpoint.safetensors").exists() and not (out / "espcn_x2.json").exists()


# 4 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
                         ids=["empty", "corrupt"])
def test_eval_and_train_name_an_empty_or_corrupt_image(tmp_path, data, capsys, monkeypatch,
                                                       content):
    """A zero-byte image gave OpenCV's `!buf.empty()` assertion as a traceback (exit 1) in
    `sr eval` and `sr train`; now, as an image too small to score, exit 2 naming the file."""
    from pixelmill.sr.data import read_rgb

    bad = data / "t9.png"
    bad.write_bytes(content)
    reason = "empty file (0 bytes)" if not content else "cannot decode image"
    with pytest.raises(DecodeError, match=re.escape(f"{bad}: {reason}")):
        read_rgb(bad)
    assert main(["sr", "eval", str(data), "--model", "bicubic"]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: {reason}" in err and "Traceback" not in err, err
    out = tmp_path / "run"
    no_data_work(monkeypatch)
    assert main(train_args(data, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --data: {bad}: {reason}"), err
    assert not out.exists()


# 5 ------------------------------------------------------------------------------------------

def test_train_resume_refuses_another_model_scale_or_param(tmp_path, data, capsys, monkeypatch):
    """`--resume` with another --model, --scale or --param than the checkpoint's raised torch's
    RuntimeError (size mismatch / missing keys) as a traceback; now exit 2 naming the flag,
    before any tensor or image is loaded. The default given explicitly is no change."""
    out = tmp_path / "run"
    assert main(train_args(data, out)) == 0
    before = snapshot(out)
    cases = [
        (["--model", "fsrcnn"], "error: --model: the run in", "arch='espcn'; resuming with 'fsrcnn'"),
        (["--scale", "3"], "error: --scale: the run in", "scale=2; resuming with 3"),
        (["--param", "channels=32"], "error: --param: the run in",
         "channels=64; resuming with channels=32"),
    ]
    with monkeypatch.context() as m:
        no_data_work(m)
        for extra, start, words in cases:
            argv = [*train_args(data, out, "--resume", "--epochs", "2"), *extra]
            assert main(argv) == 2, extra
            err = capsys.readouterr().err
            assert err.startswith(start) and words in err and "Traceback" not in err, err
            assert snapshot(out) == before
    assert main([*train_args(data, out, "--resume", "--epochs", "2"),
                 "--param", "channels=64"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2


# 6 ------------------------------------------------------------------------------------------

def test_unreadable_or_mismatched_weights_are_usage_errors(tmp_path, data, capsys):
    """A truncated .safetensors, tensors of another network than the card's, a card whose
    params have the wrong type, or `--init` of an image gave SafetensorError, RuntimeError or
    TypeError tracebacks; now exit 2 naming the file and what is wrong, nothing written."""
    card = json.loads((WEIGHTS_DIR / "espcn_x2.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "trunc.safetensors").write_bytes((WEIGHTS_DIR / "espcn_x2.safetensors").read_bytes()[:100])
    shutil.copy(WEIGHTS_DIR / "fsrcnn_x2.safetensors", bad / "other.safetensors")
    shutil.copy(WEIGHTS_DIR / "espcn_x2.safetensors", bad / "typed.safetensors")
    shutil.copy(WEIGHTS_DIR / "espcn_x2.safetensors", bad / "listed.safetensors")
    for name, edit in (("trunc", {}), ("other", {}), ("typed", {"params": {"channels": "big"}}),
                       ("listed", {"params": [64]})):
        (bad / f"{name}.json").write_text(json.dumps({**card, **edit}))
    cases = {
        "trunc": "trunc.safetensors cannot be read as safetensors weights (SafetensorError",
        "other": "other.safetensors does not hold the tensors of the espcn x2 network its card",
        "typed": "typed.json gives params channels='big': expected an integer >= 2",
        "listed": "listed.json gives params [64]; expected an object of espcn's hyper-parameters",
    }
    ship = tmp_path / "ship"
    for name, words in cases.items():
        weights = str(bad / f"{name}.safetensors")
        assert main(["sr", "eval", str(data), "--model", weights]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: --model: ") and words in err, err
        assert "Traceback" not in err
        assert main(["sr", "export", weights, "--to", str(ship), "--data", str(data)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: WEIGHTS: ") and words in err, err
        assert not ship.exists()
    out = tmp_path / "run"
    assert main(train_args(data, out, "--init", str(data / "t0.png"))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init: {data / 't0.png'} cannot be read as safetensors "
                          "weights"), err
    assert main(train_args(data, out, "--init", str(WEIGHTS_DIR / "fsrcnn_x2.safetensors"))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --init: none of the ") and "matches the network" in err, err
    assert not out.exists()


# 7 ------------------------------------------------------------------------------------------

def test_out_and_to_under_a_file_are_usage_errors(tmp_path, data, capsys, monkeypatch):
    """`sr train --out notes.txt/run` and `sr export --to notes.txt/out` raised
    NotADirectoryError as a traceback; now exit 2 naming the flag."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    no_data_work(monkeypatch)
    assert main(train_args(data, notes / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out: {notes / 'run'} cannot be created: {notes} is a "
                          "file"), err
    weights = tmp_path / "w" / "espcn_x2"
    save_model(build_model("espcn", 2, {}), espcn_card(), weights)
    assert main(["sr", "export", str(weights.with_suffix(".safetensors")), "--to",
                 str(notes / "out"), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --to: {notes / 'out'} cannot be created: {notes} is a "
                          "file"), err
    assert notes.read_text() == "x"


# 8 ------------------------------------------------------------------------------------------

def test_upscale_checks_engine_whichever_path_output_takes(tmp_path, astronaut, capsys):
    """`upscale in.png out.png --engine nonsense` was accepted (exit 0): only the streaming
    path (a .tif OUTPUT) parsed --engine."""
    src = tmp_path / "in.png"
    write_png(src, astronaut[:32, :32])
    for name in ("out.png", "out.tif"):
        assert main(["upscale", str(src), str(tmp_path / name), "--model", "bicubic",
                     "--engine", "nonsense"]) == 2, name
        assert "error: --engine: unknown engine 'nonsense'" in capsys.readouterr().err
        assert not (tmp_path / name).exists()
    assert main(["upscale", str(src), str(tmp_path / "out.png"), "--model", "bicubic",
                 "--engine", "local"]) == 0


# 9 ------------------------------------------------------------------------------------------

def strict_json(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a card"))


def test_cards_are_strict_json_when_a_figure_is_infinite(tmp_path, astronaut, capsys,
                                                         monkeypatch):
    """A flat held-out image is reconstructed exactly by bicubic: `sr export` and `sr train`
    wrote `"heldout_bicubic_psnr": Infinity` / `"bicubic_psnr": Infinity`, not JSON; null now,
    as in `sr eval --json`, and `sr models` lists such a card."""
    from pixelmill.sr import weights as W
    from pixelmill.sr.weights import write_card

    d = tmp_path / "data"
    d.mkdir()
    for k, name in enumerate(["t0.png", "t1.png"]):
        write_png(d / name, astronaut[k * 60 : k * 60 + 56, 100:164])
    write_png(d / "v7.png", np.full((48, 48, 3), 128, np.uint8))  # the held-out image: flat
    out = tmp_path / "run"
    assert main(train_args(d, out)) == 0
    card = strict_json((out / "espcn_x2.json").read_text())
    assert card["validation"]["bicubic_psnr"] is None
    ship = tmp_path / "ship"
    assert main(["sr", "export", str(out / "espcn_x2.safetensors"), "--to", str(ship),
                 "--data", str(d)]) == 0
    card = strict_json((ship / "espcn_x2.json").read_text())
    assert card["validation"]["heldout_bicubic_psnr"] is None
    assert isinstance(card["validation"]["heldout_bicubic_ssim"], float)
    monkeypatch.setattr(W, "WEIGHTS_DIR", ship)
    capsys.readouterr()
    assert main(["sr", "models", "--json"]) == 0
    assert strict_json(capsys.readouterr().out)[0]["validation"]["heldout_bicubic_psnr"] is None
    card["validation"]["heldout_psnr"] = math.inf  # an exact model: null, listed as inf
    write_card(ship / "espcn_x2.safetensors", card, half=True)
    assert main(["sr", "models"]) == 0
    assert "inf dB" in capsys.readouterr().out
    write_card(tmp_path / "x.safetensors", {"psnr": math.inf, "rows": [math.nan, 1.0]})
    assert strict_json((tmp_path / "x.json").read_text())["rows"] == [None, 1.0]


# 10 -----------------------------------------------------------------------------------------

def test_upscale_refuses_five_channels_alike_on_both_paths(tmp_path, capsys):
    """A 5-channel TIFF to a .png OUTPUT failed OUTPUT's check on the upscaled shape ("image:
    … got shape (64, 64, 5)", exit 2) where the .tif path gives the decoder's refusal naming
    INPUT (exit 1); both give the decoder's now."""
    src = tmp_path / "c5.tif"
    tifffile.imwrite(src, np.zeros((32, 32, 5), np.uint8), planarconfig="contig")
    for name in ("out.png", "out.tif"):
        assert main(["upscale", str(src), str(tmp_path / name), "--model", "espcn"]) == 1, name
        err = capsys.readouterr().err
        assert "c5.tif: 5 channels: pixelmill reads images with 1 to 4 channels" in err, err
        assert "shape" not in err and not (tmp_path / name).exists()
