"""Jobs: defects found by an audit — --quality over lossless outputs, --timeout bounds,
file:// spellings on --resume, unreachable object stores, memory:// stores, unlisted folders."""

from __future__ import annotations

import os

import fsspec
import pytest

from pixelmill.cli import main
from pixelmill.errors import ExitCode, InvalidParameterError, StorageError, UsageError
from pixelmill.jobs import plan_units, run
from pixelmill.manifest import read_manifest


def _pipe(tmp_path, text="steps:\n  - op: gaussian\n    sigma: 1.5\n"):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return str(p)


# ---- --quality without --format -----------------------------------------------------------------
def test_quality_applies_to_lossy_outputs_and_lossless_ones_are_written_as_usual(
        collection, tmp_path, engine, blur_pipeline):
    """Every PNG input failed at its encode ("png is lossless and takes no quality")."""
    root, _ = collection
    out = tmp_path / "out"
    s = run(blur_pipeline, str(root), str(out), engine=engine, quality=50, progress=False,
            report=False, exclude=["not_an_image.jpg", "empty.png"])
    assert (s.ok, s.invalid, s.failed) == (5, 0, 0), s.reasons
    rows = {r["relpath"]: r for r in read_manifest(str(out / "manifest.parquet"))}
    assert rows["camera.png"]["encoding"] == "png"
    assert rows["coffee.jpg"]["encoding"] == "jpg q=50"
    # the same settings resume cleanly
    again = run(blur_pipeline, str(root), str(out), engine=engine, quality=50, progress=False,
                report=False, exclude=["not_an_image.jpg", "empty.png"], resume=True)
    assert again.processed == 0 and again.ok == 5


def test_quality_that_no_output_takes_is_refused_before_work(collection, tmp_path, capsys):
    root, _ = collection
    out = tmp_path / "out"
    with pytest.raises(InvalidParameterError) as e:
        run({"steps": []}, str(root), str(out), quality=50, include=["*.png"], progress=False)
    assert e.value.field == "quality" and "png" in str(e.value)
    code = main(["run", _pipe(tmp_path), str(root), str(out), "--quality", "50",
                 "--glob", "*.png"])
    assert code == ExitCode.USAGE
    assert "--quality" in capsys.readouterr().err
    assert not out.exists()


# ---- --timeout and --tile-threshold bounds ---------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "1e10"])
def test_timeout_must_be_finite_and_waitable(collection, tmp_path, capsys, value):
    """``--timeout inf`` was an OverflowError traceback after the workers had started."""
    root, _ = collection
    out = tmp_path / "out"
    code = main(["run", _pipe(tmp_path), str(root), str(out), "--timeout", value])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and "--timeout" in err and "Traceback" not in err, err
    assert not out.exists()


def test_tile_threshold_names_the_flag(collection, tmp_path, capsys):
    root, _ = collection
    code = main(["run", _pipe(tmp_path), str(root), str(tmp_path / "out"), "--tile-threshold",
                 "0"])
    assert code == ExitCode.USAGE
    assert "error: --tile-threshold: expected" in capsys.readouterr().err


def test_timeout_and_tile_threshold_take_any_real_number(collection, tmp_path, blur_pipeline):
    """``timeout=np.int64(60)`` and ``tile_threshold=1e9`` (the Python API) were refused
    ("expected a number of pixels >= 1, got 1000000000.0") once the checks asked for
    ``int | float`` and ``int``; what they refuse is what is not a number, or out of range."""
    import numpy as np

    from pixelmill.jobs._run import check_timeout

    check_timeout(np.int64(60))
    check_timeout(np.float32(2.5))
    root, _ = collection
    s = run(blur_pipeline, str(root), str(tmp_path / "out"), engine="local", workers=1,
            tile_threshold=1e9, timeout=np.int64(60), include=["camera.png"], progress=False,
            report=False)
    assert (s.ok, s.failed) == (1, 0), s.reasons
    for bad in ("1000", float("nan"), 0.5, True):
        with pytest.raises(InvalidParameterError, match="--tile-threshold"):
            run(blur_pipeline, str(root), str(tmp_path / "bad"), tile_threshold=bad,
                progress=False)
    assert not (tmp_path / "bad").exists()


# ---- file:// and plain paths are one output ------------------------------------------------------
def test_file_url_and_plain_path_are_the_same_output(collection, tmp_path, engine, blur_pipeline):
    root, _ = collection
    out = tmp_path / "out"
    first = run(blur_pipeline, f"file://{root}", f"file://{out}", engine=engine, limit=3,
                progress=False, report=False)
    assert first.output == str(out) and first.manifest == str(out / "manifest.parquet")
    rows = read_manifest(str(out / "manifest.parquet"))
    assert all(r["output"].startswith(str(out) + "/") for r in rows if r["output"])
    again = run(blur_pipeline, str(root), str(out), engine=engine, resume=True, progress=False,
                report=False)
    assert again.ok + again.invalid == 7 and again.skipped == 3


# ---- an unreachable object store -------------------------------------------------------------------
def test_unreachable_output_store_is_a_clear_error(collection, tmp_path, capsys, monkeypatch):
    """A botocore traceback (from the check for an earlier run's manifest)."""
    import socket

    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "dummy")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dummy")
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root, _ = collection
    code = main(["run", _pipe(tmp_path), str(root), "s3://bucket/x", "--quiet",
                 "--storage-option", f"endpoint_url=http://127.0.0.1:{port}",
                 "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}'])
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR, err
    assert err.startswith("error: s3://bucket/x/manifest.parquet: cannot reach:"), err
    assert "Traceback" not in err


def test_storage_exists_maps_client_errors(monkeypatch):
    from pixelmill import storage

    class Broken:
        protocol = "s3"

        def exists(self, path):
            raise RuntimeError("no endpoint")

    monkeypatch.setattr(storage, "get_fs", lambda url, so=None: (Broken(), "b/k"))
    with pytest.raises(StorageError, match="OUTPUT: s3://b/k: cannot reach: RuntimeError"):
        storage.exists("s3://b/k", field="OUTPUT")


# ---- memory:// stores -----------------------------------------------------------------------------
def test_memory_store_with_a_timeout_is_refused(collection_master, blur_pipeline):
    """A memory:// job runs in-process (tests/jobs/test_run.py::test_memory_input_and_output),
    where no per-item timeout can stop a stuck item: --timeout is refused up front."""
    root, _ = collection_master
    fs = fsspec.filesystem("memory")
    fs.pipe("/audit-in/a.png", (root / "camera.png").read_bytes())
    try:
        with pytest.raises(InvalidParameterError, match="--timeout"):
            run(blur_pipeline, "memory://audit-in", "memory://audit-out2", engine="local",
                timeout=5, progress=False)
        assert not fs.exists("/audit-out2")
    finally:
        fs.rm("/audit-in", recursive=True)


@pytest.mark.parametrize("kind", ["dask", "spark"])
def test_memory_store_is_refused_on_a_cluster_engine(collection_master, tmp_path, kind,
                                                     blur_pipeline):
    root, _ = collection_master
    fs = fsspec.filesystem("memory")
    fs.pipe("/audit-dask/a.png", (root / "camera.png").read_bytes())
    try:
        with pytest.raises(UsageError, match=f"--engine {kind}: memory://audit-dask"):
            run(blur_pipeline, "memory://audit-dask", str(tmp_path / "out"), engine=kind,
                progress=False)
        with pytest.raises(UsageError, match="memory://"):
            run(blur_pipeline, str(root), "memory://audit-dask-out", engine=kind,
                progress=False)
    finally:
        fs.rm("/audit-dask", recursive=True)
    assert not (tmp_path / "out").exists()


# ---- a sub-folder that cannot be listed ----------------------------------------------------------
@pytest.fixture
def locked_folder(collection, monkeypatch):
    """``cats/deep`` of the collection raises PermissionError when listed (as chmod 000 does
    for a user without CAP_DAC_OVERRIDE; the tests run as root, so it is simulated)."""
    root, _ = collection
    locked = str(root / "cats" / "deep")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return root, locked


def test_an_unlisted_folder_is_a_failed_row(locked_folder, tmp_path, engine, blur_pipeline):
    """It was skipped silently: its images never appeared in the manifest, exit 0."""
    root, locked = locked_folder
    units = plan_units(str(root), None)
    assert [(u.relpath, u.error) for u in units if u.error] == [
        ("cats/deep", "cannot list folder: Permission denied")]
    out = tmp_path / "out"
    s = run(blur_pipeline, str(root), str(out), engine=engine, progress=False, report=True,
            exclude=["not_an_image.jpg", "empty.png"])
    assert (s.total, s.ok, s.failed) == (5, 4, 1)
    assert s.exit_code == ExitCode.PARTIAL
    assert s.reasons == {locked: "cannot list folder: Permission denied"}
    rows = {r["key"]: r for r in read_manifest(str(out / "manifest.parquet"))}
    assert rows[locked]["status"] == "failed" and rows[locked]["relpath"] == "cats/deep"


def test_an_unlisted_folder_an_exclude_pattern_covers_is_no_failed_row(locked_folder):
    """`--exclude 'cats/deep/*'` says none of its files is wanted: nothing is lost by not
    listing it (it used to be a failed row all the same); a pattern that covers only some
    files under it (`*.png`) leaves it a failed row."""
    root, _ = locked_folder
    for pattern in ("cats/deep/*", "cats/*"):
        assert not [u for u in plan_units(str(root), None, exclude=[pattern]) if u.error], pattern
    for pattern in ("*.png", "cats/deep/a*", "dogs/*"):
        assert [u.relpath for u in plan_units(str(root), None, exclude=[pattern]) if u.error] == [
            "cats/deep"], pattern


def test_limit_counts_unlisted_folders_after_the_files(locked_folder):
    """`--limit 1` planned the first file and the failed folder row (2 inputs, exit PARTIAL)."""
    root, _ = locked_folder
    every = plan_units(str(root), None)
    files = [u for u in every if not u.error]
    assert len(plan_units(str(root), None, limit=1)) == 1
    limited = plan_units(str(root), None, limit=len(files) + 1)
    assert [u.relpath for u in limited if u.error] == ["cats/deep"] and len(limited) == len(every)


def test_resume_drops_the_row_of_a_folder_that_can_now_be_listed(locked_folder, tmp_path, engine,
                                                                  monkeypatch, blur_pipeline):
    """Its files are processed on --resume, but its failed row stayed in the manifest and the
    report beside their ok rows (the summary, counted from the plan, did not show it)."""
    root, locked = locked_folder
    out = tmp_path / "out"
    first = run(blur_pipeline, str(root), str(out), engine=engine, progress=False,
                report=False, exclude=["not_an_image.jpg", "empty.png"])
    assert first.failed == 1
    monkeypatch.undo()  # the folder can be listed now
    again = run(blur_pipeline, str(root), str(out), engine=engine, progress=False,
                report=False, exclude=["not_an_image.jpg", "empty.png"], resume=True)
    assert (again.ok, again.failed) == (5, 0)
    rows = read_manifest(str(out / "manifest.parquet"))
    assert locked not in {r["key"] for r in rows}
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 5


def test_an_unlisted_folder_no_include_pattern_can_reach_is_no_failed_row(locked_folder):
    """`--include 'people/*'` can match no file under `cats/deep`: nothing wanted is lost by
    not listing it (it used to be a failed row all the same); a pattern that may match a file
    under it (a bare name pattern, one whose literal start leads into it or stops above it)
    leaves it a failed row."""
    root, _ = locked_folder

    def failed(*patterns: str) -> list[str]:
        units = plan_units(str(root), None, include=["people/*", *patterns])
        assert "people/astronaut.jpg" in [u.relpath for u in units if not u.error]
        return [u.relpath for u in units if u.error]

    for pattern in ("cats/c*.jpg", "cats/deeper/*", "cat/*", "dogs/deep/*"):
        assert failed(pattern) == [], pattern
    for pattern in ("*.png", "chelsea_small.png", "cats/*", "cats/deep/*", "cats/deep/x/*.png",
                    "c*/deep/*", "*/deep/*", "cats/de?p/*"):
        assert failed(pattern) == ["cats/deep"], pattern


def test_an_unlisted_folder_alone_is_not_no_input(locked_folder, tmp_path, engine, capsys):
    root, _ = locked_folder
    with pytest.raises(SystemExit) as e:  # PARTIAL leaves the command as SystemExit
        main(["run", _pipe(tmp_path), str(root / "cats"), str(tmp_path / "out"), "--quiet",
              "--glob", "*.png"])
    assert e.value.code == ExitCode.PARTIAL, capsys.readouterr().err


def test_an_unlisted_folder_warns_where_no_row_can_say_it(locked_folder, capsys):
    from pixelmill import storage

    root, locked = locked_folder
    entries = storage.list_files(str(root), recursive=True)
    assert "cats/deep/chelsea_small.png" not in {e.relpath for e in entries}
    err = capsys.readouterr().err
    assert f"warning: {locked}: cannot list folder: Permission denied" in err
