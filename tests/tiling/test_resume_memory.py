"""A killed tiled job resumes tile by tile; a tiled job stays within its memory budget.

Both run the job in a subprocess (the real CLI / API on the local engine): the first is killed
with SIGKILL mid-run, the second has its whole process tree's resident memory sampled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from pixelmill.manifest import read_manifest
from pixelmill.pipeline import load_pipeline
from pixelmill.tiled import run_tiled

from .conftest import make_image

pytestmark = pytest.mark.slow

PIPE = [{"op": "median", "size": 5}, {"op": "gaussian", "sigma": 2.0}]


def _tile_rows(journal: str) -> int:
    try:
        with open(journal, encoding="utf-8") as f:
            return sum('#tile=' in line and '"ok"' in line for line in f)
    except FileNotFoundError:
        return 0


def test_killed_job_resumes_to_the_same_output(tmp_path, inline_engine):
    image = make_image((512, 384, 3), "uint8", seed=21)
    src = str(tmp_path / "in.tif")
    tifffile.imwrite(src, image, tile=(64, 64), photometric="rgb")
    out = str(tmp_path / "out.tif")
    script = tmp_path / "job.py"
    script.write_text(
        "from pixelmill.tiled import run_tiled\n"
        "if __name__ == '__main__':\n"
        f"    run_tiled({PIPE!r}, {src!r}, {out!r}, tile=32, workers=1, memory='2GB',"
        " progress=False)\n")
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    journal = out + ".manifest.parquet.journal.jsonl"
    try:
        deadline = time.monotonic() + 120
        while _tile_rows(journal) < 20 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, mid-run
    finally:
        proc.wait(timeout=30)
    done = _tile_rows(journal)
    assert done >= 20 and not os.path.exists(out)

    resumed = run_tiled(PIPE, src, out, resume=True, engine=inline_engine, progress=False)
    assert resumed.status == "ok"
    assert resumed.tile == 32  # the killed run's tile size, read back from its tile store
    assert resumed.resumed >= done and resumed.tiles == 16 * 12
    assert resumed.ok == resumed.tiles and resumed.resumed < resumed.tiles

    fresh = run_tiled(PIPE, src, str(tmp_path / "fresh.tif"), tile=32, engine=inline_engine,
                      progress=False)
    assert fresh.resumed == 0
    assert np.array_equal(tifffile.imread(out), tifffile.imread(str(tmp_path / "fresh.tif")))
    assert np.array_equal(tifffile.imread(out), load_pipeline(PIPE)(image))
    rows = read_manifest(out + ".manifest.parquet")
    tiles = [r for r in rows if "#tile=" in r["key"]]
    assert len(tiles) == resumed.tiles and all(r["status"] == "ok" for r in tiles)


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def _big_tiff(path: str, height: int, width: int) -> None:
    """A tiled BigTIFF written tile by tile (never whole in this process either)."""
    block = make_image((256, 256, 3), "uint8", seed=2)

    def tiles():
        for ty in range(0, height, 256):
            for tx in range(0, width, 256):
                yield np.roll(block, (ty // 256 * 17 + tx // 256 * 5), axis=1)

    tifffile.imwrite(path, tiles(), shape=(height, width, 3), dtype="uint8", tile=(256, 256),
                     photometric="rgb", bigtiff=True)


def test_peak_memory_stays_within_budget(tmp_path):
    import psutil

    height, width = 6144, 5120  # 94 MB decoded; processing it whole in float32 needs ~1 GB
    src = str(tmp_path / "big.tif")
    _big_tiff(src, height, width)
    budget = 450 * 2**20
    out = str(tmp_path / "out.tif")
    cmd = [sys.executable, "-m", "pixelmill", "tile",
           json.dumps([{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask"}]),
           src, out, "--memory", str(budget), "--workers", "2", "--json"]
    # the pipeline argument is a file or URL; write it to one
    pipe_file = tmp_path / "pipe.json"
    pipe_file.write_text(cmd[4])
    cmd[4] = str(pipe_file)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["status"] == "ok" and summary["workers"] >= 1
    assert peak <= budget, f"peak RSS {peak / 2**20:.0f} MiB > budget {budget / 2**20:.0f} MiB"
    assert summary["peak_rss"] <= budget
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == (height, width, 3)
        window = tif.series[0].asarray(out=None)[3000:3100, 2000:2100]
    assert window.std() > 0  # processed pixels, not an empty canvas


def test_resuming_with_another_tile_size_says_the_tiles_are_made_again(tmp_path, inline_engine,
                                                                       capsys):
    """--resume --tile 128 after a --tile 64 run was interrupted started again from zero, with
    no word of it ("0 from an earlier run"); the result is the same, the work is not."""
    from pixelmill.tiled import analyze

    image = make_image((160, 128, 3), "uint8", seed=5)
    src = str(tmp_path / "in.tif")
    tifffile.imwrite(src, image, tile=(64, 64), photometric="rgb")
    out = str(tmp_path / "out.tif")
    pipeline = load_pipeline(PIPE)
    earlier = {"input": src, "shape": [160, 128, 3], "dtype": "uint8",
               "pipeline": pipeline.fingerprint, "tile": 32, "halo": analyze(pipeline).halo}
    with open(str(tmp_path / ".out.tif.pixelmill-partial.json"), "w") as f:
        json.dump({"pixelmill_plan": earlier}, f)  # what an interrupted --tile 32 run leaves
    resumed = run_tiled(PIPE, src, out, tile=64, resume=True, engine=inline_engine,
                        progress=False)
    assert resumed.status == "ok" and resumed.resumed == 0
    err = capsys.readouterr().err
    assert "warning: the interrupted run's tiles were made with other settings (tile 32 -> 64)" \
        in err, err
    assert np.array_equal(tifffile.imread(out), pipeline(image))
