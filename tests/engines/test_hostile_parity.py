"""Engine parity on a hostile collection: the same job on the local engine, a Dask scheduler
with two workers and a Spark standalone cluster gives the same manifest and outputs.

The collection: JPEG/PNG/TIFF/WebP in gray, RGBA, palette, 16-bit, CMYK and EXIF-rotated
forms, an empty file, truncated JPEG and PNG, PNG bytes named ``.jpg``, a decompression bomb,
text named ``.png``, a file without permissions (readable when the tests run as root), a
symlink and a dangling one, names with spaces, unicode, ``#``, ``%`` and ``?``, nested
folders, an input that SIGKILLs its worker and one stuck past ``--timeout`` in "native code"
(SIGALRM blocked, so Spark's unit clock cannot stop it; a remote Dask worker cannot be
stopped at all).

Found by this audit:

- a unit that kept killing its worker had a reason of each engine's own wording (Spark:
  ``Python worker exited unexpectedly (crashed) (2 attempts)``); now every engine says
  ``worker process died while running it (2 attempts)`` (the local engine adds the signal);
- a unit that ran past ``timeout`` on a remote Dask worker, or in native code on Spark, was a
  ``failed`` (timeout) row, yet wrote its output afterwards (on Dask after the job had ended):
  an output file the manifest says was never made, which the local engine (it kills the
  worker at the deadline) never leaves. The unit now writes nothing once its time is up.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning")]

THUMB = {"steps": [{"op": "resize", "long_side": 64, "method": "area"},
                   {"op": "gaussian", "sigma": 1.0}]}
MEASURE = {"steps": [{"op": "sharpness"}, {"op": "channel_stats"}, {"op": "phash"},
                     {"op": "color_histogram"}]}
NAME = "{parent}/{stem}_{suffix}.{ext}"  # rgb.jpg, rgb.tif and rgb.webp: three outputs
TIMEOUT = 1.5
#: seconds the stuck unit stays in "native code" before it carries on and writes its output
STUCK = 3.5
CRASH = "crash: worker process died while running it (2 attempts)"


# -- faults injected around the job function (workers import this module by name) --------
class _Faulty:
    """The job function, with ``crash.png`` SIGKILLing its worker and ``stuck.png`` holding it
    for :data:`STUCK` seconds with SIGALRM blocked (as in a native call)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def warm_up(self) -> None:
        self.fn.warm_up()

    def __call__(self, unit):
        if unit.relpath.endswith("crash.png"):
            os.kill(os.getpid(), signal.SIGKILL)
        if unit.relpath.endswith("stuck.png"):
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            try:
                time.sleep(STUCK)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return self.fn(unit)


class _FaultyEngine:
    """An engine proxy mapping :class:`_Faulty` around the job's function."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.workers = inner, inner.name, inner.workers

    def map(self, fn, units, **kw):
        return self.inner.map(_Faulty(fn), units, **kw)

    def close(self) -> None:
        """The wrapped engine belongs to the fixture."""


# -- the collection ------------------------------------------------------------------------
def _build(root) -> None:
    from PIL import Image
    from skimage import data

    from tests._images import bomb_png

    rgb = np.ascontiguousarray(data.astronaut()[::4, ::4])  # 128x128
    gray = np.ascontiguousarray(data.camera()[::4, ::4])
    alpha = np.full(rgb.shape[:2], 200, np.uint8)

    def save(rel, im, fmt, **kw):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, fmt, **kw)

    save("plain/rgb.jpg", Image.fromarray(rgb), "JPEG", quality=90)
    save("plain/gray.png", Image.fromarray(gray), "PNG")
    save("plain/rgba.png", Image.fromarray(np.dstack([rgb, alpha])), "PNG")
    save("plain/palette.png", Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE), "PNG")
    save("plain/gray16.png", Image.fromarray(gray.astype(np.uint16) * 257), "PNG")
    save("plain/rgb.tif", Image.fromarray(rgb), "TIFF")
    save("plain/rgb.webp", Image.fromarray(rgb), "WEBP", quality=80)
    save("plain/rgba.webp", Image.fromarray(np.dstack([rgb, alpha])), "WEBP", lossless=True)
    save("plain/cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    save("plain/exif6.jpg", Image.fromarray(rgb[:, :100]), "JPEG", exif=exif.tobytes())
    import tifffile

    tifffile.imwrite(root / "plain" / "rgb16.tif", rgb.astype(np.uint16) * 257)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    (bad / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    png = buf.getvalue()
    (bad / "trunc.png").write_bytes(png[: len(png) // 2])
    (bad / "png_named.jpg").write_bytes(png)
    (bad / "bomb.png").write_bytes(bomb_png())
    (bad / "text.png").write_bytes(b"not an image at all\n" * 8)
    (bad / "noperm.png").write_bytes(png)
    os.chmod(bad / "noperm.png", 0)  # readable all the same when the tests run as root
    links = root / "links"
    links.mkdir()
    os.symlink(root / "plain" / "rgb.jpg", links / "link.jpg")
    os.symlink(root / "nowhere.jpg", links / "dangling.jpg")
    for name in ("with space.png", "ünï 画像.png", "hash#1.png", "pct%20.png", "q?x.png"):
        save(f"names/{name}", Image.fromarray(gray), "PNG")
    save("nest/a/b/c/deep.jpg", Image.fromarray(rgb), "JPEG")
    save("nest/a/crash.png", Image.fromarray(gray), "PNG")
    save("nest/a/stuck.png", Image.fromarray(gray), "PNG")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "in"
    root.mkdir()
    _build(root)
    return root


def _job(engine, root, out, *, measure=False):
    """Run the thumbnail job (with faults) or the measure-only job; returns what to compare:
    (exit code and counts, schema without timings, rows by relpath, output files by path)."""
    import pyarrow.parquet as pq

    from pixelmill.jobs import run

    if measure:
        summary = run(MEASURE, str(root), None, manifest=str(out / "m.parquet"), engine=engine,
                      label_from="parent", progress=False, report=False)
    else:
        summary = run(THUMB, str(root), str(out), engine=_FaultyEngine(engine), format="jpg",
                      name_template=NAME, timeout=TIMEOUT, progress=False, report=False)
        time.sleep(STUCK + 0.5)  # a stuck unit that was not stopped would write by now
    table = pq.read_table(summary.manifest)
    schema = [(f.name, str(f.type)) for f in table.schema if not f.name.startswith("t_")]
    rows = {}
    for r in table.to_pylist():
        r = {k: v for k, v in r.items() if not k.startswith("t_")}
        if r.get("output"):
            r["output"] = os.path.relpath(r["output"], out)
        rows[r["relpath"]] = r
    files = {}
    if not measure:
        for folder, _, names in os.walk(out):
            for name in names:
                if not name.endswith(".parquet"):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as f:
                        files[os.path.relpath(path, out)] = hashlib.sha256(f.read()).hexdigest()
    counts = (int(summary.exit_code), summary.total, summary.ok, summary.invalid, summary.failed)
    return counts, schema, rows, files


@pytest.fixture(scope="module")
def reference(hostile, tmp_path_factory):
    """Both jobs on the local engine (the reference)."""
    from pixelmill.engines.local import LocalEngine

    with LocalEngine(workers=2) as engine:
        job = _job(engine, hostile, tmp_path_factory.mktemp("local") / "out")
        measured = _job(engine, hostile, tmp_path_factory.mktemp("local-m"), measure=True)
    return job, measured


def _check_reference(job) -> None:
    counts, _, rows, files = job
    assert counts[0] == 3 and counts[1] == len(rows) == 28
    stuck, crash = rows["nest/a/stuck.png"], rows["nest/a/crash.png"]
    assert (stuck["status"], stuck["reason"]) == ("failed", f"timeout: timed out after {TIMEOUT:g} s")
    assert crash["status"] == "failed"
    assert not any(f.startswith(("nest/a/stuck", "nest/a/crash")) for f in files)
    expect = {"bad/empty.jpg": "invalid", "bad/trunc.jpg": "invalid", "bad/trunc.png": "invalid",
              "bad/bomb.png": "invalid", "bad/text.png": "invalid", "bad/png_named.jpg": "ok",
              "links/link.jpg": "ok", "links/dangling.jpg": "failed", "plain/cmyk.jpg": "ok",
              "names/ünï 画像.png": "ok", "names/q?x.png": "ok", "nest/a/b/c/deep.jpg": "ok",
              "bad/noperm.png": "ok" if os.geteuid() == 0 else "failed"}
    assert {k: rows[k]["status"] for k in expect} == expect
    assert (rows["plain/exif6.jpg"]["width"], rows["plain/exif6.jpg"]["height"]) == (128, 100)


def _assert_same(job, ref, *, crash_detail: bool = False) -> None:
    counts, schema, rows, files = job
    r_counts, r_schema, r_rows, r_files = ref
    assert counts == r_counts
    assert schema == r_schema  # same columns, same order, same types
    assert list(rows) == list(r_rows)  # rows in key order
    if crash_detail:  # the local engine also names the signal
        crash = rows["nest/a/crash.png"]["reason"]
        local = r_rows["nest/a/crash.png"]["reason"]
        assert crash == CRASH, crash
        assert local.startswith(CRASH[:-len("2 attempts)")]) and local.endswith("2 attempts)")
        assert "SIGKILL" in local
        rows = {k: v for k, v in rows.items() if k != "nest/a/crash.png"}
        r_rows = {k: v for k, v in r_rows.items() if k != "nest/a/crash.png"}
    assert rows == r_rows
    assert files == r_files  # byte for byte, and no output behind a failed row


def test_local_reference(reference):
    _check_reference(reference[0])


@pytest.mark.dask
def test_dask_scheduler_matches_local(dask_address, hostile, reference, tmp_path):
    from pixelmill.engines.dask import DaskEngine

    with DaskEngine(dask_address) as engine:
        job = _job(engine, hostile, tmp_path / "out")
        measured = _job(engine, hostile, tmp_path / "m", measure=True)
    _assert_same(job, reference[0], crash_detail=True)
    _assert_same(measured, reference[1])


@pytest.mark.spark
@pytest.mark.slow
def test_spark_standalone_matches_local(spark_master, hostile, reference, tmp_path):
    from pixelmill.engines.spark import SparkEngine

    with SparkEngine(spark_master, conf={"spark.cores.max": "2"}) as engine:
        job = _job(engine, hostile, tmp_path / "out")
        measured = _job(engine, hostile, tmp_path / "m", measure=True)
    _assert_same(job, reference[0], crash_detail=True)
    _assert_same(measured, reference[1])
