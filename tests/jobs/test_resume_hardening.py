"""Resume and manifest honesty under the failures a real job meets: a torn journal line, a
resume with other settings, an interrupted --overwrite, two jobs on one manifest, a timeout
clock that must not count a fresh worker's start-up, workers orphaned by a killed driver,
temporaries left by a worker killed mid-write, and tiled outputs that share a name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixelmill.engines.local import LocalEngine
from pixelmill.errors import PixelmillError, UsageError
from pixelmill.jobs import execute, plan_units, run
from pixelmill.manifest import ManifestWriter, journal_path, read_manifest
from tests.jobs import _units
from tests.jobs.conftest import output_files

BLUR = {"steps": [{"op": "gaussian", "sigma": 1.0}]}


def _statuses(manifest: Path) -> dict[str, str]:
    return {r["relpath"]: r["status"] for r in read_manifest(str(manifest))}


def test_rows_appended_after_a_torn_line_are_kept(tmp_path):
    """A run killed (or out of disk) mid-line, resumed: the resumed run's rows must not be
    glued to the torn line, where every reader dropped them (and the job never progressed)."""
    uri = str(tmp_path / "m.parquet")
    with open(journal_path(uri), "w") as f:
        f.write(json.dumps({"key": "a", "status": "ok"}) + "\n")
        f.write('{"key": "b", "stat')  # cut mid-line
    w = ManifestWriter(uri, keep_existing=True)
    w.append({"key": "c", "status": "ok"})
    w.append({"key": "d", "status": "failed"})
    del w  # killed again before the end (no close)
    assert sorted(r["key"] for r in read_manifest(uri)) == ["a", "c", "d"]
    w = ManifestWriter(uri, keep_existing=True)
    assert sorted(r["key"] for r in w.earlier_rows) == ["a", "c", "d"]
    assert w.close().num_rows == 3


def test_resume_with_another_format_or_quality_is_refused(collection, tmp_path, engine):
    root, _ = collection
    out = tmp_path / "out"
    run(BLUR, str(root), str(out), engine=engine, format="jpg", quality=40, limit=3,
        progress=False, report=False)
    before = output_files(out)
    with pytest.raises(UsageError, match="--format"):
        run(BLUR, str(root), str(out), engine=engine, format="png", resume=True,
            progress=False, report=False)
    with pytest.raises(UsageError, match="--quality"):
        run(BLUR, str(root), str(out), engine=engine, format="jpg", quality=90, resume=True,
            progress=False, report=False)
    assert output_files(out) == before  # nothing written by the refused runs
    assert not Path(journal_path(str(out / "manifest.parquet"))).exists()
    s = run(BLUR, str(root), str(out), engine=engine, format="jpg", quality=40, resume=True,
            progress=False, report=False)
    assert {p.rsplit(".", 1)[1] for p in output_files(out)} == {"jpg"}
    assert s.skipped == 3


def test_an_interrupted_overwrite_resumes_from_its_own_rows(collection, tmp_path, engine):
    """--overwrite, interrupted, then --resume: the replaced run's ok rows are not "done"."""
    root, kinds = collection
    out = tmp_path / "out"
    run(BLUR, str(root), str(out), engine=engine, format="jpg", quality=20, progress=False,
        report=False)
    with pytest.raises(KeyboardInterrupt):
        run(BLUR, str(root), str(out), engine=_units.StopAfter(2), format="jpg", quality=95,
            overwrite=True, progress=False, report=False)
    s = run(BLUR, str(root), str(out), engine=engine, format="jpg", quality=95, resume=True,
            progress=False, report=False)
    assert s.processed == len(kinds) - 2
    fresh = tmp_path / "fresh"
    run(BLUR, str(root), str(fresh), engine=engine, format="jpg", quality=95, progress=False,
        report=False)
    assert output_files(out) == output_files(fresh)
    assert _statuses(out / "manifest.parquet") == _statuses(fresh / "manifest.parquet")


def test_a_second_job_on_the_same_manifest_is_refused(collection, tmp_path, engine):
    root, _ = collection
    out = tmp_path / "out"
    manifest = str(out / "manifest.parquet")
    stale = out / "cats" / ".chelsea.jpg.0123456789abcdef0123456789abcdef.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a write in progress")  # the first job's, mid-write
    first = ManifestWriter(manifest)  # the first job, still running
    first.append({"key": "x", "status": "ok"})
    try:
        for kw in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(PixelmillError, match="another pixelmill job"):
                run(BLUR, str(root), str(out), engine=engine, progress=False, report=False,
                    **kw)
        # nothing written, and its temporaries were not swept from under it
        assert list(output_files(out)) == ["cats/" + stale.name]
    finally:
        first.close()
    s = run(BLUR, str(root), str(out), engine=engine, resume=True, progress=False,
            report=False)
    assert (s.processed, s.ok + s.invalid) == (s.total, s.total)
    assert not stale.exists()


def test_a_fresh_workers_start_up_does_not_count_against_the_timeout(collection, tmp_path):
    """Imports (unpickling) and warm-up of 1.5 s each, units that take no time, timeout 1 s:
    only the hanging unit times out; before, every unit of a fresh (or replaced) worker did."""
    root, _ = collection
    units = plan_units(str(root), str(tmp_path / "out"))
    hung = units[2].relpath
    fn = _units.SlowToStart(1.5, hung)
    with LocalEngine(workers=2) as eng, ManifestWriter(str(tmp_path / "m.parquet")) as w:
        execute(eng, fn, units, w, timeout=1.0)
    rows = {r["relpath"]: r for r in read_manifest(str(tmp_path / "m.parquet"))}
    assert rows[hung]["status"] == "failed" and rows[hung]["reason"].startswith("timeout")
    assert {k: r["status"] for k, r in rows.items() if k != hung} == {
        u.relpath: "ok" for u in units if u.relpath != hung}


DRIVER = """
import functools, sys
from pixelmill.engines.local import LocalEngine
from pixelmill.jobs import plan_units
from tests.jobs import _units

if __name__ == "__main__":
    units = plan_units(sys.argv[1], None)[:1]
    with LocalEngine(workers=1) as eng:
        list(eng.map(functools.partial(_units.hang_with_pid, sys.argv[2]), units))
"""


def test_workers_do_not_outlive_a_killed_driver(collection, tmp_path):
    """SIGKILL of the command alone (not its process group): its workers stop too, instead of
    going on writing outputs under a job that a resumed run now owns."""
    root, _ = collection
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(pid_file)], env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "no worker started"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived its driver"
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead
    except (FileNotFoundError, IndexError):
        return False


def test_temporaries_of_killed_writers_are_removed(collection, tmp_path, engine):
    """A worker killed mid-write (OOM, crash, timeout) leaves ``.NAME.<hex>.tmp``: a run that
    ends, and an --overwrite, leave none behind (before, only --resume swept them)."""
    root, _ = collection
    out = tmp_path / "out"
    stale = out / "cats" / ".chelsea.jpg.0123456789abcdef0123456789abcdef.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half an image")
    run(BLUR, str(root), str(out), engine=engine, progress=False, report=False)
    assert not stale.exists()
    stale.write_bytes(b"half an image")
    run(BLUR, str(root), str(out), engine=engine, overwrite=True, progress=False,
        report=False)
    assert not stale.exists()


def test_tiled_outputs_sharing_a_name_keep_their_owner_on_resume(tmp_path, engine):
    """a.jpg and a.png both above tile_threshold: one gets a.tif, the other fails; a resume
    (which retries the failed one) must not hand a.tif to it, replacing the first result."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), np.full((64, 64, 3), 90, np.uint8))
    cv2.imwrite(str(src / "a.png"), np.full((64, 64, 3), 30, np.uint8))
    out = tmp_path / "out"
    run(BLUR, str(src), str(out), engine=engine, progress=False, report=False,
        tile_threshold=1000)
    first = (out / "a.tif").read_bytes()
    rows = _statuses(out / "manifest.parquet")
    assert (rows["a.jpg"], rows["a.png"]) == ("ok", "failed")  # plan order, not timing
    run(BLUR, str(src), str(out), engine=engine, progress=False, report=False,
        tile_threshold=1000, resume=True)
    assert (out / "a.tif").read_bytes() == first
    rows = _statuses(out / "manifest.parquet")
    assert (rows["a.jpg"], rows["a.png"]) == ("ok", "failed")


def test_a_rerun_after_a_kill_names_the_journal_not_a_manifest(collection, tmp_path):
    """Killed before its manifest was written, a run leaves only the journal; the rerun without
    --resume said `manifest.parquet already exists`, a file that did not exist."""
    root, _ = collection
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / "manifest.parquet"
    Path(journal_path(str(manifest))).write_text(
        json.dumps({"key": "x", "status": "ok"}) + "\n")
    with pytest.raises(UsageError, match="a run's journal is there") as e:
        run(BLUR, str(root), str(out), engine="local", workers=1, progress=False)
    assert "--resume" in str(e.value) and not manifest.exists()
