"""No command writes its result over its own input: OUTPUT naming INPUT (or a frame) is a
usage error before any work, with or without --overwrite, and the input is left as it was.

Found by a walkthrough of the README: `pixelmill upscale same.png same.png --overwrite` replaced
the photo by its upscale (also through the streaming .tif path), and `pixelmill run p.yaml
photos/ photos/` said "no image files found" (exit 4) because outputs are never read back.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixelmill.cli import main
from pixelmill.storage import same_location


@pytest.fixture
def photo(tmp_path) -> Path:
    from skimage import data

    path = tmp_path / "photo.png"
    assert cv2.imwrite(str(path), data.astronaut()[100:140, 150:196, ::-1])
    return path


def _unchanged(path: Path, before: bytes, capsys, words: str) -> None:
    assert path.read_bytes() == before
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


def test_same_location_reads_spellings_of_one_place(tmp_path):
    (tmp_path / "a").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert same_location(str(tmp_path / "a"), str(tmp_path / "a") + "/")
    assert same_location(str(tmp_path / "a"), f"file://{tmp_path}/a")
    assert same_location(str(tmp_path / "a"), str(tmp_path / "link"))
    assert same_location(str(tmp_path / "a"), str(tmp_path / "a" / ".." / "a"))
    assert not same_location(str(tmp_path / "a"), str(tmp_path / "a" / "out"))
    assert same_location("s3://bucket/in/", "s3://bucket/in")
    assert not same_location("s3://bucket/in", "s3://bucket/in2")


@pytest.mark.parametrize("out", ["{p}", "{p}/", "file://{p}"])
def test_run_into_its_own_input_folder_is_a_usage_error(photo, tmp_path, capsys, out):
    pipeline = tmp_path / "blur.yaml"
    pipeline.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    folder = photo.parent
    before = photo.read_bytes()
    listing = sorted(p.name for p in folder.iterdir())
    assert main(["run", str(pipeline), str(folder), out.format(p=folder), "-q"]) == 2
    _unchanged(photo, before, capsys, "is the INPUT folder itself")
    assert sorted(p.name for p in folder.iterdir()) == listing  # no manifest, no report


@pytest.mark.parametrize("suffix", [".png", ".tif"])  # in memory, and the streaming path
def test_upscale_over_its_input_is_a_usage_error(tmp_path, capsys, suffix):
    from skimage import data

    src = tmp_path / f"same{suffix}"
    assert cv2.imwrite(str(src), data.astronaut()[100:140, 150:196, ::-1])
    before = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["upscale", str(src), str(src), "--scale", "2", "--model", "espcn",
                     "--device", "cpu", *extra]) == 2
        _unchanged(src, before, capsys, "OUTPUT: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_tile_over_its_input_is_a_usage_error(tmp_path, capsys):
    import tifffile

    src = tmp_path / "scene.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    pipeline = tmp_path / "blur.yaml"
    pipeline.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    before = src.read_bytes()
    assert main(["tile", str(pipeline), str(src), str(src), "--overwrite"]) == 2
    _unchanged(src, before, capsys, "is the INPUT itself")


def test_fuse_over_one_of_its_frames_is_a_usage_error(photo, capsys):
    frames = [photo.with_name(f"f{k}.png") for k in range(3)]
    for f in frames:
        f.write_bytes(photo.read_bytes())
    before = frames[1].read_bytes()
    assert main(["sr", "fuse", *map(str, frames), str(frames[1]), "--scale", "2",
                 "--overwrite"]) == 2
    _unchanged(frames[1], before, capsys, "is FRAME 2")
