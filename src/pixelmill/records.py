"""ImageRecord: an image as a row of Spark's image schema, converted losslessly both ways.

Spark's image data source (``spark.read.format("image")``) yields one struct column ``image``
with fields ``origin, height, width, nChannels, mode, data``: ``mode`` is an OpenCV type code
(``CV_8UC1`` = 0, ``CV_8UC3`` = 16, ``CV_8UC4`` = 24, ...), ``data`` the pixels as row-major
bytes in BGR(A) channel order. A file Spark cannot read becomes an *invalid* row: ``-1`` for
height, width, nChannels and mode, empty data (dropped with ``dropInvalid``).

pixelmill arrays are RGB(A); this module swaps the channel order on the way in and out.
Besides Spark's 8-bit codes it uses OpenCV's codes for gray+alpha (``CV_8UC2`` = 8), 16-bit
(``CV_16UC1..4`` = 2, 10, 18, 26, little-endian) and float32 (``CV_32FC1..4``), so nothing is
lost. Spark's ``origin`` is the file's URI percent-encoded (``file:///data/a%20b.png``);
:func:`spark_origin` makes it from a path. pyspark is imported only by the DataFrame helpers.

Examples
--------
>>> import numpy as np
>>> rgb = np.zeros((2, 3, 3), np.uint8); rgb[..., 0] = 255  # red
>>> rec = ImageRecord.from_array(rgb, origin="memory://red.png")
>>> rec.mode, rec.n_channels, rec.data[:3]  # stored as BGR
(16, 3, b'\\x00\\x00\\xff')
>>> bool((rec.to_array() == rgb).all())
True
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixelmill import codecs
from pixelmill.errors import DecodeError, InvalidParameterError

__all__ = [
    "INVALID_MODE",
    "OCV_TYPES",
    "ImageRecord",
    "from_spark_df",
    "image_schema",
    "ocv_mode",
    "record_from_bytes",
    "spark_origin",
    "to_spark_df",
]

#: OpenCV type codes by name (the subset of Spark's ``ImageSchema.ocvTypes`` pixelmill uses)
OCV_TYPES = {
    "CV_8UC1": 0, "CV_8UC2": 8, "CV_8UC3": 16, "CV_8UC4": 24,
    "CV_16UC1": 2, "CV_16UC2": 10, "CV_16UC3": 18, "CV_16UC4": 26,
    "CV_32FC1": 5, "CV_32FC2": 13, "CV_32FC3": 21, "CV_32FC4": 29,
}
#: Spark's mode for an invalid row (``ImageSchema.undefinedImageType``)
INVALID_MODE = -1
_DEPTH_CODE = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 2, np.dtype(np.float32): 5}
_CODE_DTYPE = {0: np.dtype(np.uint8), 2: np.dtype("<u2"), 5: np.dtype("<f4")}


def ocv_mode(dtype: np.dtype | type, channels: int) -> int:
    """OpenCV type code for a dtype and channel count (``uint8``, 3 -> 16)."""
    depth = _DEPTH_CODE.get(np.dtype(dtype))
    if depth is None or not 1 <= channels <= 4:
        raise InvalidParameterError(
            f"image: no image-schema mode for {np.dtype(dtype)} with {channels} channels "
            "(supported: uint8, uint16, float32 with 1-4 channels)", field="image")
    return depth + 8 * (channels - 1)


def _swap(arr: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A) (its own inverse); other layouts unchanged."""
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        order = [2, 1, 0, 3][: arr.shape[2]]
        return arr[..., order]
    return arr


@dataclass(frozen=True)
class ImageRecord:
    """One row of Spark's image schema (``n_channels`` is Spark's ``nChannels``)."""

    origin: str
    height: int
    width: int
    n_channels: int
    mode: int
    data: bytes

    @property
    def valid(self) -> bool:
        """False for the rows Spark writes for unreadable files."""
        return self.mode != INVALID_MODE and self.height >= 0

    @classmethod
    def invalid(cls, origin: str) -> ImageRecord:
        """The row Spark writes for a file it cannot read."""
        return cls(origin, -1, -1, -1, INVALID_MODE, b"")

    @classmethod
    def from_array(cls, image: np.ndarray, origin: str = "") -> ImageRecord:
        """A record from an H×W or H×W×C RGB(A) array (uint8, uint16 or float32)."""
        arr = np.asarray(image)
        if arr.ndim not in (2, 3):
            raise InvalidParameterError(f"image: expected H×W or H×W×C, got shape {arr.shape}",
                                        field="image")
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        mode = ocv_mode(arr.dtype, channels)
        raw = np.ascontiguousarray(_swap(arr), dtype=_CODE_DTYPE[mode % 8])
        return cls(origin, int(arr.shape[0]), int(arr.shape[1]), channels, mode, raw.tobytes())

    def to_array(self) -> np.ndarray:
        """The pixels as an RGB(A) array (H×W for one channel); invalid records raise."""
        if not self.valid:
            raise DecodeError(f"{self.origin}: invalid image record (Spark could not read it)")
        depth, channels = self.mode % 8, self.mode // 8 + 1
        dtype = _CODE_DTYPE.get(depth)
        if dtype is None or channels != self.n_channels:
            raise DecodeError(f"{self.origin}: unsupported image mode {self.mode} "
                              f"with nChannels={self.n_channels}")
        expected = self.height * self.width * channels * dtype.itemsize
        if len(self.data) != expected:
            raise DecodeError(f"{self.origin}: data holds {len(self.data)} bytes, "
                              f"expected {expected} for {self.height}x{self.width}x{channels}")
        arr = np.frombuffer(self.data, dtype).reshape(self.height, self.width, channels)
        arr = arr.astype(dtype.newbyteorder("="), copy=False)
        return np.ascontiguousarray(arr[..., 0] if channels == 1 else _swap(arr))

    def to_spark_row(self) -> dict[str, Any]:
        """The record as a dict in the image schema's field order (Spark's names)."""
        return {"origin": self.origin, "height": self.height, "width": self.width,
                "nChannels": self.n_channels, "mode": self.mode, "data": bytes(self.data)}

    @classmethod
    def from_spark_row(cls, row: Mapping[str, Any] | Any) -> ImageRecord:
        """A record from an image-schema row (a pyspark ``Row`` or a mapping)."""
        get = row.__getitem__
        return cls(str(get("origin") or ""), int(get("height")), int(get("width")),
                   int(get("nChannels")), int(get("mode")), bytes(get("data") or b""))


# ASCII characters java.net.URI leaves unquoted in a path (unreserved, punct, '@', '/')
_URI_PATH_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                           "_-!.~'()*,;:$&+=@/")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(.*)\Z", re.S)


def _quote_uri_path(path: str) -> str:
    """``path`` quoted as ``java.net.URI``'s multi-argument constructors quote a path (what
    Hadoop's ``Path.toUri`` does): other ASCII characters (space, ``%``, ``#``, ``?``, ``[``
    ...) become ``%XX``; non-ASCII characters stay as they are, except spaces and controls
    (NBSP, U+0080-U+009F ...), which become their UTF-8 bytes ``%XX%XX``."""
    out = []
    for ch in path:
        if ch in _URI_PATH_SAFE:
            out.append(ch)
        elif ch < "\x80" or ord(ch) <= 0x9F or unicodedata.category(ch) in ("Zs", "Zl", "Zp"):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape")))
        else:
            out.append(ch)
    return "".join(out)


def spark_origin(path: str | os.PathLike[str]) -> str:
    """The ``origin`` Spark's image data source writes for a file.

    ``path`` is a local path or a URI in its decoded form, as the ``path`` column of
    ``spark.read.format("binaryFile")`` holds it (``file:/data/a b.png``,
    ``s3a://bucket/a b.png``). Spark's origin is that URI percent-encoded the way Hadoop's
    ``Path.toUri`` encodes it, local files as ``file:///``: ``file:///data/a%20b.png``;
    ``#``, ``%``, ``?``, ``[``, ``]`` and other ASCII punctuation outside the URI path's set
    are encoded too, non-ASCII letters are not (``file:///data/été.png``).

    >>> spark_origin("file:/data/cat #1.png")
    'file:///data/cat%20%231.png'
    >>> spark_origin("s3a://bucket/label=cat/100%.jpg")
    's3a://bucket/label=cat/100%25.jpg'
    """
    text = os.fspath(path)
    match = None if isinstance(path, os.PathLike) else _SCHEME.match(text)
    if match is None:  # a local path (a one-letter "scheme" is a Windows drive)
        return "file://" + _quote_uri_path(os.path.abspath(text))
    scheme, rest = match.groups()
    authority = ""
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        rest = slash + rest
    if scheme.lower() == "file" and not authority:
        return "file://" + _quote_uri_path(rest)
    return f"{scheme}:" + (f"//{authority}" if authority else "") + _quote_uri_path(rest)


def record_from_bytes(data: bytes, origin: str = "", **decode_kw: Any) -> ImageRecord:
    """Decode a file into a record, or Spark's invalid row when it is not a readable image.

    EXIF orientation is not applied unless asked (``apply_exif=True``), as in Spark's reader.
    """
    decode_kw.setdefault("apply_exif", False)
    try:
        return ImageRecord.from_array(codecs.decode(data, **decode_kw), origin)
    except DecodeError:
        return ImageRecord.invalid(origin)


def image_schema():
    """Spark's image column type (``ImageSchema.columnSchema``), built without a JVM."""
    from pyspark.sql.types import (
        BinaryType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    return StructType([  # all nullable, as in the DataFrames Spark's reader returns
        StructField("origin", StringType(), True),
        StructField("height", IntegerType(), True),
        StructField("width", IntegerType(), True),
        StructField("nChannels", IntegerType(), True),
        StructField("mode", IntegerType(), True),
        StructField("data", BinaryType(), True),
    ])


def from_spark_df(df: Any, column: str = "image", *, drop_invalid: bool = False) -> list[ImageRecord]:
    """Collect a DataFrame from ``spark.read.format("image")`` into records (in row order)."""
    records = [ImageRecord.from_spark_row(row[column]) for row in df.select(column).collect()]
    return [r for r in records if r.valid] if drop_invalid else records


def to_spark_df(spark: Any, records: Iterable[ImageRecord], column: str = "image") -> Any:
    """A DataFrame with one image-schema column, as ``spark.read.format("image")`` makes."""
    from pyspark.sql.types import StructField, StructType

    schema = StructType([StructField(column, image_schema(), True)])
    rows = [(tuple(r.to_spark_row().values()),) for r in records]
    return spark.createDataFrame(rows, schema)
