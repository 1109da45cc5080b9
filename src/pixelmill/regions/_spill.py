"""Decode once into a disk-backed ``.npy`` for inputs without random access."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import DecodeError, StorageError
from pixelmill.regions._read import read_region
from pixelmill.regions._source import MAX_SEGMENT_BYTES, RegionSource, _open_npy_source

__all__ = ["spill_decoded", "spill_tiff"]

def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def _write_npy_bands(spill_uri: str, shape, dtype, bands: Iterator[np.ndarray]) -> None:
    fs, path = storage.get_fs(spill_uri)
    tmp = path + ".partial"
    if storage._is_local(fs):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with fs.open(tmp, "wb") as f:
        f.write(_npy_header(shape, dtype))
        for band in bands:
            f.write(np.ascontiguousarray(band, dtype=dtype).tobytes())
    fs.mv(tmp, path)


def spill_tiff(source: RegionSource, spill_uri: str) -> RegionSource:
    band_rows = max(1, MAX_SEGMENT_BYTES // max(1, source.width * source.channels
                                                 * np.dtype(source.dtype).itemsize))
    bands = (read_region(source, (y0, min(source.height, y0 + band_rows), 0, source.width))
             for y0 in range(0, source.height, band_rows))
    _write_npy_bands(spill_uri, source.shape, source.dtype, bands)
    return _open_npy_source(spill_uri, None)


#: bytes of a file's head handed to :func:`pixelmill.codecs.probe` to say why it did not decode
_PROBE_BYTES = 4 * 2**20


def _undecodable(fh) -> str:
    """Why a file Pillow could not decode is no image, in the words of the in-memory path
    (:func:`pixelmill.codecs.decode`): its header probe's reason, or, for a sound header,
    ``corrupt or truncated <FORMAT> data``."""
    from pixelmill import codecs

    try:
        fh.seek(0)
        head = fh.read(_PROBE_BYTES)
    except OSError as e:
        return f"cannot read: {e}"
    try:
        info = codecs.probe(head)
    except DecodeError as e:
        return str(e)
    return f"corrupt or truncated {info.format.upper()} data"


def spill_decoded(uri: str, so: Mapping[str, Any] | None, spill_uri: str) -> RegionSource:
    """Decode a JPEG/PNG/... once (Pillow) and write it band by band to a ``.npy``.

    Raises :class:`~pixelmill.errors.DecodeError` (``URI: reason``, the reasons
    :func:`pixelmill.images.read_image` gives) for a file that is not a readable image, before
    anything is written.
    """
    from PIL import Image

    fs, path = storage.get_fs(uri, so)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the caller chose to tile this image; it is huge on purpose
    try:
        try:
            fh = fs.open(path, "rb")
        except FileNotFoundError as e:
            raise StorageError(f"{uri}: no such file") from e
        except OSError as e:
            raise StorageError(f"{uri}: cannot read: {e}") from e
        with fh:
            try:
                im = Image.open(fh)
                im.load()
                if im.mode not in ("L", "RGB", "RGBA", "I;16", "I;16B", "I;16L"):
                    im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            except MemoryError:
                raise
            except Exception as e:  # Pillow's own classes: OSError, SyntaxError, struct.error...
                raise DecodeError(f"{uri}: {_undecodable(fh)}") from e
            with im:
                w, h = im.size
                first = np.asarray(im.crop((0, 0, w, min(h, 1))))
                shape = (h, w, *first.shape[2:])
                dtype = (np.uint16 if first.dtype.kind in "ui" and first.dtype.itemsize == 2
                         else first.dtype)
                band_rows = max(1, (16 * 2**20) // max(1, first.nbytes))
                bands = (np.asarray(im.crop((0, y0, w, min(h, y0 + band_rows))))
                         for y0 in range(0, h, band_rows))
                try:
                    _write_npy_bands(spill_uri, shape, dtype, bands)
                except OSError as e:
                    raise StorageError(f"{spill_uri}: cannot write the decoded image: {e}") from e
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return _open_npy_source(spill_uri, None)
