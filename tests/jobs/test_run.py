"""Jobs end to end: rows per input, invalid vs failed, crashes, timeouts, existing outputs."""

from __future__ import annotations

import functools

import cv2
import fsspec
import numpy as np
import pytest

from pixelmill import codecs, storage
from pixelmill.errors import UsageError
from pixelmill.jobs import JobSpec, execute, plan_units, run
from pixelmill.manifest import ManifestWriter, read_manifest
from pixelmill.pipeline import load_pipeline
from tests.jobs import _units
from tests.jobs.conftest import output_files


def _rows(manifest):
    return {r["relpath"]: r for r in read_manifest(str(manifest))}


def test_job_rows_outputs_and_pixels(collection, tmp_path, engine, blur_pipeline):
    root, kinds = collection
    out = tmp_path / "out"
    summary = run(blur_pipeline, str(root), str(out), engine=engine, progress=False,
                  report=False, label_from="parent")
    rows = _rows(out / "manifest.parquet")
    assert {k: r["status"] for k, r in rows.items()} == kinds
    assert (summary.ok, summary.invalid, summary.failed) == (5, 2, 0)
    assert summary.exit_code == 3
    for rel in ("not_an_image.jpg", "empty.png"):
        assert rows[rel]["reason"].startswith("decode:"), rows[rel]["reason"]
        assert rows[rel].get("output") is None
    files = output_files(out)
    assert sorted(files) == sorted(k for k, v in kinds.items() if v == "ok")
    # each output: the reference blur (OpenCV directly) of the decoded input, encoded alike
    for rel in ("cats/deep/chelsea_small.png", "camera.png"):
        src = cv2.imread(str(root / rel), cv2.IMREAD_UNCHANGED)
        expected = cv2.sepFilter2D(src, -1, k := cv2.getGaussianKernel(13, 1.5), k,
                                   borderType=cv2.BORDER_REFLECT)
        got = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got, expected)
        row = rows[rel]
        assert row["output_bytes"] == len(files[rel])
        import hashlib

        assert row["sha256"] == hashlib.sha256(files[rel]).hexdigest()
        assert (row["out_height"], row["out_width"]) == src.shape[:2]
        assert row["t_read"] >= 0 and row["t_process"] > 0
    assert rows["cats/chelsea.jpg"]["label"] == "cats"


def test_pixel_limit_is_invalid_and_write_error_is_failed(collection, tmp_path, engine,
                                                          blur_pipeline):
    root, _ = collection
    out = tmp_path / "out"
    (out / "coffee.jpg").mkdir(parents=True)  # a folder where the output file must go
    summary = run(blur_pipeline, str(root), str(out), engine=engine, progress=False,
                  report=False, max_pixels=300_000, overwrite=True)
    rows = _rows(out / "manifest.parquet")
    # astronaut 512x512 = 262144 < 300000 < coffee 400x600 and chelsea 300x451=135300
    assert rows["people/astronaut.jpg"]["status"] == "ok"
    assert rows["coffee.jpg"]["status"] == "failed"
    assert rows["coffee.jpg"]["reason"].startswith("write:")
    run(blur_pipeline, str(root), str(tmp_path / "o2"), engine=engine, progress=False,
        report=False, max_pixels=200_000)
    rows = _rows(tmp_path / "o2" / "manifest.parquet")
    assert rows["people/astronaut.jpg"]["status"] == "invalid"
    assert "limit" in rows["people/astronaut.jpg"]["reason"]
    assert summary.failed == 1


def test_crash_fails_only_that_item(collection, tmp_path, engine, blur_pipeline):
    root, kinds = collection
    units = plan_units(str(root), str(tmp_path / "out"))
    spec = JobSpec(load_pipeline(blur_pipeline))
    fn = functools.partial(_units.crash_on, spec, "coffee.jpg")
    with ManifestWriter(str(tmp_path / "m.parquet")) as w:
        deferred = execute(engine, fn, units, w, batch_size=3)
    assert deferred == []
    rows = _rows(tmp_path / "m.parquet")
    assert rows["coffee.jpg"]["status"] == "failed"
    assert "SIGKILL" in rows["coffee.jpg"]["reason"]
    assert {k: r["status"] for k, r in rows.items() if k != "coffee.jpg"} == {
        k: v for k, v in kinds.items() if k != "coffee.jpg"}


def test_timeout_fails_only_that_item(collection, tmp_path, engine, blur_pipeline):
    root, _ = collection
    units = plan_units(str(root), str(tmp_path / "out"), limit=3)
    spec = JobSpec(load_pipeline(blur_pipeline))
    hung = units[1].relpath
    fn = functools.partial(_units.hang_on, spec, hung)
    # warm both workers first: a fresh worker's imports must not count against the timeout
    with ManifestWriter(str(tmp_path / "warm.parquet")) as w:
        execute(engine, functools.partial(_units.hang_on, spec, "-"), units * 2, w, batch_size=1)
    with ManifestWriter(str(tmp_path / "m.parquet")) as w:
        execute(engine, fn, units, w, timeout=3.0)
    rows = _rows(tmp_path / "m.parquet")
    assert rows[hung]["status"] == "failed" and rows[hung]["reason"].startswith("timeout")
    assert [r["status"] for k, r in rows.items() if k != hung] == ["ok", "ok"]


def test_existing_output_needs_resume_or_overwrite(collection, tmp_path, engine, blur_pipeline):
    root, _ = collection
    out = tmp_path / "out"
    run(blur_pipeline, str(root), str(out), engine=engine, progress=False, report=False)
    before = (out / "manifest.parquet").stat().st_mtime_ns
    with pytest.raises(UsageError, match=r"--resume.*--overwrite"):
        run(blur_pipeline, str(root), str(out), engine=engine, progress=False, report=False)
    assert (out / "manifest.parquet").stat().st_mtime_ns == before
    # outputs alone (manifest elsewhere) also count as an earlier run
    with pytest.raises(UsageError, match="already exists"):
        run(blur_pipeline, str(root), str(out), manifest=str(tmp_path / "m2.parquet"),
            engine=engine, progress=False, report=False)
    with pytest.raises(UsageError, match="exclude each other"):
        run(blur_pipeline, str(root), str(out), resume=True, overwrite=True, engine=engine)
    # resume with every input done processes nothing
    s = run(blur_pipeline, str(root), str(out), resume=True, engine=engine, progress=False,
            report=False)
    assert s.processed == 2 and s.ok == 5  # only the two invalid inputs are retried
    # a different pipeline cannot resume this manifest
    with pytest.raises(UsageError, match="different pipeline"):
        run({"steps": [{"op": "gaussian", "sigma": 2}]}, str(root), str(out), resume=True,
            engine=engine, progress=False, report=False)


@pytest.mark.parametrize("engine", ["in-process", "local"])
def test_memory_input_and_output(collection_master, blur_pipeline, engine):
    """A memory:// store lives in this process: the local engine runs the job here (its
    spawned workers would see empty stores of their own and fail every row)."""
    root, kinds = collection_master
    fs = fsspec.filesystem("memory")
    for rel in kinds:
        fs.pipe(f"/jobsin/{rel}", (root / rel).read_bytes())
    try:
        summary = run(blur_pipeline, "memory://jobsin", "memory://jobsout",
                      engine=_units.InProcessEngine() if engine == "in-process" else engine,
                      progress=False, report=True)
        assert (summary.ok, summary.invalid) == (5, 2)
        rows = {r["relpath"]: r for r in read_manifest("memory://jobsout/manifest.parquet")}
        assert rows["cats/deep/chelsea_small.png"]["output"] == (
            "memory://jobsout/cats/deep/chelsea_small.png")
        got = codecs.decode(fs.cat("/jobsout/cats/deep/chelsea_small.png"))
        src = codecs.decode((root / "cats/deep/chelsea_small.png").read_bytes())
        expected = cv2.sepFilter2D(src, -1, k := cv2.getGaussianKernel(13, 1.5), k,
                                   borderType=cv2.BORDER_REFLECT)
        np.testing.assert_array_equal(got, expected)
        assert fs.exists("/jobsout/report.html")
    finally:
        fs.rm("/jobsin", recursive=True)
        if fs.exists("/jobsout"):
            fs.rm("/jobsout", recursive=True)


def test_bad_arguments_fail_before_work(collection, tmp_path, blur_pipeline):
    root, _ = collection
    out = tmp_path / "out"
    for kwargs, field in [({"quality": 0}, "quality"), ({"format": "bmpx"}, "format"),
                          ({"timeout": -1}, "timeout"), ({"limit": 0}, "limit")]:
        with pytest.raises(UsageError) as e:
            run(blur_pipeline, str(root), str(out), progress=False, **kwargs)
        assert e.value.field == field
    with pytest.raises(UsageError, match=r"steps\[0\]\.sigma"):
        run({"steps": [{"op": "gaussian", "sigma": "abc"}]}, str(root), str(out))
    with pytest.raises(UsageError, match="measure-only"):
        run(blur_pipeline, str(root), None, manifest=str(tmp_path / "m.parquet"))
    assert not out.exists()


def test_outputs_are_decodable(collection, tmp_path, engine, blur_pipeline):
    root, _ = collection
    out = tmp_path / "out"
    run(blur_pipeline, str(root), str(out), engine=engine, progress=False, report=False,
        format="webp", quality=80, include=["*.jpg"])
    for rel, blob in output_files(out).items():
        assert rel.endswith(".webp")
        info = codecs.probe(blob)
        assert info.format.lower() == "webp"
    assert storage.list_files(str(out), recursive=True)


def test_measure_only_job_columns(collection, tmp_path, engine):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pixelmill.ops import get_op

    root, _ = collection
    manifest = tmp_path / "features.parquet"
    pipe = {"steps": [{"op": "sharpness"}, {"op": "color_histogram", "bins": 4}]}
    summary = run(pipe, str(root), None, manifest=str(manifest), engine=engine,
                  progress=False, report=False, label_from="parent")
    assert (summary.ok, summary.invalid) == (5, 2)
    table = pq.read_table(manifest)
    vec_type = table.schema.field("vec_color_histogram").type
    assert pa.types.is_list(vec_type) and vec_type.value_type == pa.float32()
    rows = {r["relpath"]: r for r in table.to_pylist()}
    image = codecs.decode((root / "coffee.jpg").read_bytes())
    want_sharp = get_op("sharpness").func(image)
    assert rows["coffee.jpg"]["sharpness"] == pytest.approx(want_sharp["sharpness"])
    want_vec = get_op("color_histogram").func(image, bins=4)
    np.testing.assert_allclose(rows["coffee.jpg"]["vec_color_histogram"], want_vec, rtol=1e-6)
    assert rows["coffee.jpg"]["output"] is None and rows["cats/chelsea.jpg"]["label"] == "cats"
    assert not any(p.suffix in (".jpg", ".png") for p in tmp_path.iterdir())


class _InterruptedEngine:
    """An engine whose user presses Ctrl-C after ``after`` units."""

    name, workers = "interrupted", 1

    def __init__(self, after: int) -> None:
        self.after = after

    def map(self, fn, units, *, timeout=None, batch_size=None):
        for i, unit in enumerate(units):
            if i == self.after:
                raise KeyboardInterrupt
            yield i, fn(unit)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("after", [0, 2])
def test_ctrl_c_says_what_was_kept(collection, tmp_path, blur_pipeline, capsys, after):
    """Interrupted before the first input finished, the job said the finished rows were kept
    in a journal for --resume: there were none, and no journal."""
    root, _ = collection
    with pytest.raises(KeyboardInterrupt):
        run(blur_pipeline, str(root), str(tmp_path / "out"), engine=_InterruptedEngine(after),
            progress=True, report=False)
    err = capsys.readouterr().err
    if after:
        assert f"interrupted after {after} of" in err and "--resume" in err
    else:
        assert "interrupted before any of the" in err and "journal" not in err
