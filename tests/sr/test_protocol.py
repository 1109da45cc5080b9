"""`pixelmill sr eval --model bicubic` on a synthetic Set5-like set, checked against an
independent re-implementation of the literature's protocol written out here:

* MATLAB's ``imresize`` (bicubic) from its ``contributions()`` algorithm, loop by loop: Keys'
  cubic a = -0.5, kernel widened by 1/scale when shrinking, ``u = x/scale + 0.5 (1 - 1/scale)``,
  out-of-range taps mirrored (``aux = [1:n, n:-1:1]``), all-zero taps dropped, rows
  normalised, the smaller-scale dimension first (height on ties), uint8 rounding (half away
  from zero) and saturation after each pass;
* modcrop (bottom/right), LR = imresize(HR, 1/S), SR = imresize(LR, S), both uint8;
* BT.601 Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255 in float64 from the uint8 RGB, not
  rounded; a single-channel image is scored on its values;
* S pixels shaved from every side; scikit-image's PSNR and SSIM (gaussian 11x11, sigma 1.5,
  population covariances), data_range 255.

The same four ground-truth images are stored in each benchmark layout (EDSR's HR/ +
LR_bicubic/X<S>/, BasicSR's GTmod12/ + LRbicx<S>/, SelfExSR's image_SRF_<S>/ *_HR + *_LR +
*_bicubic, RCAN's HR/<set>/x<S>/, a flat folder of BMPs), in sizes divisible by none of 2, 3, 4, and in the file
variants a reviewer's copy may have (16-bit, RGBA, gray + alpha, palette, CMYK JPEG, EXIF
rotation tag).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pixelmill.cli import cli, main
from pixelmill.sr.data import read_rgb
from tests.sr.test_imresize import keys_cubic  # Keys (1981), a = -0.5, from the formula

SCALES = (2, 3, 4)


# ---------------------------------------------------------------- independent reference --

def _contributions(n_in: int, n_out: int, scale: float) -> list[list[tuple[int, float]]]:
    """Per output pixel: (0-based input index, normalised weight) pairs, as MATLAB's."""
    width = 4.0 / scale if scale < 1 else 4.0
    table = []
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for j in range(left, left + math.ceil(width) + 2):
            w = scale * keys_cubic(scale * (u - j)) if scale < 1 else keys_cubic(u - j)
            m = (j - 1) % (2 * n_in)  # aux = [1:n, n:-1:1]; aux(mod(j - 1, 2n) + 1)
            taps.append((m if m < n_in else 2 * n_in - 1 - m, w))
        total = sum(w for _, w in taps)
        table.append([(i, w / total) for i, w in taps if w != 0])
    return table


def _round_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255)


def _resize_dim(a: np.ndarray, dim: int, n_out: int, scale: float) -> np.ndarray:
    a = np.moveaxis(a, dim, 0)
    out = np.zeros((n_out, *a.shape[1:]))
    for k, taps in enumerate(_contributions(a.shape[0], n_out, scale)):
        for i, w in taps:
            out[k] += w * a[i]
    return _round_u8(np.moveaxis(out, 0, dim))


def ref_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB imresize(img, scale) of a uint8 image (bicubic, antialiased)."""
    a = img.astype(np.float64)
    out_shape = [math.ceil(scale * n) for n in img.shape[:2]]
    for dim in (0, 1):  # the same scale on both axes: height first
        a = _resize_dim(a, dim, out_shape[dim], scale)
    return a.astype(np.uint8)


def ref_scores(hr: np.ndarray, s: int) -> tuple[float, float]:
    h, w = hr.shape[:2]
    hr = hr[: h - h % s, : w - w % s]
    sr = ref_imresize(ref_imresize(hr, 1 / s), s)

    def y(im):
        im = im.astype(np.float64)
        if im.ndim == 2:
            return im
        return 16 + (65.481 * im[..., 0] + 128.553 * im[..., 1] + 24.966 * im[..., 2]) / 255

    a, b = y(hr)[s:-s, s:-s], y(sr)[s:-s, s:-s]
    return (peak_signal_noise_ratio(a, b, data_range=255),
            structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False))


# ------------------------------------------------------------------------------ the set --

def _images() -> dict[str, np.ndarray]:
    """Four ground truths of sizes divisible by none of 2, 3, 4; one of them gray."""
    return {
        "baby": np.ascontiguousarray(data.astronaut()[40:107, 150:233]),  # 67 x 83
        "bird": np.ascontiguousarray(data.coffee()[60:131, 200:295]),  # 71 x 95
        "butterfly": np.ascontiguousarray(data.camera()[90:155, 180:257]),  # 65 x 77, gray
        "head": np.ascontiguousarray(data.chelsea()[50:123, 100:189]),  # 73 x 89
    }


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return _images()


@pytest.fixture(scope="module")
def reference(images) -> dict[tuple[str, int], tuple[float, float]]:
    return {(name, s): ref_scores(img, s) for name, img in images.items() for s in SCALES}


def save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


def build(root: Path, layout: str, images: dict[str, np.ndarray]) -> Path:
    """``images`` stored as a Set5 of ``layout``, LR/bicubic companions included."""
    for k, (name, img) in enumerate(sorted(images.items()), start=1):
        for s in SCALES:
            lr = ref_imresize(img[: img.shape[0] // s * s, : img.shape[1] // s * s], 1 / s)
            if layout == "edsr":
                save(root / "HR" / f"{name}.png", img)
                save(root / "LR_bicubic" / f"X{s}" / f"{name}x{s}.png", lr)
            elif layout == "basicsr":
                save(root / "GTmod12" / f"{name}.png", img)
                save(root / f"LRbicx{s}" / f"{name}.png", lr)
            elif layout == "selfexsr":
                d = root / f"image_SRF_{s}"
                save(d / f"img_{k:03d}_SRF_{s}_HR.png", img)
                save(d / f"img_{k:03d}_SRF_{s}_LR.png", lr)
                save(d / f"img_{k:03d}_SRF_{s}_bicubic.png", ref_imresize(lr, s))
            elif layout == "rcan":  # RCAN's HR/<set>/x<S>/<name>_HR_x<S>.png, modcropped
                save(root / f"x{s}" / f"{name}_HR_x{s}.png",
                     img[: img.shape[0] // s * s, : img.shape[1] // s * s])
            else:
                save(root / f"{name}.bmp", img)
    return root


def run_eval(folder: Path, scale: int, *extra: str) -> dict:
    result = CliRunner().invoke(cli, ["sr", "eval", str(folder), "--scale", str(scale),
                                      "--model", "bicubic", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("layout", ["edsr", "basicsr", "selfexsr", "rcan", "flat"])
def test_eval_equals_the_independent_protocol_in_every_layout(tmp_path, images, reference,
                                                              layout):
    root = build(tmp_path / "Set5", layout, images)
    names = sorted(images)
    for s in SCALES:
        got = run_eval(root, s)
        assert set(got) >= {"images", "mean"} and len(got["images"]) == len(names), got
        for row, name in zip(got["images"], names, strict=True):
            want_psnr, want_ssim = reference[(name, s)]
            assert row["psnr"] == pytest.approx(want_psnr, abs=1e-9), (layout, s, row)
            assert row["ssim"] == pytest.approx(want_ssim, abs=1e-9), (layout, s, row)
        assert got["mean"]["psnr"] == pytest.approx(
            np.mean([reference[(n, s)][0] for n in names]), abs=1e-9)
        assert got["mean"]["ssim"] == pytest.approx(
            np.mean([reference[(n, s)][1] for n in names]), abs=1e-9)


# ------------------------------------------------------------------------- file variants --

def scores(folder: Path, s: int = 3) -> dict[str, tuple[float, float]]:
    return {r["image"]: (r["psnr"], r["ssim"]) for r in run_eval(folder, s)["images"]}


def test_file_variants_score_as_the_picture_they_hold(tmp_path, images, reference):
    """16-bit, RGBA, gray + alpha, gray palette, colour palette, CMYK JPEG and an EXIF
    rotation tag: each is scored as MATLAB's imread sees the picture (gray files on their
    values, the stored pixel grid), whatever the container."""
    rgb, gray = images["baby"], images["butterfly"]
    d = tmp_path / "variants"
    d.mkdir()
    cv2.imwrite(str(d / "rgb16.png"), cv2.cvtColor(rgb.astype(np.uint16) * 257,
                                                   cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(d / "gray16.png"), gray.astype(np.uint16) * 257)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 90, np.uint8)])).save(d / "rgba.png")
    Image.fromarray(gray).convert("LA").save(d / "gray_alpha.png")
    Image.fromarray(gray).convert("P").save(d / "gray_palette.png")
    pal = Image.fromarray(rgb).quantize(64)
    pal.save(d / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    Image.fromarray(rgb).save(d / "plain.jpg", quality=95)
    tagged = Image.fromarray(rgb)
    exif = tagged.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    tagged.save(d / "rotated.jpg", quality=95, exif=exif)

    got = scores(d)
    assert got["rgb16.png"] == pytest.approx(reference[("baby", 3)], abs=1e-9)
    assert got["rgba.png"] == pytest.approx(reference[("baby", 3)], abs=1e-9)
    for name in ("gray16.png", "gray_alpha.png", "gray_palette.png"):  # gray: on its values
        assert read_rgb(d / name).ndim == 2, name
        assert got[name] == pytest.approx(reference[("butterfly", 3)], abs=1e-9), name
    assert got["palette.png"] == pytest.approx(
        ref_scores(np.asarray(pal.convert("RGB")), 3), abs=1e-9)
    cmyk = read_rgb(d / "cmyk.jpg")
    pil_rgb = np.asarray(Image.open(d / "cmyk.jpg").convert("RGB"))
    assert cmyk.shape == rgb.shape and np.abs(cmyk.astype(int) - pil_rgb).max() <= 1
    assert got["cmyk.jpg"] == pytest.approx(ref_scores(cmyk, 3), abs=1e-9)
    # the stored grid, as MATLAB's imread and BasicSR's cv2.IMREAD_UNCHANGED read it
    assert read_rgb(d / "rotated.jpg").shape == rgb.shape
    assert got["rotated.jpg"] == got["plain.jpg"]


def test_a_float_image_is_refused_not_scored_on_a_wrong_range(tmp_path, capsys):
    d = tmp_path / "f"
    d.mkdir()
    cv2.imwrite(str(d / "f.tif"), np.random.default_rng(0).random((40, 40), np.float32))
    assert main(["sr", "eval", str(d), "--scale", "2", "--model", "bicubic"]) != 0
    assert "float32" in capsys.readouterr().err


# --------------------------------------------------------------------------------- errors --

def test_low_resolution_folders_are_not_scored_as_ground_truth(tmp_path, images, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["sr", "eval", str(empty), "--model", "bicubic"]) == 4
    assert "no images" in capsys.readouterr().err

    # a folder of several sets, or the LR folder itself: LR images are not ground truth
    bench = tmp_path / "benchmark"
    build(bench / "Set5", "edsr", images)
    for wrong in (bench, bench / "Set5" / "LR_bicubic", bench / "Set5" / "LR_bicubic" / "X2"):
        assert main(["sr", "eval", str(wrong), "--scale", "2", "--model", "bicubic"]) == 2
        assert "low-resolution images" in capsys.readouterr().err
    assert len(run_eval(bench / "Set5", 2)["images"]) == len(images)


def test_per_scale_copies_without_the_asked_scale_are_refused(tmp_path, images, capsys):
    """Urban100/BSD100 come with image_SRF_2 and image_SRF_4 only: --scale 3 took the *_HR
    files of both folders, scoring every picture twice (likewise RCAN's x2/ + x4/)."""
    urban = build(tmp_path / "Urban100", "selfexsr", images)
    for f in (urban / "image_SRF_3").iterdir():
        f.unlink()
    (urban / "image_SRF_3").rmdir()
    assert main(["sr", "eval", str(urban), "--scale", "3", "--model", "bicubic"]) == 2
    assert "no image_SRF_3/" in capsys.readouterr().err
    assert len(run_eval(urban, 4)["images"]) == len(images)

    rcan = build(tmp_path / "HR" / "Set5", "rcan", images)
    for f in (rcan / "x3").iterdir():
        f.unlink()
    (rcan / "x3").rmdir()
    assert main(["sr", "eval", str(rcan), "--scale", "3", "--model", "bicubic"]) == 2
    assert "none for --scale 3" in capsys.readouterr().err


@pytest.mark.parametrize("layout, root, folder, says", [
    ("selfexsr", "Urban100", "image_SRF_{s}", "image_SRF_2/ but no image_SRF_3/"),
    ("rcan", "HR/Set5", "x{s}", "(x2/) but none for --scale 3")])
def test_a_single_copy_for_another_scale_is_refused(tmp_path, images, capsys, layout, root,
                                                    folder, says):
    """A set holding only image_SRF_2/ (or RCAN's x2/) was scored at --scale 3 from ground
    truth cropped for x2 (exit 0); only several such folders were refused. Pointing at the
    folder itself still scores its images at any scale."""
    bench = build(tmp_path / root, layout, images)
    for s in (3, 4):
        shutil.rmtree(bench / folder.format(s=s))
    assert main(["sr", "eval", str(bench), "--scale", "3", "--model", "bicubic"]) == 2
    assert says in capsys.readouterr().err
    assert len(run_eval(bench / folder.format(s=2), 3)["images"]) == len(images)
    assert len(run_eval(bench, 2)["images"]) == len(images)  # the set itself, at its scale


def test_an_empty_split_is_an_error_not_nan_json(tmp_path, images, capsys):
    one = tmp_path / "one"
    save(one / "a.png", images["baby"])  # CRC-32 of "a.png" puts it in the train part
    assert main(["sr", "eval", str(one), "--split", "val", "--model", "bicubic",
                 "--json"]) == 4
    assert "no images to evaluate" in capsys.readouterr().err
