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
        expected = cv2.GaussianBlur(src, (13, 13), 1.5, borderType=cv2.BORDER_REFLECT)
        np.testing.assert_array_equal(got, expected)
        assert fs.exists("thumbs/run1/report.html")
        again = run(blur_pipeline, "s3://photos", "s3://thumbs/run1", engine=engine,
                    storage_options=so, progress=False, report=False, resume=True)
        assert again.processed == 2 and again.ok == 5  # only the invalid inputs retried
