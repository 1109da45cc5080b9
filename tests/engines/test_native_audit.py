"""Audit of the native APIs (pixelmill.dask, pixelmill.spark): each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.array")

import pixelmill.dask as pmd
from pixelmill.errors import InvalidParameterError, StorageError, TilingError
from pixelmill.pipeline import Pipeline
from pixelmill.records import ImageRecord


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.ascontiguousarray(np.tile(data.astronaut(), (1, 2, 1))[:300, :456])


# ---- pixelmill.dask --------------------------------------------------------------------------

@pytest.mark.parametrize(("steps", "chunks"), [
    ([{"op": "resize", "factor": 0.5}], 64),  # halo 1 is half an output pixel
    ([{"op": "resize", "factor": 0.5, "method": "nearest"}], 64),
    ([{"op": "resize", "factor": 0.5, "method": "bilinear"}], 37),  # odd chunks
    ([{"op": "resize", "factor": 0.25}], (100, 114)),  # 114 × 0.25 is no whole pixel
    ([{"op": "resize", "factor": 0.5}, {"op": "gaussian", "sigma": 5.0}], 16),  # halo 41
])
def test_dask_apply_scale_changes_equal_the_whole_image(photo, steps, chunks):
    import dask.array as da

    pipe = Pipeline.from_steps(steps)
    ch = (chunks, chunks) if isinstance(chunks, int) else chunks
    out = pmd.apply(da.from_array(photo, chunks=(*ch, 3)), pipe)
    expected = pipe(photo)
    assert out.shape == expected.shape
    got = out.compute(scheduler="sync")
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_dask_apply_image_smaller_than_the_halo(photo):
    import dask.array as da

    pipe = Pipeline.from_steps([{"op": "gaussian", "sigma": 5.0}])  # halo 20 > the image
    small = photo[:5, :7]
    out = pmd.apply(da.from_array(small, chunks=(2, 2, 3)), pipe)
    assert np.array_equal(out.compute(scheduler="sync"), pipe(small))


def test_dask_apply_refuses_what_cannot_be_exact(photo):
    import dask.array as da

    odd = da.from_array(np.ascontiguousarray(photo[:299]), chunks=(64, 64, 3))
    with pytest.raises(TilingError, match=r"steps\[0\] \(resize\).*fraction of a pixel"):
        pmd.apply(odd, [{"op": "resize", "factor": 0.5}])
    with pytest.raises(InvalidParameterError, match="halo"):
        pmd.apply(photo, [{"op": "gaussian"}], halo=-1)


@pytest.mark.parametrize("chunks", [(30,), 30.5, "64"])
def test_from_image_bad_chunks_are_a_usage_error(chunks):
    with pytest.raises(InvalidParameterError, match="chunks"):
        pmd.from_image("unused.tif", chunks=chunks)


def test_from_image_remote_errors_are_storage_errors(monkeypatch):
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-pm/scene\.tif: cannot read"):
        pmd.from_image("s3://no-such-bucket-pm/scene.tif", storage_options={"skip_instance_cache": True})


# ---- pixelmill.spark -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from pixelmill.engines.spark import SparkEngine

    with SparkEngine(workers=2) as engine:
        yield engine.session


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A colour PNG and a gray PNG."""
    cv2 = pytest.importorskip("cv2")
    from skimage import data

    d = tmp_path_factory.mktemp("audit-mixed")
    cv2.imwrite(str(d / "astro.png"), data.astronaut()[:120, :140, ::-1])
    cv2.imwrite(str(d / "camera.png"), data.camera()[:100, :130])
    return d


def _image_df(spark, records):
    from pixelmill.records import to_spark_df

    return to_spark_df(spark, records)


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
def test_spark_apply_survives_broken_image_rows(spark):
    import pixelmill.spark as pms

    ok = np.arange(8 * 9 * 3, dtype=np.uint8).reshape(8, 9, 3)
    df = _image_df(spark, [ImageRecord("x://negative", -1, 5, 3, 16, b""),  # height -1, mode 16
                           ImageRecord("x://nodata", 4, 4, 3, 16, b""),  # valid mode, no data
                           ImageRecord.from_array(ok, "x://ok")])
    pipe = Pipeline.from_steps([{"op": "gaussian"}, {"op": "sharpness"}])
    rows = {r["image"]["origin"]: r for r in pms.apply(df, pipe).collect()}
    assert rows["x://negative"]["image"]["mode"] == -1 and rows["x://negative"]["reason"]
    assert rows["x://nodata"]["image"]["mode"] == -1
    assert "0 bytes" in rows["x://nodata"]["reason"]
    local = pipe.run(ok)
    assert rows["x://ok"]["reason"] is None
    assert np.array_equal(ImageRecord.from_spark_row(rows["x://ok"]["image"]).to_array(),
                          local.image)
    assert rows["x://ok"]["sharpness"] == pytest.approx(local.measures["sharpness"], rel=1e-12)


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
def test_spark_measurements_named_by_channel_cover_gray_and_colour(spark, mixed):
    import pixelmill.spark as pms
    from pixelmill import codecs

    pipe = Pipeline.from_steps([{"op": "channel_stats"}])
    out = pms.apply(spark.read.format("image").load(str(mixed)), pipe)
    rows = {r["image"]["origin"].rsplit("/", 1)[-1]: r.asDict() for r in out.collect()}
    for name in ("astro.png", "camera.png"):
        local = pipe.run(codecs.decode((mixed / name).read_bytes())).measures
        for key, value in local.items():  # gray: mean/std, colour: mean_r ... std_b
            assert rows[name][key] == pytest.approx(value, rel=1e-12), (name, key)


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
def test_spark_apply_twice_replaces_the_measurement_columns(spark, mixed):
    import pixelmill.spark as pms

    first = pms.apply(spark.read.format("image").load(str(mixed)), [{"op": "sharpness"}])
    pipe = Pipeline.from_steps([{"op": "gaussian", "sigma": 2.0}, {"op": "sharpness"}])
    second = pms.apply(first, pipe)
    assert sorted(second.columns) == ["image", "reason", "sharpness"]
    inputs = {r["image"]["origin"]: r for r in first.collect()}
    for row in second.collect():
        image = ImageRecord.from_spark_row(inputs[row["image"]["origin"]]["image"]).to_array()
        assert row["sharpness"] == pytest.approx(pipe.run(image).measures["sharpness"],
                                                 rel=1e-12)


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
def test_spark_measure_columns_without_a_readable_sample(spark, tmp_path):
    import pixelmill.spark as pms

    for i in range(3):
        (tmp_path / f"notes{i}.txt").write_text("not an image")
    df = spark.read.format("binaryFile").load(str(tmp_path))
    out = pms.apply(df, [{"op": "sharpness"}, {"op": "color_histogram"}])
    assert {"sharpness", "color_histogram"} <= set(out.columns)
    rows = out.collect()
    assert len(rows) == 3 and all(r["reason"] and r["sharpness"] is None for r in rows)


def test_from_image_takes_a_pixel_limit_for_formats_decoded_whole(tmp_path):
    """A PNG above the default pixel limit could not be opened with pixelmill.dask at all
    (PixelLimitError, no parameter to raise it); max_pixels is now passed to the decoder."""
    import numpy as np

    import pixelmill.dask as pmd
    from pixelmill import write_image
    from pixelmill.errors import InvalidParameterError, PixelLimitError

    path = str(tmp_path / "wide.png")
    write_image(path, np.zeros((40, 60), np.uint8))
    with pytest.raises(PixelLimitError):
        pmd.from_image(path, max_pixels=100)
    assert pmd.from_image(path, max_pixels=None, chunks=16).shape == (40, 60)
    assert pmd.from_image(path, chunks=16).compute().shape == (40, 60)
    with pytest.raises(InvalidParameterError, match="max_pixels"):
        pmd.from_image(path, max_pixels="many")
