"""A job from S3 to S3 (moto's server on 127.0.0.1): storage options reach the workers."""

from __future__ import annotations

import cv2
import numpy as np

from pixelmill import codecs
from pixelmill.jobs import run
from pixelmill.manifest import read_manifest
from tests._s3server import s3_server


def test_s3_to_s3_job_and_resume(collection_master, engine, blur_pipeline):
    import s3fs

    root, kinds = collection_master
    with s3_server(buckets=["photos", "thumbs"]) as so:
        fs = s3fs.S3FileSystem(**so)
        for rel in kinds:
            fs.pipe(f"photos/{rel}", (root / rel).read_bytes())
        summary = run(blur_pipeline, "s3://photos", "s3://thumbs/run1", engine=engine,
                      storage_options=so, progress=False, report=True)
        assert (summary.ok, summary.invalid, summary.failed) == (5, 2, 0)
        rows = {r["relpath"]: r for r in read_manifest("s3://thumbs/run1/manifest.parquet", so)}
        assert rows["cats/deep/chelsea_small.png"]["output"] == (
            "s3://thumbs/run1/cats/deep/chelsea_small.png")
        got = codecs.decode(fs.cat("thumbs/run1/cats/deep/chelsea_small.png"))
        src = codecs.decode((root / "cats/deep/chelsea_small.png").read_bytes())
        expected = cv2.sepFilter2D(src, -1, k := cv2.getGaussianKernel(13, 1.5), k,
                                   borderType=cv2.BORDER_REFLECT)
        np.testing.assert_array_equal(got, expected)
        assert fs.exists("thumbs/run1/report.html")
        again = run(blur_pipeline, "s3://photos", "s3://thumbs/run1", engine=engine,
                    storage_options=so, progress=False, report=False, resume=True)
        assert again.processed == 2 and again.ok == 5  # only the invalid inputs retried


def test_a_missing_bucket_or_endpoint_fails_before_any_work(collection_master, engine,
                                                             blur_pipeline, capsys):
    """A missing output bucket was found only when the manifest was written, after every
    input had been processed; an unreachable endpoint was a botocore traceback."""
    import pytest
    import s3fs

    from pixelmill.cli import main
    from pixelmill.errors import StorageError

    root, kinds = collection_master
    with s3_server(buckets=["photos"]) as so:
        fs = s3fs.S3FileSystem(**so)
        for rel in list(kinds)[:2]:
            fs.pipe(f"photos/{rel}", (root / rel).read_bytes())
        with pytest.raises(StorageError, match="the bucket 'nobucket' does not exist"):
            run(blur_pipeline, "s3://photos", "s3://nobucket/out", engine=engine,
                storage_options=so, progress=False, report=False)
        assert fs.ls("photos") and not fs.exists("nobucket")
        code = main(["scan", "s3://photos", "--storage-option", "endpoint_url=http://127.0.0.1:1",
                     "--storage-option", "config_kwargs={\"retries\": {\"max_attempts\": 1}}"])
        err = capsys.readouterr().err
        assert code == 1 and "cannot list" in err and "Traceback" not in err, err


def test_a_mistyped_storage_option_or_a_closed_endpoint_is_one_line(collection_master, engine,
                                                                    blur_pipeline, tmp_path,
                                                                    capsys):
    """`--storage-option endpoint_urll=...` was exit 1 with the client's TypeError
    (AioSession.__init__() got an unexpected keyword argument); `pixelmill report` on an S3
    manifest whose endpoint does not answer printed ~100 lines of traceback (README
    walkthrough)."""
    from pixelmill.cli import main

    root, kinds = collection_master
    with s3_server(buckets=["photos", "thumbs"]) as so:
        import s3fs

        fs = s3fs.S3FileSystem(**so)
        for rel in list(kinds)[:2]:
            fs.pipe(f"photos/{rel}", (root / rel).read_bytes())
        endpoint = so["client_kwargs"]["endpoint_url"]
        keys = ["--storage-option=key=testing", "--storage-option=secret=testing"]
        typo = [*keys, f"--storage-option=endpoint_url={endpoint}",  # loopback either way
                f"--storage-option=endpoint_urll={endpoint}"]
        for argv in (["scan", "s3://photos", *typo],
                     ["run", _pipeline_file(tmp_path), "s3://photos", "s3://thumbs/t", *typo]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "--storage-option: 'endpoint_urll' is not an option" in err, err
            assert "Traceback" not in err
        run(blur_pipeline, "s3://photos", "s3://thumbs/run", engine=engine, storage_options=so,
            progress=False, report=False)
    # the server is gone: the endpoint no longer answers
    gone = [*keys, f"--storage-option=endpoint_url={endpoint}",
            "--storage-option", "config_kwargs={\"retries\": {\"max_attempts\": 1}}"]
    code = main(["report", "s3://thumbs/run/manifest.parquet", *gone])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # an --out there: checked for an earlier output first, which was a traceback (audit)
    for argv in (["scan", str(root), "--out", "s3://thumbs/inv.parquet", "--no-progress"],):
        code = main([*argv, *gone])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err and "cannot reach" in err, (argv, err)


def _pipeline_file(tmp_path) -> str:
    path = tmp_path / "blur.yaml"
    path.write_text("steps:\n  - op: gaussian\n    sigma: 1.5\n")
    return str(path)


def test_s3_resume_refuses_a_users_file_and_ctrl_c_keeps_finished_rows(collection_master,
                                                                       blur_pipeline):
    """On s3, --resume replaced a file no run had made (exit 0), and Ctrl-C said the finished
    rows were kept in a journal that object stores do not have: --resume redid them all."""
    import pytest
    import s3fs

    from pixelmill.errors import UsageError
    from tests.jobs.test_run import _InterruptedEngine

    root, kinds = collection_master
    with s3_server(buckets=["photos", "thumbs"]) as so:
        fs = s3fs.S3FileSystem(**so)
        for rel in kinds:
            fs.pipe(f"photos/{rel}", (root / rel).read_bytes())
        fs.pipe("thumbs/user/cats/deep/chelsea_small.png", b"MY OWN FILE")
        for resume in (False, True):
            with pytest.raises(UsageError, match="no earlier run's manifest"):
                run(blur_pipeline, "s3://photos", "s3://thumbs/user", storage_options=so,
                    progress=False, report=False, resume=resume, engine="local", workers=1)
        assert fs.cat("thumbs/user/cats/deep/chelsea_small.png") == b"MY OWN FILE"

        with pytest.raises(KeyboardInterrupt):
            run(blur_pipeline, "s3://photos", "s3://thumbs/cut", engine=_InterruptedEngine(3),
                storage_options=so, progress=False, report=False)
        kept = read_manifest("s3://thumbs/cut/manifest.parquet", so)
        assert len(kept) == 3
        again = run(blur_pipeline, "s3://photos", "s3://thumbs/cut", storage_options=so,
                    progress=False, report=False, resume=True, engine="local", workers=1)
        assert again.processed == again.total - sum(r["status"] == "ok" for r in kept) < 7
