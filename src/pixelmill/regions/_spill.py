"""Decode once into a disk-backed ``.npy`` for inputs without random access."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import DecodeError, PixelLimitError, StorageError
from pixelmill.regions._read import read_stored_samples
from pixelmill.regions._samples import stored_box
from pixelmill.regions._source import MAX_SEGMENT_BYTES, RegionSource, _open_npy_source

__all__ = ["check_decodable", "check_segment_memory", "spill_decoded", "spill_tiff"]


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
    """Decode a TIFF with huge strips once, strip after strip, into a ``.npy``.

    The spill holds the stored grid with samples converted (float64 as float32, palettes as
    RGB, ...); a TIFF Orientation is kept on the returned source and applied per window (bands
    of upright rows would be columns of the file, every one of them decoding every strip).
    """
    h, w = source.raw_shape[:2]
    shape = (h, w, *source.shape[2:])
    band_rows = max(1, MAX_SEGMENT_BYTES // max(1, w * source.channels
                                                 * np.dtype(source.dtype).itemsize))
    bands = (read_stored_samples(source, (y0, min(h, y0 + band_rows), 0, w))
             for y0 in range(0, h, band_rows))
    _write_npy_bands(spill_uri, shape, source.dtype, bands)
    spilled = _open_npy_source(spill_uri, None)
    if source.orientation in (0, 1):
        return spilled
    return replace(spilled, shape=source.shape, orientation=source.orientation,
                   stored_shape=spilled.shape)


#: bytes of the decoded image written to the spill at a time
SPILL_BAND_BYTES = 16 * 2**20

#: bytes of a file's head probed for its size before anything is decoded
_PROBE_BYTES = 4 * 2**20

_CONVERT = ("convert it to a tiled TIFF or OME-Zarr, which are read region by region at any "
            "size")


def _memory_limit(memory: int | None) -> tuple[int, str]:
    """What a decode may use: the job's budget, when given, within the memory available now."""
    import psutil

    available = int(psutil.virtual_memory().available)  # MemAvailable on Linux
    if memory is not None and memory <= available:
        # the budget covers this process too: what it holds already is not free for the decode
        # (a 100 MP PNG under --memory 300MB peaked at 320 MiB when it was left out)
        held = int(psutil.Process().memory_info().rss)
        left = max(0, int(memory) - held)
        return left, (f"the {storage.human_size(left)} left of the memory budget of "
                      f"{storage.human_size(memory)} (this process holds "
                      f"{storage.human_size(held)})")
    return available, f"the {storage.human_size(available)} of memory available"


def check_segment_memory(source: RegionSource, segment: int, memory: int | None) -> None:
    """Refuse a TIFF whose strips/tiles (each decoded whole) would not fit the memory."""
    need = 2 * segment  # a decoded segment and the band cut from it
    limit, what = _memory_limit(memory)
    if need > limit:
        raise PixelLimitError(
            f"{source.uri}: its strips or tiles hold {storage.human_size(segment)} each and are "
            f"decoded whole, which needs about {storage.human_size(need)}, more than "
            f"{what}; "
            f"{_CONVERT}")


def check_decodable(uri: str, info, encoded_bytes: int, memory: int | None) -> None:
    """Refuse, from its header, an image without random access too big to decode whole.

    Raises :class:`~pixelmill.errors.PixelLimitError` (a :class:`DecodeError`) when it claims
    more than :data:`pixelmill.codecs.DEFAULT_MAX_PIXELS` pixels (what
    :func:`pixelmill.images.read_image` refuses too) or when the encoded file, the decoded
    image and one converted copy would not fit ``memory`` (default: the memory available).
    """
    from pixelmill.codecs import DEFAULT_MAX_PIXELS

    fmt = str(info.format).upper()
    size = (f"{info.width}x{info.height} = {info.pixels / 1e6:,.1f} MP" if info.pixels >= 10**5
            else f"{info.width}x{info.height} = {info.pixels:,} pixels")
    if info.pixels > DEFAULT_MAX_PIXELS:
        raise PixelLimitError(
            f"{uri}: exceeds the pixel limit ({size} > {DEFAULT_MAX_PIXELS / 1e6:,.0f} MP): a "
            f"{fmt} has no random access and is decoded whole; {_CONVERT}")
    itemsize = 1 if info.bit_depth <= 8 else 2 if info.bit_depth <= 16 else 4
    decoded = info.pixels * info.channels * itemsize
    need = encoded_bytes + 2 * decoded
    limit, what = _memory_limit(memory)
    if need > limit:
        raise PixelLimitError(
            f"{uri}: a {fmt} of {size} has no random access and is decoded whole, which needs "
            f"about {storage.human_size(need)}, more than {what}; "
            f"{_CONVERT}")


def _read_all(fh, head: bytes) -> bytes:
    rest = fh.read()
    return head + rest if rest else head


def spill_decoded(uri: str, so: Mapping[str, Any] | None, spill_uri: str, *,
                  memory: int | None = None) -> RegionSource:
    """Decode a JPEG/PNG/... once, as :func:`pixelmill.codecs.decode` does (same dtypes and
    channels, orientation applied), and write it band by band to a ``.npy``.

    The header is checked first (:func:`check_decodable`): nothing is decoded for an image over
    the pixel limit or one whose decode would not fit ``memory``. Raises
    :class:`~pixelmill.errors.DecodeError` (``URI: reason``, the reasons
    :func:`pixelmill.images.read_image` gives) for a file that is not a readable image, before
    anything is written.
    """
    from pixelmill import codecs

    fs, path = storage.get_fs(uri, so)
    try:
        with fs.open(path, "rb") as fh:
            head = fh.read(_PROBE_BYTES)
            try:
                info = codecs.probe(head)
            except DecodeError as e:
                if len(head) < _PROBE_BYTES:
                    raise DecodeError(f"{uri}: {e}") from e
                head = _read_all(fh, head)  # a header further in than usual
                try:
                    info = codecs.probe(head)
                except DecodeError as e2:
                    raise DecodeError(f"{uri}: {e2}") from e2
            try:
                encoded = int(fs.size(path))
            except (OSError, TypeError, ValueError, NotImplementedError):
                encoded = len(head)
            check_decodable(uri, info, encoded, memory)
            data = _read_all(fh, head) if len(head) == _PROBE_BYTES else head
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e
    except OSError as e:
        raise StorageError(f"{uri}: cannot read: {e}") from e
    try:
        if len(data) > _PROBE_BYTES:  # the orientation the whole file's header gives
            info = codecs.probe(data)
        stored = codecs.decode(data, apply_exif=False, max_pixels=codecs.DEFAULT_MAX_PIXELS)
    except DecodeError as e:
        raise type(e)(f"{uri}: {e}") from e
    del data
    o = info.orientation
    h, w = stored.shape[:2]
    up_h, up_w = (w, h) if o in (5, 6, 7, 8) else (h, w)
    shape = (up_h, up_w, *stored.shape[2:])
    row_bytes = max(1, up_w * (stored.nbytes // max(1, h * w)))
    band_rows = max(1, SPILL_BAND_BYTES // row_bytes)
    bands = (codecs.apply_orientation(
        stored[_slices(stored_box(o, (y0, min(up_h, y0 + band_rows), 0, up_w), h, w))], o)
        for y0 in range(0, up_h, band_rows))
    try:
        _write_npy_bands(spill_uri, shape, stored.dtype, bands)
    except OSError as e:
        raise StorageError(f"{spill_uri}: cannot write the decoded image: {e}") from e
    return _open_npy_source(spill_uri, None)


def _slices(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    return slice(box[0], box[1]), slice(box[2], box[3])
