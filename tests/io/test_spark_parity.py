"""Parity with pyspark's own image data source (the independent reference for records).

On a folder with PNG, JPEG, gray, RGBA and corrupt files, pixelmill and
``spark.read.format("image").option("dropInvalid", True)`` must agree on which files can be
read and on height, width, nChannels and mode; ``data`` must be byte-identical for PNG and
within ±2 per value for JPEG (Java's JPEG decoder differs slightly from libjpeg-turbo).

Known, deliberate differences (not in the shared folder): Java reads 16-bit PNGs as 8-bit and
drops the alpha of gray+alpha PNGs, where pixelmill keeps both; Java fills a truncated JPEG or
ignores a bad PNG CRC, where pixelmill calls the file invalid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pixelmill import codecs
from pixelmill.records import OCV_TYPES, from_spark_df, record_from_bytes, to_spark_df

pytestmark = [pytest.mark.spark, pytest.mark.slow]



@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo, gray_photo) -> Path:
    root = tmp_path_factory.mktemp("parity")
    png = codecs.encode(photo, "png")
    files = {
        "rgb.png": png,
        "gray.png": codecs.encode(gray_photo, "png"),
        "rgba.png": codecs.encode(np.dstack([photo, gray_photo]), "png"),
        "rgb.jpg": codecs.encode(photo, "jpg", quality=92),
        "gray.jpg": codecs.encode(gray_photo, "jpg", quality=92),
        "text.jpg": b"not a photograph at all\n",
        "truncated.png": png[: len(png) // 2],
        "empty.png": b"",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_records_agree_with_sparks_image_data_source(spark, folder):
    df = spark.read.format("image").option("dropInvalid", True).load(str(folder))
    theirs = {os.path.basename(r.origin): r for r in from_spark_df(df)}
    ours = {p.name: record_from_bytes(p.read_bytes(), p.as_uri()) for p in sorted(folder.iterdir())}
    ours_valid = {name: r for name, r in ours.items() if r.valid}
    assert set(theirs) == set(ours_valid) == {"rgb.png", "gray.png", "rgba.png", "rgb.jpg",
                                              "gray.jpg"}
    for name, mine in ours_valid.items():
        ref = theirs[name]
        assert (mine.height, mine.width, mine.n_channels, mine.mode) == (
            ref.height, ref.width, ref.n_channels, ref.mode), name
        a = np.frombuffer(mine.data, np.uint8).astype(int)
        b = np.frombuffer(ref.data, np.uint8).astype(int)
        if name.endswith(".png"):
            assert mine.data == ref.data, name
        else:
            assert np.abs(a - b).max() <= 2, name
        # and the arrays pixelmill decodes equal the records Spark made (RGB order back)
        expected = codecs.decode((folder / name).read_bytes())
        got = ref.to_array()
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected).max() <= (0 if name.endswith(".png") else 2)


def test_invalid_rows_match_spark_without_drop_invalid(spark, folder):
    df = spark.read.format("image").load(str(folder))
    theirs = {os.path.basename(r.origin): r for r in from_spark_df(df) if not r.valid}
    for name, ref in theirs.items():
        mine = record_from_bytes((folder / name).read_bytes(), ref.origin)
        assert mine == ref, name


def test_dataframe_round_trip_and_schema(spark, folder):
    reference = spark.read.format("image").load(str(folder))
    records = [record_from_bytes(p.read_bytes(), p.as_uri()) for p in sorted(folder.iterdir())]
    df = to_spark_df(spark, records)
    assert df.schema == reference.schema
    assert from_spark_df(df) == records
    assert from_spark_df(df, drop_invalid=True) == [r for r in records if r.valid]
    from pyspark.ml.image import ImageSchema

    jvm_types = dict(ImageSchema.ocvTypes)
    assert all(OCV_TYPES[k] == v for k, v in jvm_types.items() if k in OCV_TYPES)
