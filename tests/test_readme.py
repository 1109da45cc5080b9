"""The README's Python examples run as written, and do what their comments say.

Every fenced ``python`` block of README.md is read from the README when the test runs (so an
edit of the README is checked) and executed for real, in a fresh temporary folder
(``monkeypatch.chdir(tmp_path)``), after a small prelude that creates what the block names:
``photos/`` (real photographs as small JPEGs, ``photos/cat.jpg`` among them, some in label
folders), the pipeline files the README itself defines (``thumb.yaml``, ``sharpen.yaml``, the
``name: thumbnail`` file as ``thumbnail.yaml``, ``features.yaml`` from its ``cat > features.yaml``
here-document), ``scene.tif``, and the free variables of a block (``image``, ``hr``, ``frames``,
``data``, ``spark``, ``train_images`` ...). Each block is identified by a text it holds (see
``RUNNERS``); a README block no runner claims, or a runner whose block is gone, fails
:func:`test_every_python_block_is_run`. The block is compiled under README.md's name with its
README line numbers, so a traceback points at the README line. The value of every expression
statement (``pipe.halo, pipe.scale, pipe.tileable``) is recorded so the checks can
hold it to the README's comment.

``s3://bucket/...`` runs unchanged against a loopback moto S3 server
(:func:`tests._s3server.s3_server`): the environment points botocore at it
(``AWS_ENDPOINT_URL``, moto's dummy credentials) and the bucket ``bucket`` is public-read, so
``storage_options={"anon": True}`` reads it as it would a public bucket and ``{"anon": False}``
uses the credentials. The engine blocks run on real local clusters: ``DaskEngine(workers=4)``
starts its own local cluster as written; ``SparkEngine("local[4]", ...)``,
``learn.predict(..., engine="spark")`` and the ``spark`` of the ``pixelmill.spark`` block all use
one module-wide local Spark session (``SparkEngine(workers=2).session``, as
tests/engines/test_native_spark.py makes it): a SparkEngine joins an active session, which its
docstring documents, so only one JVM starts.

Textual substitutions (each must match, or the test fails naming it):

- ``pixelmill.spark`` block: ``"s3a://bucket/photos/"`` -> the absolute path of the local
  ``photos/`` folder (Spark's S3A connector is not installed here; Spark resolves relative paths
  against the JVM's folder, not the test's, hence absolute), and ``"/data/scans"`` -> the
  absolute path of a local ``scans/`` folder.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests._readme import (
    PHOTOS,
    README,
    Block,
    Runner,
    block_holding,
    count_maps,
    expected_labels,
    fenced_blocks,
    make_photos,
    photo,
    substitute,
    write_readme_files,
    write_tiff,
)

# ---------------------------------------------------------------------------------------------
# Reading and running README blocks


def readme_blocks() -> list[Block]:
    return fenced_blocks(README.read_text(encoding="utf-8"), "python")


def run_block(block: Block, namespace: dict[str, Any], code: str | None = None
              ) -> dict[str, list[Any]]:
    """Execute a block in ``namespace``; return every expression statement's values by its text.

    The code is compiled as README.md with the block's own line numbers. Each expression
    statement ``EXPR`` (also inside ``with`` or ``for`` bodies) becomes
    ``__readme_record__("EXPR", EXPR)``; the returned dict maps the expression's text
    (whitespace collapsed) to the values it had, in order.
    """
    source = "\n" * (block.line - 1) + (block.code if code is None else code)
    tree = ast.parse(source, filename=str(README))
    values: dict[str, list[Any]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr):
            text = " ".join(ast.get_source_segment(source, node.value).split())
            node.value = ast.Call(func=ast.Name("__readme_record__", ast.Load()),
                                  args=[ast.Constant(text), node.value], keywords=[])
    ast.fix_missing_locations(tree)
    namespace["__readme_record__"] = lambda text, value: values.setdefault(text, []).append(value)
    exec(compile(tree, str(README), "exec"), namespace)  # the README's own code
    return values


def value(values: dict[str, list[Any]], text: str, index: int = -1) -> Any:
    """The value the README expression ``text`` had (its last, or ``index``-th, evaluation)."""
    assert text in values, f"the README no longer has the expression {text!r}: {sorted(values)}"
    return values[text][index]


@dataclass
class PublicBucket:
    """The bucket ``bucket``: ``put`` writes a public-read object; ``fs`` sees everything."""

    fs: Any

    def put(self, key: str, payload: bytes) -> None:
        self.fs.pipe(f"bucket/{key}", payload)
        self.fs.chmod(f"bucket/{key}", "public-read")


@pytest.fixture
def s3_bucket(monkeypatch):
    """A public-read bucket ``bucket`` on a loopback moto server that ``s3://`` URLs reach
    without storage options (the environment names the endpoint and credentials)."""
    pytest.importorskip("s3fs")
    import s3fs

    from tests._s3server import s3_server

    with s3_server() as options:  # sets (and restores) moto's dummy AWS_* credentials
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["client_kwargs"]["endpoint_url"])
        s3fs.S3FileSystem.clear_instance_cache()  # cached clients know an earlier endpoint
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        fs.mkdir("bucket", acl="public-read")
        # the redirection must hold, or a README URL would go to the real AWS
        assert s3fs.S3FileSystem(skip_instance_cache=True).ls("bucket") == []
        yield PublicBucket(fs)
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def spark():
    """One local Spark session for the module's Spark blocks (engines join it)."""
    pytest.importorskip("pyspark")
    from pixelmill.engines.spark import SparkEngine

    with SparkEngine(workers=2) as engine:
        yield engine.session


# ---------------------------------------------------------------------------------------------
# One runner per README block: prelude, run, checks


def run_at_a_glance(block: Block, request) -> None:
    """The README's "Python API at a glance": scan (S3), read, load_pipeline, run, run_tiled."""
    import tifffile

    import pixelmill

    s3 = request.getfixturevalue("s3_bucket")
    for rel, payload in make_photos().items():
        s3.put(f"photos/{rel}", payload)
    scene = photo("astronaut", (300, 260))
    write_tiff("scene.tif", scene)

    ns: dict[str, Any] = {}
    run_block(block, ns)

    table = ns["table"]
    assert isinstance(table, pa.Table) and table.num_rows == len(PHOTOS)
    assert all(u.startswith("s3://bucket/photos/") for u in table.column("uri").to_pylist())
    labels = table.column("label").to_pylist()
    assert {k: labels.count(k) for k in set(labels)} == expected_labels()
    image = ns["image"]
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8  # H×W×C
    summary = ns["summary"]
    assert (summary.ok, summary.invalid, summary.failed, summary.exit_code) == (len(PHOTOS), 0, 0, 0)
    thumbs = sorted(p for p in Path("thumbs").rglob("*.jpg"))
    assert len(thumbs) == len(PHOTOS)
    assert all(max(pixelmill.read_image(str(p)).shape[:2]) == 512 for p in thumbs)
    # a tiled BigTIFF equal to the pipeline on the whole image
    with tifffile.TiffFile("scene-sharp.tif") as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled
        sharp = tif.asarray()
    assert np.array_equal(sharp, ns["sharpen"].run(scene).image)


def run_io_api(block: Block, request) -> None:
    """Images and I/O: scan with verify and anon options, read/reduce/write, iter_images, probe."""
    import dataclasses

    from PIL import Image

    import pixelmill

    capsys = request.getfixturevalue("capsys")  # before the block prints
    s3 = request.getfixturevalue("s3_bucket")
    photos = make_photos()
    for rel, payload in photos.items():
        s3.put(f"photos/{rel}", payload)

    ns: dict[str, Any] = {"data": photos["cat.jpg"]}
    values = run_block(block, ns)

    table = ns["table"]
    assert isinstance(table, pa.Table) and table.num_rows == len(PHOTOS)
    assert all(table.column("valid").to_pylist())  # verify=True decoded every file
    by_label = value(values, 'table.to_pandas().groupby("label").size()')
    assert by_label.to_dict() == {k: n for k, n in expected_labels().items() if k is not None}
    img, small = ns["img"], ns["small"]
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    with Image.open("photos/cat.jpg") as pil:  # RGB order: Pillow's decode of the same file
        assert np.abs(img.astype(int) - np.asarray(pil.convert("RGB"), dtype=int)).mean() < 2
    assert small.shape == (30, 40, 3)  # DCT-domain 1/4 size
    assert np.array_equal(pixelmill.read_image("out/cat.png"), img)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(PHOTOS)
    assert any(line.endswith("cats (96, 120, 3)") for line in printed), printed
    info = value(values, "codecs.probe(data)")
    comment = "format, width, height, channels, bit_depth, mode, pages, orientation"
    assert [f.name for f in dataclasses.fields(info)][:8] == comment.split(", ")
    assert (info.format, info.width, info.height, info.channels, info.bit_depth) == (
        "jpg", 160, 120, 3, 8)


def run_pipeline_api(block: Block, request) -> None:
    """Pipelines: load_pipeline(file), Pipeline.from_steps, halo/scale/tileable, run."""
    write_readme_files("thumbnail.yaml")
    image = photo("astronaut", (100, 80))
    ns: dict[str, Any] = {"image": image}
    values = run_block(block, ns)

    assert value(values, "pipe.halo, pipe.scale, pipe.tileable") == (9.0, 0.5, True)
    result = ns["result"]
    assert result.image.shape == (40, 50, 3)
    for field in ("measures", "vectors", "timings"):
        assert hasattr(result, field), field
    fingerprint = value(values, "pipe.fingerprint")
    assert isinstance(fingerprint, str) and len(fingerprint) >= 16


def run_ops_api(block: Block, request) -> None:
    """Ops: get_op validates then calls; the plain function gives the same array."""
    from pixelmill.errors import InvalidParameterError

    image = photo("coffee", (90, 70))
    ns: dict[str, Any] = {"image": image}
    run_block(block, ns)

    blur = ns["blur"]
    assert "sigma" in blur.params and blur.doc
    assert blur.halo({"sigma": 2.0}) > 0 and blur.scale({"sigma": 2.0}) == 1.0
    with pytest.raises(InvalidParameterError, match="sigma"):  # "validates the parameters"
        blur(image, sigma="abc")
    assert np.array_equal(blur(image, sigma=2.0), ns["out"])
    assert ns["out"].shape == image.shape and not np.array_equal(ns["out"], image)
    assert ns["registry"]()["gaussian"] == blur


def run_jobs_api(block: Block, request) -> None:
    """Batch jobs: run a pipeline file S3 -> S3 with every option; a measure-only run."""
    from pixelmill.manifest import read_manifest

    s3 = request.getfixturevalue("s3_bucket")
    for rel, payload in make_photos().items():
        s3.put(f"photos/{rel}", payload)
    write_readme_files("thumb.yaml")
    ns: dict[str, Any] = {}
    values = run_block(block, ns)

    ok, invalid, failed, images_per_s, exit_code = value(
        values, "summary.ok, summary.invalid, summary.failed, summary.images_per_s, "
                "summary.exit_code")
    assert (ok, invalid, failed, exit_code) == (len(PHOTOS), 0, 0, 0) and images_per_s > 0
    manifest, report = value(values, "summary.manifest, summary.report")
    assert s3.fs.exists(manifest) and s3.fs.exists(report)
    thumbs = [k for k in s3.fs.find("bucket/thumbs") if k.endswith(".jpg")]
    assert len(thumbs) == len(PHOTOS)
    rows = read_manifest(manifest)
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == len(PHOTOS)
    # measure-only: nothing written but the manifest (and its report)
    measured = value(values, 'pixelmill.run({"steps": [{"op": "color_histogram"}]}, "photos/", '
                             'None, manifest="features.parquet", label_from="parent")')
    assert measured.exit_code == 0 and measured.ok == len(PHOTOS)
    rows = ns["read_manifest"]("features.parquet")
    labels = [r["label"] for r in rows]
    assert {k: labels.count(k) for k in set(labels)} == expected_labels()
    assert all(r["output"] is None for r in rows)
    assert not [p for p in Path(".").rglob("*.jpg") if p.parts[0] != "photos"]


def run_tiled_api(block: Block, request) -> None:
    """Tiled jobs: run_tiled from S3 with a pyramid; process_array_tiled == whole result."""
    import tifffile

    from pixelmill.pipeline import load_pipeline

    capsys = request.getfixturevalue("capsys")  # before the block prints
    s3 = request.getfixturevalue("s3_bucket")
    write_readme_files("sharpen.yaml")
    slide = photo("astronaut", (330, 290))
    write_tiff("slide.tif", slide)
    s3.put("slide.tif", Path("slide.tif").read_bytes())
    image = photo("coffee", (700, 600))  # > 512: several tiles
    ns: dict[str, Any] = {"image": image}
    run_block(block, ns)

    summary = ns["summary"]
    assert summary.status == "ok" and summary.tiles >= 1 and summary.peak_rss > 0
    printed = capsys.readouterr().out.split()
    assert printed[:3] == ["ok", str(summary.tiles), str(summary.tile)]
    with tifffile.TiffFile("out/sharpened.tif") as tif:
        assert len(tif.series[0].levels) > 1  # pyramid=True
        sharp = tif.series[0].levels[0].asarray()
    assert np.array_equal(sharp, load_pipeline("sharpen.yaml").run(slide).image)
    whole = load_pipeline([{"op": "median", "size": 5}]).run(image).image
    assert np.array_equal(ns["out"], whole)  # "== whole result"


def run_sr_api(block: Block, request) -> None:
    """Super-resolution: MATLAB bicubic, EDSR whole and tiled (same result), PSNR, fusion."""
    import pixelmill.sr as sr

    hr = photo("astronaut", (48, 40))
    shifts = [(0, 0), (1, 0), (0, 1), (1, 1)]  # HR pixels
    big = photo("astronaut", (66, 66))
    frames = [sr.imresize(np.ascontiguousarray(big[dy:dy + 64, dx:dx + 64]), 1 / 2)
              for dy, dx in shifts]
    ns: dict[str, Any] = {"hr": hr, "frames": frames}
    values = run_block(block, ns)

    assert ns["lr"].shape == (10, 12, 3)
    assert sr.load_model("edsr", 4) is ns["model"]  # "cached per process"
    whole = sr.upscale_image(ns["lr"], ns["model"], 4)
    assert whole.shape == hr.shape
    np.testing.assert_array_equal(ns["out"], whole)  # "batched tiles, same result"
    score = value(values, "psnr(hr, out, data_range=255, crop_border=4, y_channel=True)")
    assert math.isfinite(score) and score > 15
    fused, found = ns["fused"], ns["shifts"]
    assert fused.shape == (64, 64, 3) and fused.dtype == np.uint8
    assert np.asarray(found).shape == (len(frames), 2)


def run_engine_api(block: Block, request) -> None:
    """Engines opened once and passed to jobs: a Dask local cluster, a Spark session."""
    from pixelmill.engines.dask import DaskEngine
    from pixelmill.engines.spark import SparkEngine

    pytest.importorskip("distributed")
    request.getfixturevalue("spark")
    monkeypatch = request.getfixturevalue("monkeypatch")
    on_dask, on_spark = count_maps(monkeypatch, DaskEngine), count_maps(monkeypatch, SparkEngine)
    make_photos()
    write_readme_files("thumb.yaml")
    ns: dict[str, Any] = {}
    values = run_block(block, ns)

    assert on_dask["units"] >= len(PHOTOS) and on_spark["units"] >= len(PHOTOS)
    for engine, out in (("dask", "thumbs"), ("spark", "thumbs-spark")):
        summary = value(values, f'pixelmill.run("thumb.yaml", "photos/", "{out}/", engine=engine)')
        assert (summary.ok, summary.exit_code) == (len(PHOTOS), 0), engine
        assert len(list(Path(out).rglob("*.jpg"))) == len(PHOTOS), engine


def run_spark_api(block: Block, request) -> None:
    """pixelmill.spark: read_images + apply on DataFrames; apply on a binaryFile DataFrame."""
    spark = request.getfixturevalue("spark")
    make_photos()
    make_photos("scans", flat=True)  # Spark's binaryFile source does not recurse by default
    Path("pipeline.yaml").write_text("steps:\n  - op: resize\n    long_side: 64\n"
                                     "  - op: sharpness\n", encoding="utf-8")
    code = substitute(block.code, '"s3a://bucket/photos/"', repr(str(Path("photos").resolve())))
    code = substitute(code, '"/data/scans"', repr(str(Path("scans").resolve())))
    ns: dict[str, Any] = {"spark": spark}
    values = run_block(block, ns, code)

    rows = ns["out"].collect()
    assert len(rows) == len(PHOTOS)
    for row in rows:
        assert row["reason"] is None
        assert max(row["image"]["width"], row["image"]["height"]) == 512
        assert row["sharpness"] > 0 and len(row["hog"]) > 0
    scans = value(values, 'pms.apply(spark.read.format("binaryFile").load(' +
                  repr(str(Path("scans").resolve())) + '), "pipeline.yaml")').collect()
    assert len(scans) == len(PHOTOS)
    assert all(r["reason"] is None and max(r["image"]["width"], r["image"]["height"]) == 64
               for r in scans)


def run_dask_api(block: Block, request) -> None:
    """pixelmill.dask: a lazy array from S3, the pipeline applied per chunk, written as Zarr."""
    import dask.array as da
    import zarr

    from pixelmill.pipeline import load_pipeline

    s3 = request.getfixturevalue("s3_bucket")
    scene = photo("astronaut", (300, 260))
    write_tiff("scene.tif", scene)
    s3.put("scene.tif", Path("scene.tif").read_bytes())
    ns: dict[str, Any] = {}
    run_block(block, ns)

    assert isinstance(ns["scene"], da.Array) and ns["scene"].shape == scene.shape  # lazy
    written = zarr.open_array(store="s3://bucket/scene-smooth.zarr", mode="r")[...]
    whole = load_pipeline([{"op": "median", "size": 5}, {"op": "gaussian", "sigma": 2}])
    assert np.array_equal(written, whole.run(scene).image)


def run_learn_api(block: Block, request) -> None:
    """Learning: extract, train, evaluate, predict on Spark, index and query, a small CNN."""
    import shutil

    from threadpoolctl import threadpool_limits

    from pixelmill.engines.spark import SparkEngine
    from pixelmill.learn.datasets import color_classes, write_digits
    from pixelmill.manifest import read_manifest

    request.getfixturevalue("spark")
    on_spark = count_maps(request.getfixturevalue("monkeypatch"), SparkEngine)
    write_readme_files("features.yaml")
    paths = write_digits("digits", limit=150)
    Path("new").mkdir()
    for p in paths[:5]:
        shutil.copy(p, Path("new", Path(p).name))
    shutil.copy(paths[7], "q.png")
    images, labels = color_classes(8, size=32, seed=3)
    ns: dict[str, Any] = {"train_images": images[:30], "train_labels": labels[:30],
                          "val_images": images[30:], "val_labels": labels[30:]}
    with threadpool_limits(1):
        values = run_block(block, ns)

    fs = ns["fs"]
    assert len(fs.X) == len(fs.labels) == len(fs.split) == len(fs.uris) == 150
    ev = ns["ev"]
    assert 0.5 < ev.accuracy <= 1 and np.asarray(ev.confusion).shape == (10, 10)
    assert Path("report.html").is_file()
    predicted = read_manifest("predictions.parquet")
    assert len(predicted) == 5 and {r["status"] for r in predicted} == {"ok"}
    assert on_spark["units"] >= 5  # engine="spark": the predictions ran as Spark tasks
    hits = ns["hits"]
    assert len(hits) == 10 and hits[0]["distance"] == pytest.approx(0, abs=1e-6)
    assert value(values, "learn.evaluate_index(index, k=10)").keys() >= {"recall@10", "mAP@10"}
    assert ns["net"] is not None


# ---------------------------------------------------------------------------------------------
# The tests


RUNNERS = [
    Runner("api-at-a-glance", "pixelmill.run_tiled(sharpen,", run_at_a_glance),
    Runner("io", "pixelmill.iter_images(", run_io_api),
    Runner("pipeline", "Pipeline.from_steps(", run_pipeline_api),
    Runner("ops", "from pixelmill.ops import get_op", run_ops_api),
    Runner("jobs", "summary.images_per_s", run_jobs_api),
    Runner("tiled", "process_array_tiled(", run_tiled_api),
    Runner("sr", "import pixelmill.sr as sr", run_sr_api),
    Runner("engines", "DaskEngine(", run_engine_api,
           (pytest.mark.dask, pytest.mark.spark)),
    Runner("spark", "import pixelmill.spark as pms", run_spark_api, (pytest.mark.spark,)),
    Runner("dask", "import pixelmill.dask as pmd", run_dask_api, (pytest.mark.dask,)),
    Runner("learn", "learn.train_cnn(", run_learn_api, (pytest.mark.spark,)),
]


def block_of(runner: Runner) -> Block:
    return block_holding(readme_blocks(), runner.marker, runner.name, "python")


def test_every_python_block_is_run():
    blocks = readme_blocks()
    assert blocks, "README.md has no ```python blocks"
    for block in blocks:
        claimed = [r.name for r in RUNNERS if r.marker in block.code]
        assert len(claimed) == 1, (
            f"README.md python block {block.number} (line {block.line}) is claimed by "
            f"{claimed or 'no runner'}: give it exactly one in tests/test_readme.py")
    for runner in RUNNERS:
        block_of(runner)


@pytest.mark.parametrize("runner", [pytest.param(r, id=r.name, marks=r.marks) for r in RUNNERS])
def test_readme_block(runner: Runner, request, tmp_path, monkeypatch):
    """The README block runs as written (but for the listed substitutions) and keeps its word."""
    monkeypatch.chdir(tmp_path)
    runner.run(block_of(runner), request)
