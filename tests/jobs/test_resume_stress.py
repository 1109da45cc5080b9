"""Kill-and-resume across the manifest's Arrow chunks: a job (or a manifest writer) SIGKILLed at
given moments, resumed (and killed again), ends with exactly the outputs and manifest of an
uninterrupted run, whose rows span several :data:`pixelmill._tables.CHUNK_ROWS` chunks and whose
columns change type between chunks (numbers in one, text in another).

The jobs run their driver in a subprocess on the in-process engine (no worker start-up: quick)
with chunks of 64 rows, so a few hundred tiny images cross several chunks; the kill is a real
SIGKILL the driver sends itself after its N-th manifest row (deterministic moments)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelmill._tables import CHUNK_ROWS
from pixelmill.manifest import ManifestWriter, journal_path, read_manifest_table

MEASURE = {"steps": [{"op": "gaussian", "sigma": 1.0}, {"op": "sharpness"},
                     {"op": "blur_flag"}, {"op": "phash"}]}
TILEABLE = {"steps": [{"op": "gaussian", "sigma": 1.0}]}

#: the driver of one job, in a subprocess: chunks of 64 rows, the in-process engine, and a
#: SIGKILL of itself right after its N-th manifest row (or after the tiled runner returned)
_DRIVER = r"""
import json, os, signal, sys
from pixelmill._tables import RowChunks
RowChunks.__init__.__defaults__ = (64,)
import pixelmill
import pixelmill.tiled
from pixelmill.engines import InlineEngine
from pixelmill.manifest import ManifestWriter

pipeline, inp, out, kill_after, kill_after_tiled, resume, extra = sys.argv[1:8]
kill_after = int(kill_after)
appended = [0]
original_append = ManifestWriter.append

def append(self, row):
    original_append(self, row)
    appended[0] += 1
    if appended[0] == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

ManifestWriter.append = append
if kill_after_tiled == "1":
    original_run_tiled = pixelmill.tiled.run_tiled

    def run_tiled(*args, **kwargs):
        result = original_run_tiled(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    pixelmill.tiled.run_tiled = run_tiled
summary = pixelmill.run(json.loads(pipeline), inp, out, engine=InlineEngine(),
                        resume=resume == "1", progress=False, report=False,
                        label_from="parent", tile_threshold=200_000, **json.loads(extra))
sys.exit(int(summary.exit_code))
"""


def _drive(pipeline: dict, inp: Path, out: Path, *, kill_after: int = 0,
           kill_after_tiled: bool = False, resume: bool = False, **extra) -> int:
    if pipeline is MEASURE:  # its JPEG outputs at a quality: a resume must keep it
        extra.setdefault("quality", 90)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(pipeline), str(inp), str(out),
         str(kill_after), "1" if kill_after_tiled else "0", "1" if resume else "0",
         json.dumps(extra)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 3, -signal.SIGKILL), proc.stderr[-2000:]
    return proc.returncode


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """300 tiny PNGs and JPEGs in nested folders, plus two files that are not images."""
    root = tmp_path_factory.mktemp("tiny") / "in"
    rng = np.random.default_rng(3)
    for i in range(300):
        folder = root / f"d{i % 4}" / ("nested" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(8, 17, size=2))
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"), img)
    (root / "d0" / "text.jpg").write_bytes(b"not an image")
    (root / "d1" / "empty.png").write_bytes(b"")
    return root


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.parquet"}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _manifest(out: Path) -> tuple[dict[str, str], list[dict]]:
    """The manifest's column types and rows, timings left out, outputs relative to ``out``."""
    table = pq.read_table(out / "manifest.parquet")
    types = {f.name: str(f.type) for f in table.schema if not f.name.startswith("t_")}
    rows = []
    for row in table.to_pylist():
        row = {k: v for k, v in row.items() if not k.startswith("t_") and k != "peak_rss"}
        if row.get("output"):
            row["output"] = os.path.relpath(row["output"], out)
        rows.append(row)
    return types, rows


def _assert_same_job(ref: Path, out: Path) -> None:
    assert _files(out) == _files(ref)  # same outputs, byte for byte, nothing left beside them
    ref_types, ref_rows = _manifest(ref)
    types, rows = _manifest(out)
    assert types == ref_types
    assert [r["key"] for r in rows] == [r["key"] for r in ref_rows]  # one row per key, in order
    for got, want in zip(rows, ref_rows, strict=True):
        bad = {k: (got.get(k), want.get(k)) for k in set(got) | set(want)
               if k != "input_modified" and not _same(got.get(k), want.get(k))}
        assert not bad, (got["key"], bad)
    assert not Path(journal_path(str(out / "manifest.parquet"))).exists()


def test_job_killed_again_and_again_across_chunks_resumes_to_the_uninterrupted_run(tiny, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _drive(MEASURE, tiny, ref) == 3  # two inputs are not images
    # killed in the first chunk, then two resumes killed in later chunks, a torn journal line
    assert _drive(MEASURE, tiny, out, kill_after=40) == -signal.SIGKILL
    assert _drive(MEASURE, tiny, out, kill_after=100, resume=True) == -signal.SIGKILL
    with open(journal_path(str(out / "manifest.parquet")), "ab") as f:
        f.write(b'{"key": "/torn", "status": "o')
    assert _drive(MEASURE, tiny, out, kill_after=90, resume=True) == -signal.SIGKILL
    # 230 rows appended, the two inputs that are not images once per run: 228 kept, 74 to do
    assert read_manifest_table(str(out / "manifest.parquet")).num_rows == 228
    assert _drive(MEASURE, tiny, out, resume=True) == 3
    _assert_same_job(ref, out)
    assert _drive(MEASURE, tiny, out, resume=True) == 3  # a resume of the finished job
    _assert_same_job(ref, out)


def _rows(keys: range, *, failed: frozenset = frozenset()) -> list[dict]:
    """Rows whose columns change type between chunks: ``label`` int then text, ``size`` int then
    float, ``blurry`` bool or null, ``sharpness`` with NaN."""
    rows = []
    for i in keys:
        fails = i in failed or i % 1000 == 999  # every thousandth input fails in every run
        rows.append({"key": f"k{i:06d}", "status": "failed" if fails else "ok",
                     "reason": "crash: worker died" if fails else None,
                     "label": i % 10 if i < CHUNK_ROWS else f"cat{i % 3}",
                     "size": i if i < 3000 else i + 0.5,
                     "blurry": None if i % 7 == 0 else bool(i % 2),
                     "sharpness": float("nan") if i % 11 == 0 else i / 3})
    return rows


_WRITER = r"""
import json, os, signal, sys
from pixelmill.manifest import ManifestWriter
rows = json.loads(sys.stdin.read())
writer = ManifestWriter(sys.argv[1], keep_existing=sys.argv[2] == "1")
for row in rows:
    writer.append(row)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_writer(uri: str, rows: list[dict], *, resume: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", _WRITER, uri, "1" if resume else "0"],
                          input=json.dumps(rows), capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_a_writer_killed_between_chunks_resumes_to_the_uninterrupted_table(tmp_path):
    n = CHUNK_ROWS + 1500
    failed = frozenset(range(10, 3000, 97))
    whole = ManifestWriter(str(tmp_path / "whole.parquet"))
    whole.extend(_rows(range(n)))
    want = whole.close()

    uri = str(tmp_path / "m.parquet")
    first = ManifestWriter(uri)  # a finished run with failed rows: a Parquet file
    first.extend(_rows(range(3000), failed=failed))
    first.close()
    # a resume redoes the failed inputs and goes on past a chunk boundary, then is killed...
    _killed_writer(uri, _rows(sorted(failed)) + _rows(range(3000, CHUNK_ROWS + 200)), resume=True)
    with open(journal_path(uri), "ab") as f:  # ... in the middle of a line
        f.write(b'{"key": "k004296", "status": "ok", "lab')
    again = ManifestWriter(uri, keep_existing=True)
    assert again.earlier_table.num_rows == CHUNK_ROWS + 200
    again.extend(_rows(range(CHUNK_ROWS + 150, n)))  # the last rows before the kill, redone
    got = again.close()

    assert got.schema.remove_metadata() == want.schema.remove_metadata()
    assert got.column("label").type == pa.string()  # numbers in one chunk, text in another
    assert got.num_rows == n and len(set(got.column("key").to_pylist())) == n
    for a, b in zip(got.to_pylist(), want.to_pylist(), strict=True):
        assert all(_same(a[k], b[k]) for k in a), (a, b)
    assert pq.read_table(uri).num_rows == n
    assert not os.path.exists(journal_path(uri))


@pytest.fixture(scope="module")
def with_huge(tmp_path_factory) -> Path:
    """Three small images and one above the tile threshold (200,000 pixels) of the tests."""
    root = tmp_path_factory.mktemp("huge") / "in"
    rng = np.random.default_rng(5)
    (root / "small").mkdir(parents=True)
    (root / "big").mkdir()
    for i in range(3):
        assert cv2.imwrite(str(root / "small" / f"s{i}.png"),
                           rng.integers(0, 256, (16, 16, 3), np.uint8))
    assert cv2.imwrite(str(root / "big" / "huge.png"),
                       rng.integers(0, 256, (700, 600, 3), np.uint8))
    return root


def test_tiled_input_killed_at_any_append_resumes_to_the_uninterrupted_run(with_huge, tmp_path):
    ref = tmp_path / "ref"
    assert _drive(TILEABLE, with_huge, ref) == 0
    # rows: 3 small inputs, then the huge input's 4 tiles, the tiled runner's row and the job's
    for kill_after in (2, 4, 6, 7):
        out = tmp_path / f"out{kill_after}"
        assert _drive(TILEABLE, with_huge, out, kill_after=kill_after) == -signal.SIGKILL
        assert _drive(TILEABLE, with_huge, out, resume=True) == 0
        _assert_same_job(ref, out)


def test_a_kill_right_after_the_tiled_runner_resumes_to_the_uninterrupted_run(with_huge,
                                                                             tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _drive(TILEABLE, with_huge, ref) == 0
    assert _drive(TILEABLE, with_huge, out, kill_after_tiled=True) == -signal.SIGKILL
    assert _drive(TILEABLE, with_huge, out, resume=True) == 0  # not refused as another pipeline
    _assert_same_job(ref, out)


def test_temporaries_beside_a_manifest_outside_output_are_removed_on_resume(tiny, tmp_path):
    runs = tmp_path / "runs"
    manifest = runs / "m.parquet"
    assert _drive(MEASURE, tiny, tmp_path / "out", manifest=str(manifest)) == 3
    # what a SIGKILL while the manifest and its report were written leaves behind
    (runs / f".m.parquet.{'0' * 32}.tmp").write_bytes(b"PAR1 half")
    (runs / f".m.report.html.{'1' * 32}.tmp").write_bytes(b"<html>")
    (runs / "notes.txt").write_text("the user's")
    assert _drive(MEASURE, tiny, tmp_path / "out", manifest=str(manifest), resume=True) == 3
    assert sorted(p.name for p in runs.iterdir()) == ["m.parquet", "notes.txt"]


def test_numeric_labels_of_a_table_input_run_and_resume(tiny, tmp_path):
    uris = sorted(str(p) for p in tiny.rglob("*") if p.is_file())
    table = pa.table({"uri": uris, "relpath": [os.path.relpath(u, tiny) for u in uris],
                      "label": pa.array([i % 10 if i < 150 else None for i in range(len(uris))],
                                        pa.int64())})
    pq.write_table(table, tmp_path / "table.parquet")
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _drive(MEASURE, tmp_path / "table.parquet", ref) == 3
    assert _drive(MEASURE, tmp_path / "table.parquet", out, kill_after=120) == -signal.SIGKILL
    assert _drive(MEASURE, tmp_path / "table.parquet", out, resume=True) == 3
    _assert_same_job(ref, out)
    labels = pq.read_table(ref / "manifest.parquet").column("label").to_pylist()
    assert labels[:3] == ["0", "1", "2"] and all(isinstance(v, str) for v in labels)


def test_failed_rows_redone_on_resume_leave_no_column_type_behind(tmp_path):
    whole = ManifestWriter(str(tmp_path / "whole.parquet"))
    whole.extend(_rows(range(50)))
    want = whole.close()
    uri = str(tmp_path / "m.parquet")
    first = ManifestWriter(uri)  # every input of the first run timed out
    first.extend({"key": f"k{i:06d}", "status": "failed", "reason": "timeout: 1 s"}
                 for i in range(50))
    first.close()
    again = ManifestWriter(uri, keep_existing=True)
    again.extend(_rows(range(50)))
    assert again.close().schema.remove_metadata() == want.schema.remove_metadata()
