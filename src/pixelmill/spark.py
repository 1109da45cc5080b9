"""Native Spark API: pixelmill's decoders and pipelines on Spark DataFrames.

>>> import pixelmill.spark as pms
>>> images = pms.read_images(spark, "s3a://bucket/photos/", recursive=True)  # doctest: +SKIP
>>> out = pms.apply(images, [{"op": "resize", "long_side": 512}, {"op": "sharpness"}])  # doctest: +SKIP
>>> out.select("image.origin", "image.width", "sharpness", "reason").show()  # doctest: +SKIP

Images travel in Spark's image schema (``origin, height, width, nChannels, mode, data``, BGR
byte order; :mod:`pixelmill.records`), so DataFrames from ``spark.read.format("image")`` and
from :func:`read_images` are interchangeable, with 16-bit and float32 modes besides Spark's
8-bit ones. :func:`read_images` reads files with Spark's ``binaryFile`` source and decodes them
with :mod:`pixelmill.codecs` (16-bit PNG/TIFF, WebP, CMYK JPEG, EXIF orientation, a pixel limit
checked from the header); an unreadable file becomes Spark's invalid row plus a ``reason``.
:func:`apply` runs a pipeline over either kind of DataFrame through ``mapInArrow`` (Arrow record
batches, no per-row Python/JVM round trips), adding one column per measurement and one
``array<float>`` column per feature vector.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pixelmill.errors import InvalidParameterError
from pixelmill.records import ImageRecord, image_schema, spark_origin

__all__ = ["apply", "read_images"]


def _decode_row(data: bytes, origin: str, decode_kw: Mapping[str, Any]) -> tuple[Any, str | None]:
    """An image array, or None and the reason it cannot be decoded."""
    from pixelmill import codecs
    from pixelmill.errors import DecodeError

    try:
        return codecs.decode(bytes(data), **decode_kw), None
    except DecodeError as e:
        return None, str(e) or type(e).__name__


def _decode_batches(batches: Iterator[Any], decode_kw: dict[str, Any],
                    keep: list[str]) -> Iterator[Any]:
    import pyarrow as pa

    schema = _arrow_image_schema()
    for batch in batches:
        images, reasons = [], []
        for path, content in zip(batch.column("path").to_pylist(),
                                 batch.column("content").to_pylist(), strict=True):
            path = _origin(path)
            image, reason = _decode_row(content, path, decode_kw)
            rec = ImageRecord.invalid(path) if image is None else ImageRecord.from_array(image, path)
            images.append(rec.to_spark_row())
            reasons.append(reason)
        arrays = [pa.array(images, schema), pa.array(reasons, pa.string())]
        yield pa.RecordBatch.from_arrays(arrays + [batch.column(c) for c in keep],
                                         names=["image", "reason", *keep])


def _origin(path: str) -> str:
    """A binaryFile ``path`` (``file:/a b.png``) as Spark's image data source writes it as
    ``origin`` (``file:///a%20b.png``: :func:`pixelmill.records.spark_origin`)."""
    return spark_origin(path)


def _arrow_image_schema():
    import pyarrow as pa

    return pa.struct([("origin", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
                      ("nChannels", pa.int32()), ("mode", pa.int32()), ("data", pa.binary())])


_BINARY_FILE_COLUMNS = ("path", "modificationTime", "length", "content")


def read_images(spark: Any, url: str, *, recursive: bool = False, glob: str | None = None,
                apply_exif: bool = True, max_pixels: int | None = None,
                drop_invalid: bool = False) -> Any:
    """A DataFrame of images (``image`` struct in Spark's image schema, ``reason``) from ``url``.

    As in ``spark.read.format("image")``, ``origin`` is the file's percent-encoded URI and
    partition folders (``label=cat/``) add their columns after ``image`` and ``reason``.

    Parameters
    ----------
    spark : SparkSession
    url : str
        A file, folder or glob that Spark can read (``file:``, ``hdfs:``, ``s3a:`` ...).
    recursive : bool
        Descend into sub-folders (Spark's ``recursiveFileLookup``).
    glob : str, optional
        Only file names matching this pattern (Spark's ``pathGlobFilter``), e.g. ``"*.png"``.
    apply_exif : bool
        Turn photos upright by their EXIF orientation (Spark's own reader does not).
    max_pixels : int, optional
        Files whose header claims more pixels become invalid rows (default: pixelmill's limit).
    drop_invalid : bool
        Leave out files that cannot be decoded instead of keeping them as invalid rows.
    """
    from pyspark.sql.types import StringType, StructField, StructType

    from pixelmill import codecs

    reader = spark.read.format("binaryFile")
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    decode_kw = {"apply_exif": apply_exif,
                 "max_pixels": codecs.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels}
    files = reader.load(url)
    # partition columns (label=cat/ folders) travel along, as in Spark's image data source
    keep = [c for c in files.columns if c not in _BINARY_FILE_COLUMNS]
    files = files.select("path", "content", *keep)
    schema = StructType([StructField("image", image_schema(), True),
                         StructField("reason", StringType(), True),
                         *(files.schema[c] for c in keep)])
    df = _map_in_arrow(files, lambda batches: _decode_batches(batches, decode_kw, keep), schema)
    return df.where("reason IS NULL") if drop_invalid else df


# ---- apply ------------------------------------------------------------------------------------

def _types(value: Any) -> tuple[Any, Any]:
    """(Spark type, Arrow type) of a measurement value."""
    import pyarrow as pa
    from pyspark.sql import types as T

    if isinstance(value, bool | np.bool_):
        return T.BooleanType(), pa.bool_()
    if isinstance(value, int | np.integer):
        return T.LongType(), pa.int64()
    if isinstance(value, float | np.floating):
        return T.DoubleType(), pa.float64()
    if isinstance(value, str):
        return T.StringType(), pa.string()
    raise InvalidParameterError(f"pipeline: measurement value {value!r} has no Spark type",
                                field="pipeline")


def _record(row: Any) -> ImageRecord:
    """The record of an image-schema row; a null or malformed one is an invalid record."""
    if row is None:
        return ImageRecord.invalid("")
    try:
        return ImageRecord.from_spark_row(row)
    except (TypeError, ValueError, KeyError):  # null height, a field missing ...
        origin = row.get("origin") if isinstance(row, Mapping) else None
        return ImageRecord.invalid(str(origin or ""))


def _row_array(rec: ImageRecord) -> tuple[Any, str | None]:
    """The pixels of a valid-looking record, or None and why they cannot be read (no data)."""
    from pixelmill.errors import DecodeError

    try:
        return rec.to_array(), None
    except DecodeError as e:
        return None, str(e)


def _samples(df: Any, source: str, decode_kw: Mapping[str, Any], n: int = 8) -> Iterator[Any]:
    """Readable images from the first ``n`` rows of ``df`` (unreadable rows skipped), fetched
    to the driver only as far as they are used: the first row alone, then the others."""
    if source == "image":
        rows = df.where("image.mode >= 0 AND image.height >= 0").select("image")
    else:
        rows = df.select("path", "content")
    for start, stop in ((0, 1), (1, n)):
        for row in rows.limit(stop).collect()[start:]:
            if source == "image":
                image, _ = _row_array(_record(row["image"]))
            else:
                image, _ = _decode_row(row["content"], row["path"], decode_kw)
            if image is not None:
                yield image


def _channel_variants(image: np.ndarray) -> list[np.ndarray]:
    """The image as gray, gray+alpha, RGB and RGBA (only the channel count matters; at most
    512 × 512 of it, to keep the driver's probe cheap)."""
    plane = image[:512, :512] if image.ndim == 2 else image[:512, :512, 0]
    return [plane, *(np.ascontiguousarray(np.dstack([plane] * c)) for c in (2, 3, 4))]


def _probe(pipe: Any, samples: Iterator[Any]) -> tuple[dict[str, Any], list[str]]:
    """Measurement types and vector names of ``pipe`` from its results on ``samples``.

    The first sample the pipeline processes gives the columns; some ops name their
    measurements by channel (``mean`` for gray, ``mean_r`` ... for RGB), so when the pipeline
    measures, that sample is also run as gray, gray+alpha, RGB and RGBA and the names unite. A
    pipeline that fails on every sample raises the first error, before any Spark job starts;
    with no readable sample, a synthetic image stands in (its errors are not raised).
    """
    first_error = None
    measuring = any(step.spec.output in ("measures", "vector") for step in pipe.steps)
    synthetic = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    candidates = itertools.chain(((True, im) for im in samples),
                                 [(False, synthetic)] if measuring else [])
    for real, image in candidates:  # lazily: real samples are fetched only as needed
        if not real and first_error is not None:
            break
        try:
            result = pipe.run(image)
            ImageRecord.from_array(result.image)  # the final image must fit the image schema
        except Exception as e:
            first_error = first_error or e
            continue
        results = [result]
        if any(step.spec.output == "measures" for step in pipe.steps):
            for variant in _channel_variants(image):
                try:
                    results.append(pipe.run(variant))
                except Exception:  # a variant only adds names; its errors do not matter
                    continue
        measures: dict[str, Any] = {}
        for r in results:
            for name, value in r.measures.items():
                if measures.get(name) is None:
                    measures[name] = None if value is None else _types(value)
        vectors = sorted({name for r in results for name in r.vectors})
        return {m: measures[m] or _types(0.0) for m in sorted(measures)}, vectors
    if first_error is not None:
        raise first_error
    return {}, []


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _apply_batches(batches: Iterator[Any], pipeline: Any, source: str, keep: list[str],
                   measures: dict[str, Any], vectors: list[str],
                   decode_kw: dict[str, Any]) -> Iterator[Any]:
    import pyarrow as pa

    image_type = _arrow_image_schema()
    for batch in batches:
        images, reasons = [], []
        values: dict[str, list[Any]] = {name: [] for name in [*measures, *vectors]}
        cols = batch.to_pydict() if source == "binaryFile" else {
            "image": batch.column("image").to_pylist()}
        prior = (batch.column("reason").to_pylist() if "reason" in batch.schema.names
                 else [None] * batch.num_rows)
        for k in range(batch.num_rows):
            reason, result = None, None
            if source == "binaryFile":
                origin = _origin(cols["path"][k])
                image, reason = _decode_row(cols["content"][k], origin, decode_kw)
            else:
                rec = _record(cols["image"][k])
                origin, image = rec.origin, None
                if rec.valid:
                    image, reason = _row_array(rec)
                else:
                    reason = prior[k] or "invalid image row (the file could not be decoded)"
            if image is not None:
                try:
                    result = pipeline.run(image)
                    out = ImageRecord.from_array(result.image, origin)
                except Exception as e:  # an image this pipeline cannot process: a row reason
                    result, reason = None, f"{type(e).__name__}: {e}"
            rec = ImageRecord.invalid(origin) if result is None else out
            images.append(rec.to_spark_row())
            reasons.append(reason)
            for name in measures:
                values[name].append(None if result is None else _plain(result.measures.get(name)))
            for name in vectors:
                vec = None if result is None else result.vectors.get(name)
                values[name].append(None if vec is None else vec.astype(np.float32).tolist())
        arrays = [batch.column(name) for name in keep]
        arrays += [pa.array(images, image_type), pa.array(reasons, pa.string())]
        arrays += [pa.array(values[m], t) for m, t in measures.items()]
        arrays += [pa.array(values[v], pa.list_(pa.float32())) for v in vectors]
        yield pa.RecordBatch.from_arrays(arrays, names=[*keep, "image", "reason", *measures,
                                                        *vectors])


def apply(df: Any, pipeline: Any, *, max_pixels: int | None = None) -> Any:
    """Run ``pipeline`` on every image of ``df``; returns a DataFrame of results.

    Parameters
    ----------
    df : DataFrame
        From ``spark.read.format("image")`` or :func:`read_images` (an ``image`` struct column),
        or from ``spark.read.format("binaryFile")`` (``path`` and ``content`` columns).
    pipeline : Pipeline, dict, list or path
        Validated here, before any Spark job starts.
    max_pixels : int, optional
        Pixel limit when decoding ``binaryFile`` content (default: pixelmill's limit).

    Returns
    -------
    DataFrame
        The input's other columns (``content`` dropped), ``image`` (the processed image in the
        image schema; an invalid row when the input could not be decoded or processed),
        ``reason`` (null when all went well), a column per measurement and an ``array<float>``
        column per feature vector (an input column of the same name is replaced). Their names
        and types are found by running the pipeline on the driver, on the first readable image
        among the first rows (as gray, RGB and RGBA too, when it measures: some measurements are
        named by channel), or on a synthetic image when there is none.
    """
    from pyspark.sql import types as T

    from pixelmill import codecs
    from pixelmill.pipeline import load_pipeline

    pipe = load_pipeline(pipeline)
    cols = set(df.columns)
    if "image" in cols:
        source = "image"
    elif {"path", "content"} <= cols:
        source = "binaryFile"
    else:
        raise InvalidParameterError(
            f"df: expected an 'image' column (image data source) or 'path' and 'content' "
            f"columns (binaryFile source), got {sorted(cols)}", field="df")
    decode_kw = {"apply_exif": True,
                 "max_pixels": codecs.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels}
    # output columns: run the pipeline on the first readable images, on the driver
    measures, vectors = _probe(pipe, _samples(df, source, decode_kw))
    outputs = {"image", "reason", *measures, *vectors}  # replace same-named input columns
    keep = [c for c in df.columns if c != "content" and c not in outputs]
    fields = [df.schema[c] for c in keep]
    fields += [T.StructField("image", image_schema(), True),
               T.StructField("reason", T.StringType(), True)]
    fields += [T.StructField(m, types[0], True) for m, types in measures.items()]
    fields += [T.StructField(v, T.ArrayType(T.FloatType()), True) for v in vectors]
    arrow_types = {m: types[1] for m, types in measures.items()}

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        return _apply_batches(batches, pipe, source, keep, arrow_types, vectors, decode_kw)

    return _map_in_arrow(df, run, T.StructType(fields))


def _map_in_arrow(df: Any, fn: Any, schema: Any) -> Any:
    import warnings

    with warnings.catch_warnings():  # pyspark lags pandas releases (see the README)
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
        return df.mapInArrow(fn, schema)
