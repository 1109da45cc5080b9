"""Reading windows of a :class:`RegionSource`; open handles are cached per process."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import DecodeError
from pixelmill.regions._samples import decoded_samples, stored_box
from pixelmill.regions._source import RegionSource, _read_npy_header, open_zarr_array

__all__ = ["read_region", "read_stored_samples", "release"]

_HANDLES: OrderedDict[RegionSource, Any] = OrderedDict()
_MAX_HANDLES = 4


def _close(handle: Any) -> None:
    for h in handle if isinstance(handle, tuple) else ():
        close = getattr(h, "close", None)
        if close is not None:
            close()


def _removed(handle: Any) -> bool:
    """Whether a cached handle holds a local file that has since been removed (a tiled job's
    spill, deleted when the job ends): its disk space is not freed while the file is open."""
    for h in handle if isinstance(handle, tuple) else ():
        fd = getattr(h, "fd", None)
        if not isinstance(fd, int):
            fileno = getattr(h, "fileno", None)
            try:
                fd = fileno() if callable(fileno) else None
            except (OSError, ValueError):
                fd = None
        if isinstance(fd, int) and fd >= 0:
            try:
                if os.fstat(fd).st_nlink == 0:
                    return True
            except OSError:
                return True
    return False


def release(uri: str | None = None) -> None:
    """Close the cached handles of the sources read from ``uri`` (every one when None): call it
    before removing a file this process has read regions of, or its disk space stays held."""
    for source in [s for s in _HANDLES if uri is None or s.uri == uri]:
        _close(_HANDLES.pop(source))


def _handle(source: RegionSource) -> Any:
    h = _HANDLES.get(source)
    if h is not None:
        _HANDLES.move_to_end(source)
        return h
    for held in [s for s, old in _HANDLES.items() if _removed(old)]:  # files deleted since
        _close(_HANDLES.pop(held))
    if source.kind == "tiff":
        import tifffile
        import zarr

        fs, path = storage.get_fs(source.uri, source.options)
        fh = open(path, "rb") if storage._is_local(fs) else fs.open(path, "rb")  # noqa: SIM115
        tif = tifffile.TiffFile(fh)
        raw = _RawSegments.make(tif, source) if storage._is_local(fs) else None
        if raw is not None:
            h = (raw, tif, fh)
        else:
            store = tif.series[0].aszarr(level=source.level)
            h = (zarr.open_array(store, mode="r"), store, tif, fh)
    elif source.kind == "zarr":
        h = (open_zarr_array(source.uri, source.path, source.options),)
    elif source.kind == "npy":
        fs, path = storage.get_fs(source.uri, source.options)
        h = (_NpyFile.open(path, source),) if storage._is_local(fs) else ("ranges", fs, path)
    else:  # pragma: no cover - RegionSource is built by open_source only
        raise ValueError(source.kind)
    _HANDLES[source] = h
    while len(_HANDLES) > _MAX_HANDLES:
        _close(_HANDLES.popitem(last=False)[1])
    return h


def _npy_rows(fs, path: str, source: RegionSource, y0: int, y1: int) -> np.ndarray:
    shape, dtype = source.raw_shape, np.dtype(source.raw_dtype)
    with fs.open(path, "rb") as f:
        _read_npy_header(f)
        offset = f.tell()
        row = int(np.prod(shape[1:])) * dtype.itemsize
        f.seek(offset + y0 * row)
        data = f.read((y1 - y0) * row)
    return np.frombuffer(data, dtype=dtype).reshape((y1 - y0, *shape[1:]))


class _NpyFile:
    """Windows of a local C-ordered ``.npy`` read with ``os.preadv`` straight into the result.

    Not a memory map: pages of a map stay in the process's resident memory while it is open,
    so a worker's RSS grew by the whole spill (100 MB for a 100 MP gray PNG) and a tiled job
    overran its ``--memory`` budget by that much."""

    def __init__(self, fd: int, offset: int, source: RegionSource, uri: str) -> None:
        self.fd, self.offset, self.uri = fd, offset, uri
        self.shape = tuple(source.raw_shape)
        self.dtype = np.dtype(source.raw_dtype)
        self.pixel = int(np.prod(self.shape[2:], dtype=np.int64)) * self.dtype.itemsize
        self.row = self.shape[1] * self.pixel

    @classmethod
    def open(cls, path: str, source: RegionSource) -> _NpyFile:
        with open(path, "rb") as f:
            _, _, dtype = _read_npy_header(f)
            offset = f.tell()
        h = cls(os.open(path, os.O_RDONLY), offset, source, source.uri)
        h.dtype = np.dtype(dtype)  # as stored (byte order included)
        return h

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0, *self.shape[2:]), self.dtype)
        if out.size == 0:
            return out
        flat = out.reshape(-1).view(np.uint8)
        if x0 == 0 and x1 == self.shape[1]:  # whole rows: one read
            spans = [(flat, self.offset + y0 * self.row)]
        else:
            n = (x1 - x0) * self.pixel
            spans = [(flat[i * n:(i + 1) * n], self.offset + y * self.row + x0 * self.pixel)
                     for i, y in enumerate(range(y0, y1))]
        for buf, at in spans:
            got = os.preadv(self.fd, [buf], at)
            if got < buf.size:
                raise DecodeError(f"{self.uri}: truncated .npy: {at + got:,} bytes in the "
                                  f"file, the array needs {at + buf.size:,}")
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _RawSegments:
    """Windows of an uncompressed, chunky, native-order TIFF page read with ``os.pread`` from
    its tile/strip offsets (no decoder, no per-chunk Python machinery)."""

    def __init__(self, fd: int, page, source: RegionSource) -> None:
        self.fd = fd
        self.uri = source.uri
        self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self.counts = np.asarray(page.databytecounts, dtype=np.int64)
        self.tiled = page.is_tiled
        self.th = page.tilelength if self.tiled else page.rowsperstrip
        self.width = source.raw_shape[1]
        self.tw = page.tilewidth if self.tiled else self.width
        self.spp = page.samplesperpixel
        self.dtype = np.dtype(source.raw_dtype)
        self.across = -(-self.width // self.tw)

    @classmethod
    def make(cls, tif, source: RegionSource) -> _RawSegments | None:
        try:
            lev = tif.series[0].levels[source.level]
            page = lev.keyframe
            dtype = np.dtype(source.raw_dtype)
            ok = (len(lev.pages) == 1 and page.compression == 1 and page.predictor == 1
                  and (page.planarconfig == 1 or page.samplesperpixel == 1)
                  and page.fillorder == 1 and page.imagedepth == 1
                  and np.dtype(page.dtype).newbyteorder(tif.byteorder) == dtype
                  and dtype.isnative and page.bitspersample == dtype.itemsize * 8
                  and source.axes in ("YX", "YXC"))
            page = lev.pages[0]
            return cls(tif.filehandle.fileno(), page, source) if ok else None
        except (AttributeError, OSError, TypeError, ValueError):  # unusual files: the zarr path
            return None

    def _pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset``; a file that ends sooner is a truncated TIFF."""
        data = os.pread(self.fd, size, offset)
        if len(data) < size:
            raise DecodeError(f"{self.uri}: truncated TIFF: {len(data):,} of the {size:,} bytes of image "
                              f"data at offset {offset:,} are in the file")
        return data

    def _segment(self, k: int, rows: int, cols: int) -> np.ndarray:
        if k >= len(self.offsets) or self.offsets[k] == 0 or self.counts[k] == 0:
            return np.zeros((rows, cols, self.spp), self.dtype)
        size = rows * cols * self.spp * self.dtype.itemsize
        if int(self.counts[k]) < size:
            raise DecodeError(f"{self.uri}: corrupt TIFF: tile {k} holds {int(self.counts[k]):,} bytes, "
                              f"its {rows}x{cols} pixels need {size:,}")
        data = self._pread(size, int(self.offsets[k]))
        return np.frombuffer(data, self.dtype).reshape(rows, cols, self.spp)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0, self.spp), self.dtype)
        th, tw = self.th, self.tw
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            sy0, sy1 = max(y0, ty * th), min(y1, (ty + 1) * th)
            if not self.tiled:  # a strip: read only the rows needed
                row_bytes = self.width * self.spp * self.dtype.itemsize
                data = self._pread((sy1 - sy0) * row_bytes,
                                   int(self.offsets[ty]) + (sy0 - ty * th) * row_bytes)
                rows = np.frombuffer(data, self.dtype).reshape(sy1 - sy0, self.width, self.spp)
                out[sy0 - y0:sy1 - y0] = rows[:, x0:x1]
                continue
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                sx0, sx1 = max(x0, tx * tw), min(x1, (tx + 1) * tw)
                seg = self._segment(ty * self.across + tx, th, tw)
                out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = seg[sy0 - ty * th:sy1 - ty * th,
                                                                sx0 - tx * tw:sx1 - tx * tw]
        return out


def _read_stored(source: RegionSource, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """A window of the stored grid, samples as stored."""
    h = _handle(source)
    if isinstance(h[0], _RawSegments):
        data = h[0].read(y0, y1, x0, x1)
        return data[..., 0] if len(source.raw_shape) == 2 else data
    if source.kind == "npy":
        if isinstance(h[0], str):
            return _npy_rows(h[1], h[2], source, y0, y1)[:, x0:x1].copy()
        return h[0].read(y0, y1, x0, x1)
    arr = h[0]
    index = []
    for a in source.axes:
        index.append(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X"
                     else slice(None) if a == "C" else 0)
    data = np.asarray(arr[tuple(index)])
    kept = [a for a in source.axes if a != "I"]
    order = [kept.index(a) for a in "YXC" if a in kept]
    data = data.transpose(order)
    if data.ndim == 3 and len(source.raw_shape) == 2:
        data = data[..., 0]
    return np.ascontiguousarray(data)


def _colormap(source: RegionSource) -> np.ndarray:
    """The palette of a palette TIFF, from the open file."""
    import tifffile

    tif = next(h for h in _handle(source) if isinstance(h, tifffile.TiffFile))
    return tif.series[0].levels[source.level].keyframe.colormap


def read_stored_samples(source: RegionSource, box: tuple[int, int, int, int]) -> np.ndarray:
    """``box`` of the stored grid (before orientation), samples converted as the in-memory
    decoder converts them."""
    data = _read_stored(source, *box)
    if source.photometric or source.stored_dtype:
        data = decoded_samples(data, source.photometric,
                               _colormap(source) if source.photometric == "palette" else None,
                               strict=False)  # what it refuses was refused when opened
    return data


def _read_inside(source: RegionSource, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """A window of the image as the in-memory decoder gives it: upright, samples converted."""
    if source.orientation in (0, 1):
        return read_stored_samples(source, (y0, y1, x0, x1))
    from pixelmill.codecs import apply_orientation

    box = stored_box(source.orientation, (y0, y1, x0, x1), *source.raw_shape[:2])
    return apply_orientation(read_stored_samples(source, box), source.orientation)


def read_region(source: RegionSource, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels of ``box = (y0, y1, x0, x1)``, H×W or H×W×C.

    A box reaching outside the image (the halo of a tile under a wrap-around border mode) is
    filled with the pixels from the opposite side, as ``numpy.pad(mode="wrap")`` would.
    """
    y0, y1, x0, x1 = box
    h, w = source.height, source.width
    if 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w:
        return _read_inside(source, y0, y1, x0, x1)
    ys = np.arange(y0, y1) % h
    xs = np.arange(x0, x1) % w
    # read the bounding box of the wrapped rows/cols once, then gather
    inner = _read_inside(source, int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return np.ascontiguousarray(inner[ys - ys.min()][:, xs - xs.min()])
