"""Jobs interrupted at their edges: killed while the output is assembled, killed after the last
row, and outputs that cannot be written at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from pixelmill.errors import StorageError
from pixelmill.manifest import journal_path, read_manifest
from pixelmill.tiled import run_tiled

from .conftest import make_image

PIPE = [{"op": "resize", "factor": 0.5}, {"op": "gaussian", "sigma": 1.0}]

# the job, run in a child: stops for good (until SIGKILL) once the TIFF is half written from
# the tile store, i.e. after the pyramid levels were added to the store
_CHILD = """
import os, sys, time
sys.path.insert(0, {tests!r})
from pixelmill.regions import _write
from pixelmill.tiled import run_tiled
from conftest import InlineEngine

real = _write._tiff_tiles

def stalled(*args, **kw):
    for i, t in enumerate(real(*args, **kw)):
        if i == 2:
            open({marker!r}, "w").close()
            time.sleep(600)
        yield t

_write._tiff_tiles = stalled
run_tiled({pipe!r}, {src!r}, {out!r}, tile=128, engine=InlineEngine(), progress=False,
          pyramid=True, compression="zlib")
"""


def test_killed_while_assembling_a_pyramid_resumes_cleanly(tmp_path, inline_engine):
    image = make_image((600, 520, 3), "uint8", seed=3)  # a 300×260 output: 2 levels
    src = str(tmp_path / "in.tif")
    tifffile.imwrite(src, image, tile=(64, 64), photometric="rgb")
    folder = tmp_path / "out"
    folder.mkdir()
    out, marker = str(folder / "out.tif"), str(tmp_path / "assembling")
    script = tmp_path / "job.py"
    script.write_text(_CHILD.format(tests=os.path.dirname(__file__), marker=marker, pipe=PIPE,
                                    src=src, out=out))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.path.exists(marker), "the job never reached its assembly"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not os.path.exists(out)

    resumed = run_tiled(PIPE, src, out, resume=True, pyramid=True, compression="zlib",
                        engine=inline_engine, progress=False)
    assert resumed.status == "ok" and resumed.resumed == resumed.tiles
    fresh = str(tmp_path / "fresh.tif")
    run_tiled(PIPE, src, fresh, tile=128, pyramid=True, compression="zlib", engine=inline_engine,
              progress=False)
    with tifffile.TiffFile(out) as a, tifffile.TiffFile(fresh) as b:
        levels_a = [lev.asarray() for lev in a.series[0].levels]
        levels_b = [lev.asarray() for lev in b.series[0].levels]
    assert len(levels_a) == len(levels_b) > 1
    assert all(np.array_equal(x, y) for x, y in zip(levels_a, levels_b, strict=True))
    # nothing of the killed run is left beside the output (no stray half-written TIFF)
    assert sorted(os.listdir(folder)) == ["out.tif", "out.tif.manifest.parquet"]


def test_resuming_a_job_killed_after_its_last_row_writes_the_manifest(tmp_path, inline_engine):
    src = str(tmp_path / "in.tif")
    tifffile.imwrite(src, make_image((64, 48), "uint8"), tile=(16, 16))
    out = str(tmp_path / "out.tif")
    manifest = out + ".manifest.parquet"
    run_tiled(PIPE, src, out, tile=16, engine=inline_engine, progress=False)
    rows = read_manifest(manifest)
    # what SIGKILL between the image row and the manifest's close leaves: only the journal
    with open(journal_path(manifest), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, default=str) + "\n" for r in rows)
    os.unlink(manifest)

    again = run_tiled(PIPE, src, out, resume=True, engine=inline_engine, progress=False)
    assert again.up_to_date
    assert os.path.exists(manifest) and not os.path.exists(journal_path(manifest))
    assert read_manifest(manifest) == rows


@pytest.mark.parametrize("where", ["output", "manifest"])
@pytest.mark.parametrize("ext", ["tif", "png"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, inline_engine,
                                                                     where, ext):
    import cv2

    image = make_image((40, 30, 3), "uint8")
    src = str(tmp_path / f"in.{ext}")
    if ext == "png":
        cv2.imwrite(src, image)
    else:
        tifffile.imwrite(src, image, photometric="rgb")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = str(blocker / "out.tif") if where == "output" else str(tmp_path / "out.tif")
    manifest = str(blocker / "m.parquet") if where == "manifest" else None
    with pytest.raises(StorageError, match="a_file"):
        run_tiled(PIPE, src, out, manifest=manifest, engine=inline_engine, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["a_file", f"in.{ext}"]
