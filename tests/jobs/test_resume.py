"""Resume: a job killed at any moment (the whole command, or one worker) and resumed gives
exactly the outputs and manifest of an uninterrupted run."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixelmill.jobs import JobSpec, execute, plan_units, run
from pixelmill.manifest import ManifestWriter, journal_path, read_manifest
from pixelmill.pipeline import Pipeline
from tests.jobs import _units
from tests.jobs.conftest import output_files

PIPELINE = "steps:\n  - op: gaussian\n    sigma: 3\n"


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """60 photos (crops of a real photograph) in 4 folders, plus one corrupt file."""
    from skimage import data

    root = tmp_path_factory.mktemp("many") / "in"
    rng = np.random.default_rng(7)
    big = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    for i in range(60):
        y, x = rng.integers(0, 1024 - 480), rng.integers(0, 1024 - 640)
        crop = np.ascontiguousarray(big[y:y + 480, x:x + 640, ::-1])
        path = root / f"f{i % 4}" / f"img{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (root / "f0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def _comparable(manifest: Path) -> dict[str, dict]:
    rows = read_manifest(str(manifest))
    return {r["key"]: {k: v for k, v in r.items() if not k.startswith("t_")} for r in rows}


def _relative_outputs(rows: dict[str, dict], out: Path) -> dict[str, dict]:
    fixed = {}
    for key, row in rows.items():
        row = dict(row)
        if row.get("output"):
            row["output"] = os.path.relpath(row["output"], out)
        fixed[key] = row
    return fixed


@pytest.fixture(scope="module")
def clean_run(many, tmp_path_factory, engine):
    out = tmp_path_factory.mktemp("clean") / "out"
    pipe = out.parent / "p.yaml"
    pipe.write_text(PIPELINE)
    run(str(pipe), str(many), str(out), engine=engine, progress=False, report=False)
    return out


def _start_and_wait_for_rows(cmd: list[str], journal: Path, rows: int = 5,
                             **popen) -> subprocess.Popen:
    """Start the command and return once its journal holds ``rows`` rows (it is still running)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= rows:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        proc.communicate()
        pytest.fail("the run ended before it could be stopped")
    return proc


def test_sigkill_of_the_command_then_resume(many, clean_run, tmp_path, engine):
    out = tmp_path / "out"
    pipe = tmp_path / "p.yaml"
    pipe.write_text(PIPELINE)
    cmd = [sys.executable, "-m", "pixelmill", "run", str(pipe), str(many), str(out),
           "--workers", "1", "--quiet", "--no-report"]  # one worker: a wide window to kill in
    journal = Path(journal_path(str(out / "manifest.parquet")))
    proc = _start_and_wait_for_rows(cmd, journal)
    try:
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done_before = journal.read_text().count("\n")
    assert 5 <= done_before < 61
    assert not (out / "manifest.parquet").exists()
    with pytest.raises(Exception, match="--resume"):
        run(str(pipe), str(many), str(out), engine=engine, progress=False, report=False)
    summary = run(str(pipe), str(many), str(out), engine=engine, resume=True, progress=False,
                  report=False)
    assert summary.processed <= 61 - done_before + 1  # the broken file is retried
    assert (summary.ok, summary.invalid) == (60, 1)
    assert output_files(out) == output_files(clean_run)
    assert _relative_outputs(_comparable(out / "manifest.parquet"), out) == _relative_outputs(
        _comparable(clean_run / "manifest.parquet"), clean_run)
    assert not journal.exists()


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group (from /proc; zombies do not count)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_stops_cleanly_then_resume(many, clean_run, tmp_path, engine,
                                                      sig, code):
    """SIGTERM (a scheduler's stop) is handled as Ctrl-C is: the command stops its workers,
    says how to go on, exits 143 (130 for Ctrl-C), and --resume finishes the job exactly."""
    out = tmp_path / "out"
    pipe = tmp_path / "p.yaml"
    pipe.write_text(PIPELINE)
    cmd = [sys.executable, "-m", "pixelmill", "run", str(pipe), str(many), str(out),
           "--workers", "2", "--no-report"]
    journal = Path(journal_path(str(out / "manifest.parquet")))
    proc = _start_and_wait_for_rows(cmd, journal, start_new_session=True)
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert b"--resume" in err and b"Traceback" not in err
    deadline = time.monotonic() + 5  # workers exit with the command
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_members(proc.pid) == []
    summary = run(str(pipe), str(many), str(out), engine=engine, resume=True, progress=False,
                  report=False)
    assert (summary.ok, summary.invalid) == (60, 1)
    assert output_files(out) == output_files(clean_run)
    assert _relative_outputs(_comparable(out / "manifest.parquet"), out) == _relative_outputs(
        _comparable(clean_run / "manifest.parquet"), clean_run)


def test_sigkill_of_a_worker_is_retried(many, clean_run, tmp_path, engine):
    out = tmp_path / "out"
    units = plan_units(str(many), str(out))
    spec = JobSpec(Pipeline.from_text(PIPELINE))
    fn = functools.partial(_units.crash_once_on, spec, "img017.jpg", str(tmp_path / "marker"))
    with ManifestWriter(str(out / "manifest.parquet")) as w:
        execute(engine, fn, units, w)
    assert (tmp_path / "marker").exists()  # the worker really was killed once
    assert output_files(out) == output_files(clean_run)
    got = {k: {c: v for c, v in r.items() if c not in ("output", "pipeline", "encoding")}
           for k, r in _comparable(out / "manifest.parquet").items()}
    want = {k: {c: v for c, v in r.items() if c not in ("output", "pipeline", "encoding")}
            for k, r in _comparable(clean_run / "manifest.parquet").items()}
    assert got == want


