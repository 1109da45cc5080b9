"""Fixes from the storage and engines audit: ``--timeout`` on Spark measures the unit's own run
time, a bad ``--storage-option`` is a usage error wherever the S3 URL is, and a 0-byte object
is an "empty file" in a header-only scan on S3 as on a local disk.

Clusters and servers are real and on 127.0.0.1: Spark ``local[2]``, moto's S3 server.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pixelmill.engines import InlineEngine, UnitFailure
from tests._s3server import s3_server

pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning")

# -- A. --timeout on Spark ---------------------------------------------------------------------

#: set in a worker process by SlowStart.warm_up()
_WARMED: list[bool] = []


class SlowStart:
    """A unit function with a slow start: unpickling it in a worker takes ``start_s`` (imports, a
    model load), and its first call in a process takes ``first_call_s`` more unless ``warm_up()``
    ran there first. A unit is ``(kind, seconds)``: ``sleep`` waits, ``busy`` keeps the CPU busy
    in Python (a CPU-bound unit: the one the Spark driver's clock never saw start)."""

    def __init__(self, start_s: float = 2.0, first_call_s: float = 2.0) -> None:
        self.start_s = start_s
        self.first_call_s = first_call_s

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        time.sleep(state["start_s"])
        self.__dict__.update(state)

    def warm_up(self) -> None:
        if not _WARMED:
            time.sleep(0.5)
            _WARMED.append(True)

    def __call__(self, unit: tuple[str, float]) -> float:
        if not _WARMED:
            time.sleep(self.first_call_s)
            _WARMED.append(True)
        kind, seconds = unit
        if kind == "sleep":
            time.sleep(seconds)
        else:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
        return seconds


TIMEOUT = 1.5
UNITS = [("sleep", 0.2), ("busy", 0.2), ("sleep", 20.0), ("busy", 8.0)]
EXPECTED = {0: 0.2, 1: 0.2,
            2: UnitFailure(f"timed out after {TIMEOUT:g} s", "timeout"),
            3: UnitFailure(f"timed out after {TIMEOUT:g} s", "timeout")}


@pytest.fixture(scope="module", params=["local", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request):
    if request.param == "spark":
        pytest.importorskip("pyspark")
    from pixelmill.engines import get_engine

    with get_engine(request.param, workers=2) as eng:
        yield eng


def test_timeout_measures_the_units_own_run_time_on_every_engine(engine):
    """On Spark the clock started when the driver saw the task active: worker start-up counted
    against --timeout (a 0.26 s image failed with --timeout 1), and a CPU-bound unit was never
    seen active, so it ran on (a 2 s image was ok with --timeout 0.5). The local engine's rows
    are the reference: fast units ok after a slow start-up, slow units timed out (the job turns
    each UnitFailure into the same manifest row on every engine)."""
    started = time.monotonic()
    got = dict(engine.map(SlowStart(), UNITS, timeout=TIMEOUT))
    assert got == EXPECTED
    assert time.monotonic() - started < 30  # the 20 s and 8 s units were stopped
    assert dict(engine.map(SlowStart(0, 0), [("sleep", 0.0)])) == {0: 0.0}  # still usable


# -- B. a bad --storage-option where only OUTPUT or --manifest is on S3 -----------------------


def _pipeline(tmp_path) -> str:
    path = tmp_path / "thumb.yaml"
    path.write_text("steps:\n  - op: resize\n    long_side: 16\n    method: area\n")
    return str(path)


def _photo_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "a.png")
    return folder


def _cli_options(so: dict) -> list[str]:
    endpoint = so["client_kwargs"]["endpoint_url"]
    return ["--storage-option=key=testing", "--storage-option=secret=testing",
            f"--storage-option=endpoint_url={endpoint}"]


def test_a_bad_storage_option_is_a_usage_error_for_any_s3_url(tmp_path, capsys):
    """`--storage-option bogus=1` was exit 1 "cannot reach: TypeError: AioSession.__init__() got
    an unexpected keyword argument 'bogus'" when only OUTPUT or --manifest was on S3, exit 2
    naming the option when INPUT was."""
    from pixelmill import storage
    from pixelmill.cli import main
    from pixelmill.errors import InvalidParameterError

    folder, pipeline = _photo_folder(tmp_path), _pipeline(tmp_path)
    with s3_server(buckets=["bkt"]) as so:
        bad = [*_cli_options(so), "--storage-option", "bogus=1"]
        missing = [*_cli_options(so), "--storage-option", "use_listings_cache=false"]
        code = main(["run", pipeline, str(folder), "s3://nobucket/out", *missing, "-q"])
        assert code == 1 and "the bucket 'nobucket' does not exist" in capsys.readouterr().err
        for where in (["s3://bkt/out"],  # OUTPUT on S3
                      [str(tmp_path / "out"), "--manifest", "s3://bkt/m/manifest.parquet"],
                      ["s3://bkt/out", "--overwrite"]):
            code = main(["run", pipeline, str(folder), *where, *bad, "-q"])
            err = capsys.readouterr().err
            assert code == 2, (where, err)
            assert "--storage-option: 'bogus' is not an option of the filesystem" in err, err
            assert "Traceback" not in err and "cannot reach" not in err
        assert not (tmp_path / "out").exists()  # nothing was started

        wrong = {**so, "bogus": 1}
        for check in (lambda: storage.check_writable("s3://bkt/x", wrong),
                      lambda: storage.exists("s3://bkt/x", wrong, field="OUTPUT"),
                      lambda: storage.read_bytes("s3://bkt/x", wrong),  # learn train, upscale
                      lambda: storage.write_atomic("s3://bkt/x", b"", wrong)):
            with pytest.raises(InvalidParameterError, match="'bogus' is not an option"):
                check()
    # a store that cannot be reached is still a StorageError (exit 1) naming the field
    from pixelmill.errors import StorageError

    closed = {**so, "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"},
              "config_kwargs": {"retries": {"max_attempts": 1}}}
    with pytest.raises(StorageError, match=r"^--manifest: s3://bkt/x: cannot reach: "):
        storage.exists("s3://bkt/x", closed, field="--manifest")
    with pytest.raises(StorageError, match=r"^OUTPUT: s3://bkt/x: cannot reach: "):
        storage.check_writable("s3://bkt/x", closed)  # not "the bucket does not exist"


# -- C. a 0-byte object in a header-only scan on S3 --------------------------------------------


def test_an_empty_object_is_an_empty_file_in_every_scan_on_s3(tmp_path):
    """A header-only scan on S3 said "cannot read: The requested range is not satisfiable" for
    a 0-byte object (a ranged read of an empty object); a local disk, --verify and `run` say
    "empty file (0 bytes)"."""
    import s3fs

    from pixelmill.inventory import ScanOptions, scan, scan_file
    from pixelmill.storage import FileEntry

    folder = _photo_folder(tmp_path)
    (folder / "zero.png").write_bytes(b"")
    local = {r["relpath"]: r for r in scan(str(folder), engine=InlineEngine()).to_pylist()}
    assert local["zero.png"]["reason"] == "empty file (0 bytes)"
    with s3_server(buckets=["bkt"]) as so:
        fs = s3fs.S3FileSystem(**so)
        fs.pipe("bkt/z/zero.png", b"")
        fs.pipe("bkt/z/a.png", (folder / "a.png").read_bytes())
        for verify in (False, True):
            rows = {r["relpath"]: r for r in scan("s3://bkt/z", storage_options=so, verify=verify,
                                                  engine=InlineEngine()).to_pylist()}
            assert rows["zero.png"]["reason"] == "empty file (0 bytes)", verify
            assert rows["zero.png"]["bytes"] == 0 and not rows["zero.png"]["valid"]
            assert rows["a.png"]["valid"] and rows["a.png"]["width"] == 32
        # emptied after it was listed (the listing said 10 bytes): still an empty file
        listed = FileEntry("s3://bkt/z/zero.png", 10, "zero.png")
        row = scan_file(listed, ScanOptions(storage_options=so))
        assert row["reason"] == "empty file (0 bytes)" and row["bytes"] == 0
