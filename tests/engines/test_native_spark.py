"""pixelmill.spark: pixelmill's decoders and pipelines on Spark DataFrames (local[2])."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyspark")
cv2 = pytest.importorskip("cv2")

import pixelmill.spark as pms  # noqa: E402
from pixelmill.errors import InvalidParameterError  # noqa: E402
from pixelmill.pipeline import Pipeline  # noqa: E402
from pixelmill.records import ImageRecord  # noqa: E402

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")]


@pytest.fixture(scope="module")
def spark():
    from pixelmill.engines.spark import SparkEngine

    with SparkEngine(workers=2) as engine:
        yield engine.session


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8-bit PNGs, a 16-bit PNG, a WebP, a CMYK JPEG and a broken file."""
    from PIL import Image
    from skimage import data

    d = tmp_path_factory.mktemp("spark-images")
    astro, coffee = data.astronaut()[:200, :260], data.coffee()[:180, :240]
    cv2.imwrite(str(d / "astro.png"), astro[..., ::-1])
    cv2.imwrite(str(d / "coffee.png"), coffee[..., ::-1])
    cv2.imwrite(str(d / "camera.png"), data.camera()[:150, :170])
    cv2.imwrite(str(d / "deep.png"), (astro.astype(np.uint16) * 257 + 3)[..., ::-1])
    Image.fromarray(coffee).save(d / "coffee.webp", lossless=True)
    Image.fromarray(astro).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return d


def _by_name(rows):
    return {r["image"]["origin"].rsplit("/", 1)[-1]: r for r in rows}


def test_read_images_matches_sparks_image_source_on_pngs(spark, folder):
    ours = _by_name(pms.read_images(spark, str(folder), glob="*.png").collect())
    theirs = _by_name(spark.read.format("image").option("pathGlobFilter", "*.png")
                      .load(str(folder)).collect())
    for name in ("astro.png", "coffee.png", "camera.png", "broken.png"):
        assert ours[name]["image"].asDict() == theirs[name]["image"].asDict(), name
    assert ours["broken.png"]["reason"]  # Spark's invalid row, plus why
    assert ours["astro.png"]["reason"] is None


def test_read_images_keeps_16_bit_webp_and_cmyk(spark, folder):
    from PIL import Image

    rows = _by_name(pms.read_images(spark, str(folder)).collect())
    deep = ImageRecord.from_spark_row(rows["deep.png"]["image"])
    assert deep.mode == 18  # CV_16UC3: Spark's own reader has no 16-bit mode
    expected = cv2.imread(str(folder / "deep.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(deep.to_array(), expected)
    webp = ImageRecord.from_spark_row(rows["coffee.webp"]["image"]).to_array()
    assert np.array_equal(webp, np.asarray(Image.open(folder / "coffee.webp").convert("RGB")))
    cmyk = ImageRecord.from_spark_row(rows["cmyk.jpg"]["image"])
    assert (cmyk.height, cmyk.width, cmyk.n_channels) == (200, 260, 3)
    assert set(rows) == {"astro.png", "coffee.png", "camera.png", "deep.png", "coffee.webp",
                         "cmyk.jpg", "broken.png"}


def test_read_images_pixel_limit_and_drop_invalid(spark, folder):
    rows = _by_name(pms.read_images(spark, str(folder), max_pixels=40_000).collect())
    assert rows["astro.png"]["image"]["mode"] == -1
    assert "pixel" in rows["astro.png"]["reason"].lower()
    assert rows["camera.png"]["reason"] is None  # 150 x 170 = 25,500 pixels
    kept = pms.read_images(spark, str(folder), max_pixels=40_000, drop_invalid=True).collect()
    assert set(_by_name(kept)) == {"camera.png"}


def test_apply_on_the_image_source_equals_the_local_pipeline(spark, folder):
    steps = [{"op": "gaussian", "sigma": 1.5}, {"op": "sharpness"}, {"op": "color_histogram"}]
    pipe = Pipeline.from_steps(steps)
    df = spark.read.format("image").load(str(folder / "*.png"))
    out = pms.apply(df, steps)
    assert {"image", "reason", "sharpness", "color_histogram"} <= set(out.columns)
    inputs = _by_name(df.collect())
    rows = _by_name(out.collect())
    for name in ("astro.png", "coffee.png", "deep.png"):
        local = pipe.run(ImageRecord.from_spark_row(inputs[name]["image"]).to_array())
        got = ImageRecord.from_spark_row(rows[name]["image"])
        assert np.array_equal(got.to_array(), local.image), name
        assert rows[name]["sharpness"] == pytest.approx(local.measures["sharpness"], rel=1e-12)
        np.testing.assert_array_equal(np.float32(rows[name]["color_histogram"]),
                                      local.vectors["color_histogram"])
    assert rows["broken.png"]["image"]["mode"] == -1 and rows["broken.png"]["reason"]


def test_apply_on_binary_files_decodes_with_pixelmill(spark, folder):
    from pixelmill import codecs

    pipe = Pipeline.from_steps([{"op": "resize", "factor": 0.5}])
    df = spark.read.format("binaryFile").load(str(folder))
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in pms.apply(df, pipe).collect()}
    assert {"path", "length", "modificationTime"} <= set(next(iter(rows.values())).asDict())
    for name in ("coffee.webp", "cmyk.jpg", "camera.png"):
        local = pipe(codecs.decode((folder / name).read_bytes()))
        assert np.array_equal(ImageRecord.from_spark_row(rows[name]["image"]).to_array(), local)
    assert rows["broken.png"]["reason"] and rows["broken.png"]["image"]["mode"] == -1


def test_apply_refuses_bad_input_before_any_work(spark, folder):
    with pytest.raises(InvalidParameterError, match=r"steps\[0\]\.sigma"):
        pms.apply(spark.read.format("image").load(str(folder)), [{"op": "gaussian", "sigma": -1}])
    with pytest.raises(InvalidParameterError, match="df: expected an 'image' column"):
        pms.apply(spark.range(3), [{"op": "gaussian"}])
