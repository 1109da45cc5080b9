"""The OUTPUT storage failing under a running job: a file size limit (RLIMIT_FSIZE, which fails
writes with EFBIG as a full disk fails them with ENOSPC), an output folder removed mid-run.

Each fault is a real OS mechanism (a limit set in the child process that writes, inherited by
its workers; a folder removed while the job runs), never a mock of the writing code. The
job must stop or go on with a clear message (no traceback) and the README's exit code, leave
no temporaries, record no output as ok that is not there whole, and ``--resume`` once the
storage works again must give exactly the outputs of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.jobs.conftest import output_files

resource = pytest.importorskip("resource")  # POSIX only

PIXELMILL = [sys.executable, "-m", "pixelmill"]
PIPELINE = "steps:\n  - op: gaussian\n    sigma: 0.5\n"


def _limited(limit: int):
    """A ``preexec_fn`` limiting the size of any file the child (and its workers) writes."""

    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def _pixelmill(*args: str, limit: int | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*PIXELMILL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, preexec_fn=_limited(limit) if limit else None)


def _temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or "partial" in p.name]


def _check_ok_rows(manifest: Path) -> list[dict]:
    """Every ok row's output is there, whole (its recorded sha256); the rows are returned."""
    from pixelmill.manifest import read_manifest

    rows = read_manifest(str(manifest))
    for row in rows:
        if row["status"] == "ok" and row.get("output"):
            data = Path(row["output"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == row["sha256"], row["output"]
    return rows


def _images(root: Path) -> None:
    """Noise images (large PNG outputs) and flat ones (small outputs), in two folders."""
    import cv2

    rng = np.random.default_rng(7)
    for i in range(8):
        folder = root / ("noise" if i % 2 else "flat")
        folder.mkdir(parents=True, exist_ok=True)
        img = (rng.integers(0, 255, (192, 192, 3), dtype=np.uint8) if i % 2
               else np.full((96, 96, 3), 40 * i, np.uint8))
        assert cv2.imwrite(str(folder / f"img{i}.png"), img)


def test_run_on_a_file_size_limit_fails_the_outputs_it_cannot_write_and_resumes(tmp_path):
    """Outputs over the limit fail (EFBIG) one by one, the others and the manifest are written;
    exit 3, no traceback, no temporary; a resume without the limit is the uninterrupted run."""
    _images(tmp_path / "in")
    (tmp_path / "p.yaml").write_text(PIPELINE)
    ref = _pixelmill("run", "p.yaml", "in", "ref", "--workers", "1", "-q", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    limit = 40000  # noise outputs are ~110 KB, flat ones < 1 KB, the manifest ~10 KB
    got = _pixelmill("run", "p.yaml", "in", "out", "--workers", "1", "--no-report",
                     limit=limit, cwd=tmp_path)
    assert got.returncode == 3, got.stderr
    assert "Traceback" not in got.stderr and "File too large" in got.stderr
    assert _temporaries(tmp_path / "out") == []
    rows = _check_ok_rows(tmp_path / "out" / "manifest.parquet")
    assert {r["status"] for r in rows if "/noise/" in r["key"]} == {"failed"}
    assert {r["status"] for r in rows if "/flat/" in r["key"]} == {"ok"}

    again = _pixelmill("run", "p.yaml", "in", "out", "--workers", "1", "--resume", "-q",
                       cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert output_files(tmp_path / "out") == output_files(tmp_path / "ref")
    rows = _check_ok_rows(tmp_path / "out" / "manifest.parquet")
    assert {r["status"] for r in rows} == {"ok"}


def test_run_whose_journal_cannot_grow_stops_with_exit_1_and_resumes(tmp_path):
    """The manifest's journal over the limit: the job stops (exit 1) saying so; the rows it
    wrote are kept and a resume finishes the job as an uninterrupted run."""
    _images(tmp_path / "in")
    (tmp_path / "p.yaml").write_text(PIPELINE)
    ref = _pixelmill("run", "p.yaml", "in", "ref", "--workers", "1", "-q", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    got = _pixelmill("run", "p.yaml", "in", "out", "--workers", "1", "--no-report", "--manifest", "m/m.parquet", limit=2500, cwd=tmp_path)
    assert got.returncode == 1, got.stderr
    assert "Traceback" not in got.stderr and "--resume" in got.stderr
    assert _temporaries(tmp_path) == []
    again = _pixelmill("run", "p.yaml", "in", "out", "--workers", "1", "--resume", "-q",
                       "--manifest", "m/m.parquet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert output_files(tmp_path / "out") == output_files(tmp_path / "ref")
    assert {r["status"] for r in _check_ok_rows(tmp_path / "m" / "m.parquet")} == {"ok"}


class _RemovingEngine:
    """An in-process engine that removes OUTPUT (``rm -rf``) after its ``after``-th unit: the
    output folder deleted while the job runs."""

    name, workers = "inline", 1

    def __init__(self, output: Path, after: int) -> None:
        self.output, self.after = output, after

    def map(self, fn, units, *, timeout=None, batch_size=None):
        for i, unit in enumerate(units):
            yield i, fn(unit)
            if i + 1 == self.after:
                shutil.rmtree(self.output)

    def close(self) -> None:
        pass


def test_output_folder_removed_mid_run_is_not_recorded_ok(collection, blur_pipeline, tmp_path):
    """The outputs written before OUTPUT was removed are gone: their rows are failed (exit 3),
    not ok (exit 0, and a resume skipped them: outputs missing for good)."""
    from pixelmill.engines import InlineEngine
    from pixelmill.errors import ExitCode
    from pixelmill.jobs import run

    root, _ = collection
    ref = run(blur_pipeline, str(root), str(tmp_path / "ref"), engine=InlineEngine(),
              progress=False, report=False)
    out = tmp_path / "out"
    summary = run(blur_pipeline, str(root), str(out), engine=_RemovingEngine(out, 3),
                  progress=False, report=False)
    assert summary.exit_code == ExitCode.PARTIAL
    rows = _check_ok_rows(out / "manifest.parquet")
    removed = [r for r in rows if "was removed after it was written" in (r.get("reason") or "")]
    assert removed and all(r["status"] == "failed" for r in removed)
    assert _temporaries(out) == []

    again = run(blur_pipeline, str(root), str(out), engine=InlineEngine(), resume=True,
                progress=False, report=False)
    assert (again.ok, again.invalid, again.failed) == (ref.ok, ref.invalid, ref.failed)
    assert output_files(out) == output_files(tmp_path / "ref")
    _check_ok_rows(out / "manifest.parquet")


def test_resumed_run_whose_output_folder_is_removed_fails_the_earlier_rows_too(
        collection, blur_pipeline, tmp_path):
    """OUTPUT removed during a resume takes the earlier run's outputs with it: their rows too."""
    from pixelmill.engines import InlineEngine
    from pixelmill.jobs import run
    from pixelmill.manifest import read_manifest

    root, _ = collection
    out = tmp_path / "out"
    run(blur_pipeline, str(root), str(out), engine=InlineEngine(), limit=3, progress=False,
        report=False)
    manifest = tmp_path / "m.parquet"  # outside OUTPUT: it survives the removal
    shutil.move(str(out / "manifest.parquet"), manifest)
    run(blur_pipeline, str(root), str(out), engine=_RemovingEngine(out, 1), resume=True,
        manifest=str(manifest), progress=False, report=False)
    rows = read_manifest(str(manifest))
    assert all(Path(r["output"]).exists() for r in rows if r["status"] == "ok")
    assert sum(r["status"] == "failed" and "removed" in (r.get("reason") or "")
               for r in rows) >= 3


def test_tile_canvas_over_a_file_size_limit_is_a_message_and_leaves_nothing(tmp_path):
    """The in-place output (its zeros written first) cannot be made: exit 1 with one line, no
    traceback, and the part written is not left holding the space; then the job runs."""
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(3)
    tifffile.imwrite(tmp_path / "big.tif", rng.integers(0, 255, (1024, 1024, 3), np.uint8),
                     tile=(256, 256))
    (tmp_path / "p.yaml").write_text(PIPELINE)
    args = ("tile", "p.yaml", "big.tif", "out/o.tif", "--tile", "256", "--workers", "1", "-q")
    got = _pixelmill(*args, limit=1 << 20, cwd=tmp_path)
    assert got.returncode == 1, got.stderr
    assert "Traceback" not in got.stderr
    assert got.stderr.startswith("error: OUTPUT: ") and "too large" in got.stderr
    assert _temporaries(tmp_path / "out") == []
    assert not list((tmp_path / "out").glob("*.jsonl"))

    ok = _pixelmill(*args, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    ref = _pixelmill("tile", "p.yaml", "big.tif", "ref.tif", "--tile", "256", "--workers", "1",
                     "-q", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert (tmp_path / "out" / "o.tif").read_bytes() == (tmp_path / "ref.tif").read_bytes()


def test_scan_out_over_a_file_size_limit_keeps_the_earlier_manifest(tmp_path):
    _images(tmp_path / "in")
    first = _pixelmill("scan", "in", "--recursive", "--out", "s.parquet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "s.parquet").read_bytes()
    got = _pixelmill("scan", "in", "--recursive", "--out", "s.parquet", "--overwrite",
                     limit=1000, cwd=tmp_path)
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert (tmp_path / "s.parquet").read_bytes() == before
    assert _temporaries(tmp_path) == []


def test_a_canvas_tile_written_in_part_raises_instead_of_passing(tmp_path: Path) -> None:
    """``pwrite`` may write part of a tile and say so (a file size limit, a disk filling
    mid-write): the canvas writer must not take the short count for the whole tile."""
    code = f"""
import os, resource, signal
import numpy as np
from pixelmill.regions._write import _pwrite_all
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
fd = os.open({str(tmp_path / 'canvas.bin')!r}, os.O_RDWR | os.O_CREAT)
data = np.arange(8000, dtype=np.uint8).data
print("short", os.pwrite(fd, data, 0))  # the bare call: 5000 of 8000 bytes, no error
try:
    _pwrite_all(fd, data, 0)
except OSError as e:
    print("raised", e.errno)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "short 5000" in out.stdout
    assert "raised 27" in out.stdout  # EFBIG, as a full disk raises ENOSPC


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs at ``tmp_path/disk`` (a full disk, for real: ENOSPC), unmounted after;
    skipped where this process may not mount (not root, or no CAP_SYS_ADMIN)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_run_stops_when_output_disk_is_full_and_resume_finishes_it(small_disk, tmp_path):
    """ENOSPC fails every later write alike: the job stops there (exit 1, one line saying
    so), instead of reading and processing every remaining input only to fail it; the rows
    are kept, and a resume once there is room gives the uninterrupted run's outputs."""
    rng = np.random.default_rng(11)
    import cv2

    (tmp_path / "in").mkdir()
    for i in range(40):  # ~110 KB outputs: two fit on the disk
        assert cv2.imwrite(str(tmp_path / "in" / f"n{i:02d}.png"),
                           rng.integers(0, 255, (192, 192, 3), dtype=np.uint8))
    (tmp_path / "p.yaml").write_text(PIPELINE)
    ref = _pixelmill("run", "p.yaml", "in", "ref", "--workers", "1", "-q", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    out = small_disk / "out"
    args = ("run", "p.yaml", "in", str(out), "--workers", "1", "--no-report",
            "--manifest", str(tmp_path / "m.parquet"))
    got = _pixelmill(*args, cwd=tmp_path)
    assert got.returncode == 1, got.stderr
    assert "Traceback" not in got.stderr
    assert "No space left on device" in got.stderr and "--resume" in got.stderr
    from pixelmill.manifest import read_manifest

    rows = read_manifest(str(tmp_path / "m.parquet"))
    assert 1 <= len(rows) < 10  # stopped at the first full write, not after all 40
    assert _temporaries(out) == []

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    again = _pixelmill(*args, "--resume", "-q", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert output_files(out) == output_files(tmp_path / "ref")
    assert {r["status"] for r in _check_ok_rows(tmp_path / "m.parquet")} == {"ok"}
