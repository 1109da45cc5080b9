"""records: ImageRecord <-> arrays, the image-schema layout (BGR, type codes), invalid rows."""

from __future__ import annotations

import numpy as np
import pytest

from pixelmill import codecs
from pixelmill.errors import DecodeError, InvalidParameterError
from pixelmill.records import (
    INVALID_MODE,
    OCV_TYPES,
    ImageRecord,
    ocv_mode,
    record_from_bytes,
)


def test_type_codes_are_sparks_opencv_table():
    # Spark's ImageSchema.ocvTypes (OpenCV 3/4 numbering: depth + 8 * (channels - 1));
    # test_spark_parity.py checks OCV_TYPES against the JVM's own table.
    spark_table = {"CV_8UC1": 0, "CV_8UC2": 8, "CV_8UC3": 16, "CV_8UC4": 24,
                   "CV_16UC1": 2, "CV_16UC2": 10, "CV_16UC3": 18, "CV_16UC4": 26,
                   "CV_32FC1": 5, "CV_32FC2": 13, "CV_32FC3": 21, "CV_32FC4": 29}
    for dtype, depth in [(np.uint8, "8U"), (np.uint16, "16U"), (np.float32, "32F")]:
        for channels in (1, 2, 3, 4):
            assert ocv_mode(dtype, channels) == spark_table[f"CV_{depth}C{channels}"]
    assert spark_table == OCV_TYPES
    with pytest.raises(InvalidParameterError):
        ocv_mode(np.int64, 3)


def test_data_is_bgr_row_major_like_opencv(photo):
    rec = ImageRecord.from_array(photo, "x.png")
    import cv2

    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)  # what OpenCV (and Spark) hold
    assert rec.data == bgr.tobytes()
    assert (rec.height, rec.width, rec.n_channels, rec.mode) == (96, 128, 3, 16)
    rgba = np.dstack([photo, photo[..., 0]])
    assert ImageRecord.from_array(rgba).data == cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA).tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_lossless_round_trip(dtype, channels, rng):
    shape = (7, 11) if channels == 1 else (7, 11, channels)
    if dtype == np.float32:
        arr = rng.random(shape, dtype=np.float32)
    else:
        arr = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    rec = ImageRecord.from_array(arr, "o")
    back = rec.to_array()
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    again = ImageRecord.from_spark_row(rec.to_spark_row())
    assert again == rec


def test_invalid_rows_as_spark_writes_them():
    rec = ImageRecord.invalid("file:/x/bad.jpg")
    assert rec.to_spark_row() == {"origin": "file:/x/bad.jpg", "height": -1, "width": -1,
                                  "nChannels": -1, "mode": INVALID_MODE, "data": b""}
    assert not rec.valid
    with pytest.raises(DecodeError, match="invalid"):
        rec.to_array()
    assert record_from_bytes(b"not an image", "t.jpg") == ImageRecord.invalid("t.jpg")
    assert record_from_bytes(b"", "z.png") == ImageRecord.invalid("z.png")


def test_record_from_bytes_keeps_raw_orientation_and_bit_depth(photo):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    import io

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "PNG", exif=exif.tobytes())
    rec = record_from_bytes(buf.getvalue(), "r.png")
    assert (rec.height, rec.width) == photo.shape[:2]  # Spark's reader ignores EXIF too
    deep = record_from_bytes(codecs.encode(photo.astype(np.uint16) * 257, "png"), "d.png")
    assert deep.mode == 18  # CV_16UC3: nothing truncated to 8 bits
    np.testing.assert_array_equal(deep.to_array(), photo.astype(np.uint16) * 257)


def test_corrupt_record_data_is_refused():
    rec = ImageRecord("o", 2, 2, 3, 16, b"\x00" * 11)
    with pytest.raises(DecodeError, match="expected 12"):
        rec.to_array()
    with pytest.raises(DecodeError, match="mode"):
        ImageRecord("o", 2, 2, 3, 24, b"\x00" * 12).to_array()
