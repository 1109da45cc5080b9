"""The sr CLI: eval follows the protocol (checked against scikit-image metrics computed here on
the protocol's arrays), models lists cards, upscale equals the API, fuse writes the fused frame,
train writes weights + card and resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pixelmill.cli import cli, main
from pixelmill.sr.resample import imresize

SK_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def write_png(path, image):
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


@pytest.fixture
def folder(tmp_path, astronaut, camera):
    d = tmp_path / "imgs"
    d.mkdir()
    write_png(d / "a.png", astronaut[:67, :81])  # not a multiple of 2 or 3: modcrop matters
    write_png(d / "b.png", camera[100:170, 50:131])
    return d


def y_of(rgb):
    rgb = rgb.astype(np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


@pytest.mark.parametrize("scale", [2, 3])
def test_eval_bicubic_json_follows_protocol(folder, astronaut, camera, scale):
    result = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--scale", str(scale),
                                      "--model", "bicubic", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert [r["image"] for r in got["images"]] == ["a.png", "b.png"]
    s = scale
    for row, hr, to_y in ((got["images"][0], astronaut[:67, :81], y_of),
                          (got["images"][1], camera[100:170, 50:131], lambda g: g.astype(float))):
        hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
        sr = imresize(imresize(hr, 1 / s), s)
        a, b = to_y(hr)[s:-s, s:-s], to_y(sr)[s:-s, s:-s]
        assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
        assert row["ssim"] == pytest.approx(
            structural_similarity(a, b, data_range=255, **SK_SSIM), abs=1e-9)
    assert got["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in got["images"]]))


@pytest.mark.parametrize("layout", ["edsr", "basicsr", "selfexsr"])
def test_eval_takes_only_the_ground_truth_of_benchmark_layouts(tmp_path, astronaut, camera,
                                                               layout):
    """Set5/Set14 ship with LR and bicubic images beside the ground truth; eval must score
    the same two ground-truth images whichever layout holds them."""
    hr = {"baby": astronaut[:66, :80], "bird": camera[100:170, 50:130]}
    root = tmp_path / "Set5"
    for name, img in hr.items():
        lr = imresize(img, 1 / 2)
        if layout == "edsr":  # Set5/HR/baby.png, Set5/LR_bicubic/X2/babyx2.png
            gt, low = root / "HR" / f"{name}.png", root / "LR_bicubic" / "X2" / f"{name}x2.png"
        elif layout == "basicsr":  # Set5/GTmod12/baby.png, Set5/LRbicx2/baby.png
            gt, low = root / "GTmod12" / f"{name}.png", root / "LRbicx2" / f"{name}.png"
        else:  # Set5/image_SRF_2/img_001_SRF_2_HR.png beside _LR and _bicubic
            gt = root / "image_SRF_2" / f"{name}_SRF_2_HR.png"
            low = root / "image_SRF_2" / f"{name}_SRF_2_LR.png"
            for d in ("image_SRF_2", "image_SRF_4"):
                (root / d).mkdir(parents=True, exist_ok=True)
            write_png(root / "image_SRF_4" / f"{name}_SRF_4_HR.png", img[:64, :64])
            write_png(root / "image_SRF_2" / f"{name}_SRF_2_bicubic.png", imresize(lr, 2))
        for path, arr in ((gt, img), (low, lr)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(path, arr)
        # what a set unzipped from a Mac carries: AppleDouble forks, not images
        for junk in (root / "__MACOSX" / gt.relative_to(root).parent / f"._{gt.name}",
                     gt.parent / f"._{gt.name}"):
            junk.parent.mkdir(parents=True, exist_ok=True)
            junk.write_bytes(b"\x00\x05\x16\x07 not an image")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, img in hr.items():
        write_png(flat / f"{name}.png", img)

    def run(folder):
        result = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--scale", "2",
                                          "--model", "bicubic", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    got, want = run(root), run(flat)
    assert len(got["images"]) == 2 and got["layout"] != "all images"
    assert [r["psnr"] for r in got["images"]] == [r["psnr"] for r in want["images"]]
    assert got["mean"] == want["mean"]


def test_eval_scores_channels_as_stored(tmp_path, camera):
    """MATLAB's protocol looks at size(im, 3): a gray picture saved with three equal channels
    is RGB (scored on Y = 16 + 219/255 v), saved with one channel it is scored on its values.
    The two PSNRs differ by exactly 20 log10(255/219) when rounding leaves the channels equal."""
    gray = camera[100:180, 40:140]
    one, three = tmp_path / "one", tmp_path / "three"
    one.mkdir()
    three.mkdir()
    write_png(one / "g.png", gray)
    write_png(three / "g.png", np.dstack([gray] * 3))

    def psnr_of(folder):
        result = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--scale", "2",
                                          "--model", "bicubic", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["mean"]["psnr"]

    hr = gray[:80, :100]
    sr = imresize(imresize(hr, 1 / 2), 2)
    a, b = hr[2:-2, 2:-2].astype(float), sr[2:-2, 2:-2].astype(float)
    assert psnr_of(one) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
    ya, yb = y_of(np.dstack([a] * 3)), y_of(np.dstack([b] * 3))
    assert psnr_of(three) == pytest.approx(peak_signal_noise_ratio(ya, yb, data_range=255),
                                           abs=1e-9)
    assert psnr_of(three) - psnr_of(one) == pytest.approx(20 * np.log10(255 / 219), abs=1e-6)


def test_eval_names_the_image_it_cannot_score(folder, capsys):
    write_png(folder / "tiny.png", np.zeros((5, 5), np.uint8))  # nothing left once 2 px shaved
    assert main(["sr", "eval", str(folder), "--scale", "2", "--model", "bicubic"]) == 2
    assert "tiny.png: 5×5 is too small to score at x2" in capsys.readouterr().err


@pytest.mark.parametrize(("shape", "scale"), [((1, 1), 2), ((3, 7), 2), ((3, 7), 4),
                                              ((15, 40), 2), ((40, 19), 4)])
def test_eval_names_an_image_smaller_than_the_scale(tmp_path, shape, scale, capsys):
    """A 1×1 or 3×7 PNG at x2/x4 failed with "image: expected an H×W or H×W×C array, got
    (0, 0)"; a side whose modcrop leaves nothing (or less than SSIM's window) once S px are
    shaved is now named, with the size it needs."""
    from pixelmill.sr.evaluate import min_side

    d = tmp_path / "d"
    d.mkdir()
    write_png(d / "small.png", np.full((*shape, 3), 90, np.uint8))
    code = main(["sr", "eval", str(d), "--scale", str(scale), "--model", "bicubic"])
    err = capsys.readouterr().err
    assert code == 2, err
    h, w = shape
    assert f"small.png: {w}×{h} is too small to score at x{scale}" in err, err
    assert f"at least {min_side(scale)} px" in err and "Traceback" not in err
    assert min_side(2) == 16 and min_side(3) == 18 and min_side(4) == 20
    ok = np.random.default_rng(0).integers(0, 255, (min_side(scale),) * 2 + (3,), np.uint8)
    write_png(d / "small.png", ok)  # the least size scores
    assert main(["sr", "eval", str(d), "--scale", str(scale), "--model", "bicubic"]) == 0


def test_eval_json_is_valid_when_an_image_is_reconstructed_exactly(tmp_path, folder):
    """A flat image upscaled by bicubic is exact: its PSNR is infinite and `--json` printed
    `Infinity`, which is not JSON; it is null now, and so is the mean of a set holding it."""
    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))

    write_png(folder / "flat.png", np.full((40, 40, 3), 128, np.uint8))
    result = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--model", "bicubic", "--json"])
    assert result.exit_code == 0, result.output
    got = strict(result.output)
    rows = {r["image"]: r for r in got["images"]}
    assert rows["flat.png"]["psnr"] is None and rows["flat.png"]["ssim"] == 1.0
    assert isinstance(rows["a.png"]["psnr"], float)
    assert got["mean"]["psnr"] is None and isinstance(got["mean"]["ssim"], float)
    text = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--model", "bicubic"])
    assert text.exit_code == 0 and " inf dB" in text.output  # the text output keeps inf


def test_eval_model_path_that_is_no_model_is_a_usage_error(tmp_path, folder, capsys):
    """A training checkpoint raised KeyError 'architecture', weights without their .json card
    FileNotFoundError, both as tracebacks; both now name --model and what is missing."""
    import shutil

    from pixelmill.sr.weights import WEIGHTS_DIR

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(WEIGHTS_DIR / "espcn_x2.safetensors", run / "checkpoint.safetensors")
    (run / "checkpoint.json").write_text(json.dumps(
        {"epoch": 3, "config": {"arch": "espcn", "scale": 2}, "history": []}))
    shutil.copy(WEIGHTS_DIR / "espcn_x2.safetensors", run / "nocard.safetensors")
    card = json.loads((WEIGHTS_DIR / "espcn_x2.json").read_text())
    for name, edit in (("listarch", {"architecture": ["espcn"]}), ("textscale", {"scale": "2"})):
        shutil.copy(WEIGHTS_DIR / "espcn_x2.safetensors", run / f"{name}.safetensors")
        (run / f"{name}.json").write_text(json.dumps({**card, **edit}))  # hand-edited cards
    cases = {
        "checkpoint.safetensors": ["is a training checkpoint", "espcn_x2.safetensors",
                                   "pixelmill sr export"],
        "nocard.safetensors": ["has no card nocard.json beside it"],
        "listarch.safetensors": ["names architecture ['espcn'], not one of"],
        "textscale.safetensors": ["gives scale '2'; expected an integer >= 2"],
    }
    for name, words in cases.items():
        code = main(["sr", "eval", str(folder), "--model", str(run / name)])
        captured = capsys.readouterr()
        assert code == 2, captured.err
        assert captured.err.startswith("error: --model: ") and "Traceback" not in captured.err
        assert all(w in captured.err for w in words), captured.err
        assert "images" not in captured.out  # refused before the folder is listed
    assert main(["sr", "export", str(run / "checkpoint.safetensors"),
                 "--to", str(tmp_path / "ship")]) == 2
    assert "WEIGHTS: " in capsys.readouterr().err and not (tmp_path / "ship").exists()


def test_eval_refuses_a_bad_device_before_any_output(folder, capsys):
    assert main(["sr", "eval", str(folder), "--device", "gpu", "--model", "bicubic"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: --device: 'gpu' is not a device")


@pytest.mark.parametrize(("model", "param", "words"), [
    ("espcn", "foo=3", ["--param", "no hyper-parameter 'foo'", "channels=64"]),
    ("espcn", "channels=-4", ["--param: channels=-4", "integer >= 2"]),
    ("edsr", "blocks=2.5", ["--param: blocks=2.5", "integer >= 1"]),
    ("edsr", "blocks=abc", ["--param: blocks='abc'", "integer >= 1"]),
    ("edsr", "res_scale=0", ["--param: res_scale=0", "positive number"]),
    ("fsrcnn", "m=true", ["--param: m=True"]),
    ("espcn", "channels=NaN", ["--param: channels=nan", "integer >= 2"]),  # int(nan): ValueError
    ("edsr", "blocks=1e999", ["--param: blocks=inf", "integer >= 1"]),  # int(inf): OverflowError
])
def test_train_refuses_a_bad_param_before_any_work(tmp_path, folder, model, param, words,
                                                   capsys):
    """Unknown or ill-typed --param values crashed with a traceback (exit 1) after the data
    was prepared, leaving an empty --out behind."""
    out = tmp_path / "run"
    code = main(["sr", "train", "--model", model, "--data", str(folder), "--out", str(out),
                 "--epochs", "1", "--iters", "1", "--param", param, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert all(w in err for w in words) and "Traceback" not in err, err
    assert not out.exists()


def test_train_refuses_a_patch_no_training_image_holds(tmp_path, folder, capsys, monkeypatch):
    """`--patch 200` larger than every training image crashed after data preparation."""
    def boom(*a, **k):
        raise AssertionError("data prepared before --patch was checked")

    monkeypatch.setattr("pixelmill.sr.training.load_pairs", boom)
    out = tmp_path / "run"
    code = main(["sr", "train", "--model", "espcn", "--data", str(folder), "--out", str(out),
                 "--epochs", "1", "--iters", "1", "--patch", "200", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: --patch: no training image holds a 200×200"), err
    assert re.search(r"use --patch 3[345] or less", err) and not out.exists()


def test_train_patch_advice_stays_within_the_least_patch(tmp_path):
    """Training images too small for even an 8×8 patch were told "use --patch 6 or less",
    which --patch (at least 8) refuses: they are told the size the images need instead."""
    from pixelmill.errors import InvalidParameterError
    from pixelmill.sr.training import MIN_PATCH, check_patch

    write_png(tmp_path / "small.png", np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(InvalidParameterError) as e:
        check_patch([tmp_path / "small.png"], 3, MIN_PATCH)
    assert "use --patch" not in str(e.value), str(e.value)
    assert f"--patch is at least {MIN_PATCH}: training images need 24×24 pixels" in str(e.value)


def test_eval_crop_too_small_to_score_names_the_flag_before_any_output(folder, capsys):
    """`--crop 16 --scale 4` blamed every image ("a.png: 16×16 is too small") after the listing
    was printed, though the images were larger than 16×16: the flag is named, up front."""
    assert main(["sr", "eval", str(folder), "--scale", "4", "--model", "bicubic",
                 "--crop", "16"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: --crop: 16 px is too small to score at x4"), captured.err
    assert "use --crop 20 or more" in captured.err
    assert main(["sr", "eval", str(folder), "--scale", "4", "--model", "bicubic",
                 "--crop", "20"]) == 0


def test_models_lists_cards_and_eval_rejects_unknown_model(folder):
    result = CliRunner().invoke(cli, ["sr", "models", "--json"])
    assert result.exit_code == 0
    for card in json.loads(result.output):
        assert {"architecture", "scale", "training", "validation"} <= set(card)
    assert main(["sr", "eval", str(folder), "--model", "nosuch"]) == 2


def test_upscale_bicubic_tiled_equals_imresize(tmp_path, astronaut):
    src = tmp_path / "in.png"
    write_png(src, astronaut[:50, :70])
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), str(out), "--scale", "3", "--model", "bicubic",
                 "--tile", "16"]) == 0
    got = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(got, imresize(astronaut[:50, :70], 3))


def test_upscale_replaces_an_output_only_with_overwrite(tmp_path, astronaut, capsys):
    """`upscale` silently replaced an existing OUTPUT while `run` and `tile` refuse to."""
    src = tmp_path / "in.png"
    write_png(src, astronaut[:40, :40])
    for name in ("out.png", "out.tif"):
        out = tmp_path / name
        args = ["upscale", str(src), str(out), "--model", "bicubic", "--tile", "16"]
        assert main(args) == 0
        before = out.stat().st_mtime_ns
        assert main(args) == 2
        assert "--overwrite" in capsys.readouterr().err
        assert out.stat().st_mtime_ns == before  # untouched
        assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["upscale", str(src), str(tmp_path / "out.tif"), "--model", "bicubic",
                 "--tile", "16", "--resume"]) == 0  # a finished streaming run: nothing to do
    assert "from an earlier run" in capsys.readouterr().out


def test_upscale_refuses_from_the_header_before_decoding(tmp_path, capsys):
    """A result that cannot fit --memory was found only after decoding the input (a 1.3 KB
    JPEG claiming 20000×20000 took 2.6 GB first); the header's size now decides."""
    from tests._images import bomb_png

    big = tmp_path / "claims.png"  # a valid header claiming 20000×20000, almost no data
    big.write_bytes(bomb_png(20000, 20000))
    code = main(["upscale", str(big), str(tmp_path / "o.png"), "--model", "bicubic",
                 "--memory", "1GB"])
    err = capsys.readouterr().err
    assert code == 2 and "40000×40000 result made in memory needs about" in err, err


@pytest.mark.parametrize("stored", ["uint32", "int32", "float32", "uint16"])
def test_upscale_knows_a_32_bit_tiffs_sample_type_from_its_header(tmp_path, capsys, stored):
    """A 32-bit TIFF was taken for float32 from its bit depth: a uint32 one was refused with
    'png cannot hold float32 pixels' instead of the decoder's real reason."""
    import tifffile

    src = tmp_path / f"{stored}.tif"
    tifffile.imwrite(str(src), np.zeros((8, 8), stored))
    code = main(["upscale", str(src), str(tmp_path / "o.png"), "--model", "bicubic"])
    err = capsys.readouterr().err
    if stored in ("uint32", "int32"):
        assert code == 1 and f"unsupported TIFF sample type {stored}" in err, err
    elif stored == "float32":
        assert code == 2 and "png cannot hold float32" in err, err
    else:
        assert code == 0, err


def test_fuse_cli_writes_registered_result(tmp_path, astronaut):
    from scipy import ndimage

    gt = astronaut[200:264, 200:264, 0].astype(float)
    paths = []
    for k, d in enumerate([(0, 0), (0.5, 0.25), (-0.5, 0.75)]):
        lr = imresize(ndimage.shift(gt, (2 * d[0], 2 * d[1]), order=3, mode="nearest"), 0.5)
        paths.append(tmp_path / f"f{k}.png")
        write_png(paths[-1], np.clip(np.round(lr), 0, 255).astype(np.uint8))
    result = CliRunner().invoke(cli, ["sr", "fuse", *map(str, paths), str(tmp_path / "o.png"),
                                      "--iterations", "3", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["shape"] == [64, 64]
    assert abs(got["shifts"][1]["dy"] - 0.5) < 0.1 and abs(got["shifts"][2]["dx"] - 0.75) < 0.1
    assert main(["sr", "fuse", str(paths[0]), str(tmp_path / "o.png")]) == 2
    again = [*map(str, paths), str(tmp_path / "o.png"), "--iterations", "1"]
    assert main(["sr", "fuse", *again]) == 2  # an earlier result is not replaced silently
    assert main(["sr", "fuse", *again, "--overwrite"]) == 0


def test_train_writes_card_and_resumes(tmp_path, astronaut):
    data = tmp_path / "data"
    data.mkdir()
    for k in range(3):
        write_png(data / f"t{k}.png", astronaut[k * 60 : k * 60 + 48, 100:148])
    out = tmp_path / "run"
    args = ["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(data),
            "--out", str(out), "--iters", "2", "--batch", "2", "--patch", "8", "--threads", "1"]
    assert main([*args, "--epochs", "1"]) == 0
    card = json.loads((out / "espcn_x2.json").read_text())
    assert card["scale"] == 2 and card["architecture"] == "espcn"
    assert np.isfinite(card["validation"]["psnr"]) and np.isfinite(card["validation"]["bicubic_psnr"])
    assert (out / "espcn_x2.safetensors").exists()
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))
    # starting again in the same --out silently replaced the earlier run's checkpoint
    assert main([*args, "--epochs", "1"]) == 2
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 2  # untouched
    assert main([*args, "--epochs", "1", "--overwrite"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 1


def test_train_val_side_zero_scores_whole_held_out_images(tmp_path, astronaut):
    """The 192-px central crops chose a 14-block ×3 EDSR checkpoint 0.015 dB worse on the
    whole held-out images than the run's last one; `--val-side 0` scores the whole images
    (`sr eval`'s protocol) and a resume cannot silently switch what the best was scored on."""
    data = tmp_path / "data"
    data.mkdir()
    for k, name in enumerate(["t0.png", "t1.png", "v7.png", "v29.png"]):
        write_png(data / name, astronaut[k * 60 : k * 60 + 56, 100:164])
    cards = {}
    for side in (16, 0):
        out = tmp_path / f"run{side}"
        args = ["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(data),
                "--out", str(out), "--iters", "1", "--batch", "2", "--patch", "8",
                "--threads", "1", "--val-side", str(side)]
        assert main([*args, "--epochs", "1"]) == 0
        cards[side] = json.loads((out / "espcn_x2.json").read_text())["validation"]
    assert "central 16px crops" in cards[16]["protocol"]
    assert "whole images" in cards[0]["protocol"] and "held-out" in cards[0]["protocol"]
    from pixelmill.sr.data import load_pairs, train_val_split
    from pixelmill.sr.resample import imresize
    from pixelmill.sr.training import psnr

    _, val_files, held_out = train_val_split(data)
    assert held_out and sorted(f.name for f in val_files) == ["v29.png", "v7.png"]
    whole = load_pairs(val_files, 2)
    assert whole.hr[0].shape == (56, 64)  # not cropped
    expect = np.mean([psnr(hr, np.clip(imresize(lr.astype(np.float64), 2), 0, 1), data_range=1.0,
                           crop_border=2) for lr, hr in zip(whole.lr, whole.hr, strict=True)])
    assert cards[0]["bicubic_psnr"] == pytest.approx(expect, abs=1e-3)
    assert abs(cards[16]["bicubic_psnr"] - cards[0]["bicubic_psnr"]) > 0.01
    before = (tmp_path / "run0" / "checkpoint.json").read_text()
    assert main([*args[:-1], "16", "--epochs", "2", "--resume"]) == 2
    assert (tmp_path / "run0" / "checkpoint.json").read_text() == before


@pytest.mark.parametrize("names", [["t0.png", "t1.png", "t2.png"], ["v7.png", "v29.png"]])
def test_export_of_a_folder_without_a_held_out_split_says_so(tmp_path, astronaut, capsys, names):
    """`sr export` exited 4 ("no images to evaluate") for a folder too small for one side of
    the CRC-32 split, after training on it had worked; and training's card called its
    training image "held-out". Both now use one split and name what they scored on.
    (t*.png all fall in the training part, v*.png all in the held-out part.)"""
    data = tmp_path / "data"
    data.mkdir()
    for k, name in enumerate(names):
        write_png(data / name, astronaut[k * 60 : k * 60 + 48, 100:148])
    out, ship = tmp_path / "run", tmp_path / "ship"
    assert main(["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(data),
                 "--out", str(out), "--iters", "1", "--batch", "2", "--patch", "8",
                 "--threads", "1", "--epochs", "1"]) == 0
    card = json.loads((out / "espcn_x2.json").read_text())
    assert card["training_data"]["held_out"] == 0
    assert "no held-out split" in card["validation"]["protocol"]
    capsys.readouterr()
    assert main(["sr", "export", str(out / "espcn_x2.safetensors"), "--data", str(data),
                 "--to", str(ship)]) == 0
    assert "too small for a held-out split" in capsys.readouterr().err
    shipped = json.loads((ship / "espcn_x2.json").read_text())["validation"]
    assert shipped["heldout_images"] == 0 and "no held-out split" in shipped["heldout_protocol"]
    assert np.isfinite(shipped["heldout_psnr"]) and np.isfinite(shipped["heldout_bicubic_psnr"])


def test_export_replaces_a_model_only_with_overwrite(tmp_path, astronaut, capsys, monkeypatch):
    """`sr export` wrote straight into the package's weights folder (its default --to) and
    replaced a shipped model of the same name and scale without a word; now that is a usage
    error naming --to, before any work, unless --overwrite; and the export is staged, so the
    folder holds the old model or the new one, never a mix."""
    from pixelmill.sr import weights as W
    from pixelmill.sr.models import build_model
    from pixelmill.sr.weights import save_model

    data = tmp_path / "data"
    data.mkdir()
    for k in range(2):
        write_png(data / f"v{7 if k else 29}.png", astronaut[k * 60 : k * 60 + 48, 100:148])
    shipped = tmp_path / "weights"  # stands in for the package's folder
    shipped.mkdir()
    for f in W.WEIGHTS_DIR.glob("espcn_x2.*"):
        (shipped / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(W, "WEIGHTS_DIR", shipped)
    before = {f.name: f.read_bytes() for f in shipped.iterdir()}
    trained = tmp_path / "espcn_x2"
    save_model(build_model("espcn", 2, {}), {"name": "espcn", "architecture": "espcn",
                                             "scale": 2, "params": {}}, trained)
    assert main(["sr", "export", str(trained.with_suffix(".safetensors")),
                 "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "--to:" in err and "already exists (a shipped model" in err and "--overwrite" in err
    assert {f.name: f.read_bytes() for f in shipped.iterdir()} == before
    assert main(["sr", "export", str(trained.with_suffix(".safetensors")), "--data", str(data),
                 "--overwrite"]) == 0
    after = {f.name: f.read_bytes() for f in shipped.iterdir()}
    assert sorted(after) == sorted(before)  # no staging folder left behind
    assert after["espcn_x2.safetensors"] != before["espcn_x2.safetensors"]
    assert np.isfinite(json.loads(after["espcn_x2.json"])["validation"]["heldout_psnr"])


def test_export_of_a_folder_without_images_ships_nothing(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    empty, ship = tmp_path / "empty", tmp_path / "ship"
    empty.mkdir()
    from pixelmill.sr.models import build_model
    from pixelmill.sr.weights import save_model

    save_model(build_model("espcn", 2, {}), {"name": "espcn", "architecture": "espcn", "scale": 2,
                                             "params": {}}, weights.with_suffix(""))
    # exit 4, the input held no images, and nothing shipped
    assert main(["sr", "export", str(weights), "--data", str(empty), "--to", str(ship)]) == 4
    assert "data: no images" in capsys.readouterr().err
    assert not ship.exists() or not list(ship.iterdir())


def test_upscale_and_eval_ensemble_use_the_self_ensemble(tmp_path, astronaut, folder):
    from pixelmill.sr.infer import upscale_image
    from pixelmill.sr.weights import load_model

    src = tmp_path / "in.png"
    image = astronaut[:40, :52]
    write_png(src, image)
    outs = {}
    for flag in ([], ["--ensemble"]):
        out = tmp_path / f"out{len(flag)}.png"
        assert main(["upscale", str(src), str(out), "--model", "edsr", "--device", "cpu",
                     "--tile", "24", *flag]) == 0
        outs[bool(flag)] = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    ens = upscale_image(image, load_model("edsr", 2, "cpu"), 2, ensemble=True)
    assert np.abs(outs[True].astype(int) - ens).max() <= 1  # tiles vs whole: float rounding
    assert not np.array_equal(outs[True], outs[False])
    result = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--model", "edsr",
                                      "--ensemble", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["ensemble"] is True and len(got["images"]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a torch without CUDA")
def test_device_cuda_without_a_gpu_is_a_usage_error_before_work(tmp_path, folder, capsys):
    """`--device cuda` where torch sees no GPU raised torch's AssertionError with a traceback
    from deep inside the first .to(device); now every command refuses it before any work."""
    src = folder / "a.png"
    runs = {
        "upscale": ["upscale", str(src), str(tmp_path / "o.png"), "--device", "cuda"],
        "upscale-stream": ["upscale", str(src), str(tmp_path / "o.tif"), "--device", "cuda",
                           "--model", "espcn"],
        "eval": ["sr", "eval", str(folder), "--model", "espcn", "--device", "cuda"],
        "train": ["sr", "train", "--model", "espcn", "--data", str(folder), "--epochs", "1",
                  "--iters", "1", "--device", "cuda", "--out", str(tmp_path / "run")],
    }
    for name, argv in runs.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert "device: 'cuda' requested" in err and "sees no CUDA device" in err, (name, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.tif").exists()
    assert not (tmp_path / "run").exists()


def test_upscale_device_takes_cuda_n_and_the_op_checks_its_syntax(tmp_path, folder, capsys):
    """`upscale --device cuda:0` was refused by a cpu/cuda/auto choice although the README
    promises cuda:N; the op itself now checks the spelling and the CLI the device."""
    import torch

    from pixelmill.errors import InvalidParameterError
    from pixelmill.ops import get_op

    src = folder / "a.png"
    for out in ("o.png", "o.tif"):
        code = main(["upscale", str(src), str(tmp_path / out), "--device", "cuda:0",
                     "--model", "espcn"])
        err = capsys.readouterr().err
        if torch.cuda.is_available():
            assert code == 0, err
        else:
            assert code == 2 and "'cuda:0' requested" in err, err
    assert main(["upscale", str(src), str(tmp_path / "p.png"), "--device", "gpu"]) == 2
    assert "error: --device: 'gpu' is not a device" in capsys.readouterr().err
    # on a cluster the device is the workers' to check, but the flag is still named
    assert main(["upscale", str(src), str(tmp_path / "p.tif"), "--device", "gpu",
                 "--engine", "dask"]) == 2
    assert "error: --device: 'gpu' is not a device" in capsys.readouterr().err
    op = get_op("super_resolve")
    assert op.bind({"device": "cuda:1"})["device"] == "cuda:1"  # syntax only: no GPU needed
    with pytest.raises(InvalidParameterError, match="use auto, cpu, cuda or cuda:N"):
        op.bind({"device": "gpu"})


def test_resolve_device(monkeypatch):
    from pixelmill.errors import InvalidParameterError
    from pixelmill.sr.weights import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    for bad, message in [("gpu", "is not a device"), ("mps", "cpu or cuda")]:
        with pytest.raises(InvalidParameterError, match=message) as info:
            resolve_device(bad, field="--device")
        assert info.value.field == "--device"
    # the index check, with torch told it has one GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(InvalidParameterError, match="sees 1 CUDA device"):
        resolve_device("cuda:1")


def test_upscale_and_fuse_refuse_an_output_they_cannot_write_before_computing(
        tmp_path, astronaut, monkeypatch, capsys):
    """An RGBA input to a .jpg output (or a read-only format) used to fail in write_image,
    after the whole upscale had run, and --memory was ignored by the in-memory path; now the
    output is checked before any work."""
    import pixelmill.sr.fusion
    import pixelmill.sr.tiles

    def no_work(*args, **kwargs):
        raise AssertionError("computed an output that cannot be written")

    monkeypatch.setattr(pixelmill.sr.tiles, "upscale_tiled", no_work)
    monkeypatch.setattr(pixelmill.sr.fusion, "fuse_frames", no_work)
    rgba = tmp_path / "rgba.png"
    assert cv2.imwrite(str(rgba), np.dstack([astronaut[:40, :50], astronaut[:40, :50, 0]]))
    cases = [
        (["upscale", str(rgba), str(tmp_path / "o.jpg")], "jpg cannot hold an alpha channel"),
        (["upscale", str(rgba), str(tmp_path / "o.gif")], "cannot write gif"),
        (["upscale", str(rgba), str(tmp_path / "o.xyz")], "cannot tell the image format"),
        (["sr", "fuse", str(rgba), str(rgba), str(tmp_path / "f.jpg")],
         "jpg cannot hold an alpha channel"),
        (["sr", "fuse", str(rgba), str(rgba), str(tmp_path / "f.bmp")], "cannot write bmp"),
        # the in-memory path holds the whole result: a budget it cannot meet points to streaming
        (["upscale", str(rgba), str(tmp_path / "m.png"), "--memory", "100MB"],
         "made in memory needs about"),
        (["upscale", str(rgba), str(tmp_path / "m.png"), "--memory", "lots"],
         "--memory: expected a size"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgba.png"]


def _ok_tile_rows(journal) -> int:
    try:
        return sum("#tile=" in line and '"ok"' in line for line in open(journal, encoding="utf-8"))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_upscale_streaming_resumes_a_killed_run(tmp_path, astronaut, capsys):
    """SIGKILL `pixelmill upscale IN OUT.tif` mid-run; `--resume` upscales only the tiles
    without an ok row and writes exactly what an uninterrupted run writes."""
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, astronaut[:160, :192], photometric="rgb")
    out = tmp_path / "out.tif"
    args = ["upscale", str(src), str(out), "--scale", "2", "--model", "espcn", "--tile", "16",
            "--workers", "1", "--memory", "2GB"]
    proc = subprocess.Popen([sys.executable, "-m", "pixelmill", *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = f"{out}.manifest.parquet.journal.jsonl"
    try:
        deadline = time.monotonic() + 120
        while _ok_tile_rows(journal) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = _ok_tile_rows(journal)
    assert done >= 10 and not out.exists()
    assert main([*args, "--resume"]) == 0
    line = capsys.readouterr().out
    resumed = int(re.search(r"120 tiles \((\d+) from an earlier run\)", line).group(1))
    assert done <= resumed < 120
    fresh = tmp_path / "fresh.tif"
    assert main(["upscale", str(src), str(fresh), *args[3:]]) == 0
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(fresh))
    # the in-memory path has no manifest to resume from
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--resume"]) == 2
    assert "--resume: only the streaming path" in capsys.readouterr().err


def test_fuse_cli_names_a_frame_of_another_scene(tmp_path, astronaut, capsys):
    """A frame of another scene was fused in silently; now exit 2 naming its file."""
    paths = []
    for k, crop in enumerate([astronaut[200:248, 200:248], astronaut[201:249, 200:248],
                              astronaut[20:68, 300:348]]):
        paths.append(str(tmp_path / f"f{k}.png"))
        write_png(paths[-1], np.ascontiguousarray(crop))
    assert main(["sr", "fuse", *paths, str(tmp_path / "o.png"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert f"FRAMES[2] ({paths[2]}): registration failed" in err, err
    assert not (tmp_path / "o.png").exists()


def test_upscale_streaming_default_tile_is_512_and_a_given_tile_is_kept(tmp_path, astronaut,
                                                                        capsys):
    src = tmp_path / "in.tif"
    wide = np.ascontiguousarray(np.concatenate([astronaut, astronaut], axis=1)[:100, :600])
    tifffile.imwrite(src, wide, photometric="rgb")
    for extra, tiles in (([], 2), (["--tile", "64"], 20)):
        out = tmp_path / f"out{len(extra)}.tif"
        assert main(["upscale", str(src), str(out), "--scale", "2", "--model", "bicubic",
                     "--workers", "1", "--memory", "4GB", *extra]) == 0
        assert f", {tiles} tiles," in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out0.tif"),
                                  tifffile.imread(tmp_path / "out2.tif"))


def test_train_loss_mse_is_the_squared_error_and_resume_keeps_the_loss(tmp_path, astronaut):
    """`--loss mse` (PSNR's own objective, for fine-tuning an l1 model) trains on the mean
    squared error of the same patches l1 sees; a resume cannot switch the loss halfway."""
    data = tmp_path / "data"
    data.mkdir()
    for k, name in enumerate(["t0.png", "t1.png", "v7.png"]):
        write_png(data / name, astronaut[k * 60 : k * 60 + 56, 100:164])
    first = {}
    for loss in ("l1", "mse"):
        out = tmp_path / loss
        args = ["sr", "train", "--model", "espcn", "--scale", "2", "--data", str(data),
                "--out", str(out), "--iters", "1", "--batch", "2", "--patch", "8",
                "--threads", "1", "--loss", loss]
        assert main([*args, "--epochs", "1"]) == 0
        assert json.loads((out / "espcn_x2.json").read_text())["training"]["loss"] == loss
        state = json.loads((out / "checkpoint.json").read_text())
        first[loss] = state["history"][0]["loss"]  # one step: the loss of the initial network
    # same seed, same initial network, same patches: mean(e**2) lies in [mean(|e|)**2, mean(|e|))
    assert first["l1"] ** 2 <= first["mse"] < first["l1"]
    before = (tmp_path / "mse" / "checkpoint.json").read_text()
    assert main([*args[:-1], "l1", "--epochs", "2", "--resume"]) == 2
    assert (tmp_path / "mse" / "checkpoint.json").read_text() == before


def test_train_api_refuses_an_unknown_loss_before_writing(tmp_path):
    """The Python API took any loss name other than "l1" as mse; it now names the field."""
    from pixelmill.errors import InvalidParameterError
    from pixelmill.sr.training import TrainConfig, train

    cfg = TrainConfig(arch="espcn", scale=2, data=str(tmp_path), out=str(tmp_path / "run"),
                      loss="huber")
    with pytest.raises(InvalidParameterError, match="loss") as err:
        train(cfg, progress=False)
    assert err.value.field == "loss" and not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal for a torch without CUDA")
def test_run_with_a_cuda_step_on_the_local_engine_is_a_usage_error_before_work(
        tmp_path, folder, capsys):
    """`pixelmill run` of a super_resolve step with device: cuda on this CPU-only machine
    failed every image (exit 3); the local engine runs the job here, so it is refused first,
    naming the step and `device`, as `upscale --device cuda` is."""
    from pixelmill.errors import InvalidParameterError
    from pixelmill.ops.sr import check_local_devices

    spec = tmp_path / "sr.yaml"
    spec.write_text("steps:\n  - op: gaussian\n    sigma: 1.0\n  - op: super_resolve\n"
                    "    model: espcn\n    scale: 2\n    device: cuda\n")
    out = tmp_path / "out"
    assert main(["run", str(spec), str(folder), str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "error: steps[1].device: 'cuda' requested" in err and "sees no CUDA device" in err
    assert not out.exists()
    with pytest.raises(InvalidParameterError) as e:
        check_local_devices([{"op": "super_resolve", "model": "espcn", "device": "cuda:0"}])
    assert e.value.field == "steps[0].device"
    check_local_devices([{"op": "super_resolve", "model": "espcn", "device": "cpu"},
                         {"op": "super_resolve", "model": "espcn"}])  # auto: usable


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal for a torch without CUDA")
def test_python_run_with_a_cuda_step_on_the_local_engine_is_refused_before_work(tmp_path, folder):
    """`pixelmill.run()` makes the check the CLI makes (it used to be the CLI's alone): a
    cuda step on this machine's engine is refused before planning, naming the step."""
    import pixelmill
    from pixelmill.errors import InvalidParameterError

    steps = [{"op": "super_resolve", "model": "espcn", "scale": 2, "device": "cuda"}]
    for engine in ("local", None):
        out = tmp_path / f"out-{engine}"
        with pytest.raises(InvalidParameterError, match="sees no CUDA device") as e:
            pixelmill.run(steps, str(folder), str(out), engine=engine)
        assert e.value.field == "steps[0].device" and not out.exists()
