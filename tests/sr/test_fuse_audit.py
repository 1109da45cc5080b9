"""Audit of multi-frame super-resolution (`pixelmill sr fuse`, `pixelmill.sr.fuse_frames`):
inputs that used to give a traceback, a silently wrong result, or the wrong exit code are now
refused with one line (exit 2) naming the problem, and flat frames register at zero shift."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile
from scipy import ndimage

import pixelmill.sr.fusion
from pixelmill.cli import main
from pixelmill.errors import InvalidParameterError
from pixelmill.sr.fusion import fuse_frames, register_frames
from pixelmill.sr.resample import imresize


def frames_of(gt: np.ndarray, shifts, scale: int = 2) -> list[np.ndarray]:
    """``gt`` (float, h×w[×c]) shifted by each ``(dy, dx)`` (low-resolution px), MATLAB bicubic
    1/scale, uint8."""
    out = []
    for d in shifts:
        moved = ndimage.shift(gt, (scale * d[0], scale * d[1], 0)[:gt.ndim], order=3,
                              mode="nearest")
        out.append(np.clip(np.floor(imresize(moved, 1 / scale) + 0.5), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def frames(astronaut):
    gt = astronaut[160:224, 170:234].astype(np.float64)  # 32×32 frames
    return frames_of(gt, [(0, 0), (0.5, -0.25), (-0.75, 0.5)])


def test_float_frames_with_nan_are_refused_naming_the_frame(tmp_path, frames, capsys):
    """A float TIFF frame holding a NaN gave skimage's 'NaN values found' ValueError as a
    traceback from inside the registration (exit 1); now exit 2 naming the frame."""
    paths = []
    for k, f in enumerate(frames):
        f = f.astype(np.float32) / 255
        if k == 1:
            f[3, 3, 0] = np.nan
        paths.append(str(tmp_path / f"f{k}.tif"))
        tifffile.imwrite(paths[-1], f, photometric="rgb")
    assert main(["sr", "fuse", *paths, str(tmp_path / "o.tif"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert f"FRAMES[1] ({paths[1]}): holds NaN or infinite values" in err, err
    assert "Traceback" not in err and not (tmp_path / "o.tif").exists()
    floats = [f.astype(np.float32) / 255 for f in frames]
    floats[2][0, 0, 1] = np.inf
    with pytest.raises(InvalidParameterError, match=r"FRAMES\[2\]: holds NaN or infinite"):
        fuse_frames(floats, 2, prior=None, iterations=1)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
                         ids=["empty", "corrupt"])
def test_an_empty_or_corrupt_frame_is_a_usage_error(tmp_path, frames, capsys, content):
    """A damaged frame was exit 1 ('the job could not run'); like `sr eval`'s damaged image it
    is now exit 2 naming the file, before any work."""
    good = str(tmp_path / "f0.png")
    assert cv2.imwrite(good, frames[0])
    bad = tmp_path / "f1.png"
    bad.write_bytes(content)
    assert main(["sr", "fuse", good, str(bad), str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: ") and "Traceback" not in err, err
    assert not (tmp_path / "o.png").exists()


def test_flat_frames_register_at_zero_shift():
    """Flat frames have no detail to register on, yet register_frames reported an arbitrary
    shift (dy +0.7 dx +0.7 for two identical flat frames, up to 2 px for two flat levels):
    the raw phase correlation of a constant image peaks anywhere and Gauss-Newton fitted
    rounding noise. Any shift fits them equally: now 0."""
    flat = np.full((32, 32, 3), 128, np.uint8)
    np.testing.assert_array_equal(register_frames([flat, flat.copy()]), np.zeros((2, 2)))
    np.testing.assert_array_equal(register_frames([flat, flat + 2, flat - 3]), np.zeros((3, 2)))
    out, shifts = fuse_frames([flat, flat + 2], 2, prior=None, iterations=2)
    np.testing.assert_array_equal(shifts, np.zeros((2, 2)))
    assert out.shape == (64, 64, 3) and out.min() >= 128 and out.max() <= 130


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": 1}, "scale: expected an integer >= 2"),  # was a same-size image, silently
    ({"scale": 2.5}, "scale: expected an integer >= 2"),  # was TypeError from numpy
    ({"scale": 3.0}, "scale: expected an integer >= 2"),
    ({"iterations": -1}, "iterations: expected an integer >= 0"),  # was taken as 0
    ({"shifts": np.zeros((2, 2))}, r"shifts: expected 3 finite \(dy, dx\) rows, one per "
                                   r"frame; got shape \(2, 2\)"),  # was a broadcast ValueError
    ({"shifts": np.full((3, 2), np.nan)}, "got NaN or infinite values"),  # was garbage pixels
])
def test_fuse_frames_refuses_bad_arguments(frames, kwargs, message):
    args = {"scale": 2, "prior": None, "iterations": 1, **kwargs}
    scale = args.pop("scale")
    with pytest.raises(InvalidParameterError, match=message):
        fuse_frames(frames, scale, **args)
    with pytest.raises(InvalidParameterError, match="scale: expected an integer >= 2"):
        register_frames(frames, scale=1)


def test_fuse_frames_refuses_bool_frames_and_takes_lists(frames):
    """Bool frames came back as a bool image (every pixel True); nested lists raised
    AttributeError ('list' object has no attribute 'shape')."""
    with pytest.raises(InvalidParameterError, match=r"FRAMES\[0\]: bool pixels cannot be fused"):
        fuse_frames([f > 100 for f in frames], 2, prior=None, iterations=1)
    out, _ = fuse_frames([f[..., 0].tolist() for f in frames], 2, prior=None, iterations=1)
    assert out.shape == (64, 64)


def test_an_unknown_prior_is_refused_before_the_registration(frames, monkeypatch):
    """fuse_frames(prior='nope') registered every frame (minutes on large frames) before
    loading the network failed; the CLI checks --prior first, now the API does too."""
    def no_work(*args, **kwargs):
        raise AssertionError("registered frames before checking the prior")

    monkeypatch.setattr(pixelmill.sr.fusion, "register_frames", no_work)
    with pytest.raises(InvalidParameterError, match="no shipped weights for 'nope'"):
        fuse_frames(frames, 2, prior="nope")


def test_the_prior_upscales_the_first_frame_in_tiles(astronaut, monkeypatch):
    """The network's upscale of the first frame ran on the whole frame at once, holding its
    activations for every pixel (EDSR: +0.69 GB for a 1000×1000 RGB frame, growing with the
    area; 8 frames of 2000×2000 peaked at 3.25 GB). Now in 512-px tiles, as `upscale` does
    (+0.31 GB, whatever the size; 2.91 GB), with the same result."""
    import pixelmill.sr.tiles
    from pixelmill.sr.infer import upscale_image
    from pixelmill.sr.weights import load_model

    from .conftest import require_shipped

    require_shipped("espcn", 2)
    seen = []
    batch = pixelmill.sr.tiles.upscale_batch

    def spy(tiles, *args, **kwargs):
        seen.extend(t.shape for t in tiles)
        return batch(tiles, *args, **kwargs)

    monkeypatch.setattr(pixelmill.sr.tiles, "upscale_batch", spy)
    strip = np.ascontiguousarray(np.hstack([astronaut[200:224], astronaut[224:248]])[:, :600])
    # 600 px wide: two tiles
    out, _ = fuse_frames([strip, strip.copy()], 2, shifts=np.zeros((2, 2)), prior="espcn",
                         iterations=0)
    assert len(seen) >= 2 and max(s[1] for s in seen) < 600, seen
    whole = upscale_image(strip.astype(np.float32) / 255, load_model("espcn", 2), 2) * 255
    assert np.abs(out.astype(np.float64) - np.floor(np.clip(whole, 0, 255) + 0.5)).max() <= 1
