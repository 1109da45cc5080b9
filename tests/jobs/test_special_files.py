"""Devices, pipes and sockets that carry an image name are invalid rows, never read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pixelmill.manifest import read_manifest

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX special files")


@pytest.fixture
def special(tmp_path):
    """A folder with `x.jpg -> /dev/zero`, a named pipe `p.png` and one real image."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "x.jpg").symlink_to("/dev/zero")  # was read until the OOM killer came (23 GB)
    os.mkfifo(root / "p.png")  # opening it waited forever for a writer
    cv2.imwrite(str(root / "good.png"), np.full((16, 16, 3), 80, np.uint8))
    return root


def _pixelmill(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pixelmill", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_scan_and_run_make_special_files_invalid_rows(special, tmp_path):
    proc = _pixelmill("scan", str(special), "--verify", "--json", cwd=tmp_path)
    summary = json.loads(proc.stdout)
    assert (summary["valid"], summary["invalid"]) == (1, 2), proc.stdout
    assert summary["invalid_by_reason"]["not a regular file"]["count"] == 2
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    proc = _pixelmill("run", str(pipe), str(special), str(tmp_path / "out"), "--workers", "1",
                      "-q", "--no-report", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    rows = {r["relpath"]: r for r in read_manifest(str(tmp_path / "out" / "manifest.parquet"))}
    assert rows["good.png"]["status"] == "ok"
    assert rows["x.jpg"]["status"] == "invalid"
    assert "not a regular file (a character device)" in rows["x.jpg"]["reason"]
    assert "not a regular file (a named pipe)" in rows["p.png"]["reason"]
    proc = _pixelmill("upscale", str(special / "x.jpg"), str(tmp_path / "o.png"), "--model",
                      "bicubic", cwd=tmp_path)
    assert proc.returncode == 1 and "x.jpg: not a regular file" in proc.stderr, proc.stderr
