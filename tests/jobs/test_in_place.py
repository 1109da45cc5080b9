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


def test_a_manifest_naming_an_input_is_a_usage_error(photo, tmp_path, capsys):
    """`--manifest photos/x.jpg` was refused as 'results of an earlier run' (pointing at
    --overwrite), and with --overwrite the photo was replaced by the manifest."""
    pipeline = tmp_path / "blur.yaml"
    pipeline.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    before = photo.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["run", str(pipeline), str(photo.parent), str(tmp_path / "out"), "-q",
                     "--manifest", str(photo), *extra]) == 2
        _unchanged(photo, before, capsys, "--manifest: ")


def test_resume_never_takes_over_files_no_run_left(photo, tmp_path, capsys):
    """An OUTPUT folder holding the user's own files and no manifest: --resume treated them as
    an earlier run's and replaced them; without a flag the refusal called them that."""
    pipeline = tmp_path / "blur.yaml"
    pipeline.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "a.jpg"  # where the job would write a.png's output
    mine.write_bytes(b"the user's own file")
    code = main(["run", str(pipeline), str(src), str(out), "-q", "--resume", "--format", "jpg"])
    assert code == 2
    _unchanged(mine, b"the user's own file", capsys, "no earlier run's manifest")
    assert main(["run", str(pipeline), str(src), str(out), "-q", "--format", "jpg"]) == 2
    err = capsys.readouterr().err
    assert "no earlier run's manifest" in err and "results of an earlier run" not in err, err
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg"]


def test_relative_spellings_of_the_input_resume_the_same_rows(photo, tmp_path, monkeypatch):
    """`../photos` kept its `..` in the row keys: resuming with `/abs/photos` found no ok row
    and processed (and recorded) every input a second time."""
    from pixelmill.manifest import read_manifest

    pipeline = tmp_path / "blur.yaml"
    pipeline.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    out = tmp_path / "out"
    assert main(["run", str(pipeline), f"../../{photo.parent.name}",
                 str(out), "-q", "--glob", "photo.png"]) == 0
    assert main(["run", str(pipeline), str(photo.parent), str(out), "-q", "--resume",
                 "--glob", "photo.png"]) == 0
    rows = read_manifest(str(out / "manifest.parquet"))
    assert [r["uri"] for r in rows] == [str(photo)]
