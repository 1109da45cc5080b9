"""Writers: the chunked tile store, pyramid levels, tiled BigTIFF (streamed or in place)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import InvalidParameterError, StorageError, UsageError
from pixelmill.regions._source import TIFF_EXT

__all__ = ["TIFF_COMPRESSIONS", "ZARR_COMPRESSIONS", "TiffCanvas", "build_pyramid",
           "check_compression", "create_tiff_canvas", "create_tile_store", "output_kind",
           "read_band", "write_canvas", "write_ome_metadata", "write_tiff_from_zarr", "write_tile"]

#: ``--compression`` names for TIFF outputs (tifffile's names; those whose encoder is missing
#: here are refused): lossless ones first, which take any dtype and channel count
TIFF_COMPRESSIONS = ("zlib", "zstd", "lzw", "lzma", "deflate", "packbits", "lerc", "jpeg",
                     "png", "webp", "jpeg2000", "jpegxl", "jpegxr")
#: ``--compression`` names for Zarr outputs: the compressors of the Zarr v3 core specification
ZARR_COMPRESSIONS = ("zstd", "gzip", "blosc")

def output_kind(uri: str) -> str:
    """``"tiff"`` or ``"zarr"`` from the output's name; anything else is a usage error."""
    low = uri.lower().rstrip("/")
    if low.endswith(TIFF_EXT):
        return "tiff"
    if low.endswith(".zarr"):
        return "zarr"
    raise UsageError(
        f"OUTPUT {uri!r}: a tiled job writes a tiled BigTIFF (.tif, .tiff) or a Zarr (.zarr) "
        "store")


def _tiff_layout(channels: int) -> dict[str, Any]:
    """The photometric interpretation every TIFF written here uses for ``channels`` (gray +
    alpha and RGBA declare their alpha as an extra sample: without it tifffile cannot lay out
    a 2-sample tile)."""
    return {"photometric": "rgb" if channels in (3, 4) else "minisblack",
            "extrasamples": ("unassalpha",) if channels in (2, 4) else None}


def _tiff_encodable() -> list[str]:
    """The names of :data:`TIFF_COMPRESSIONS` whose encoder tifffile has here."""
    from tifffile import COMPRESSION, TIFF

    names = []
    for name in TIFF_COMPRESSIONS:
        tag = COMPRESSION.ADOBE_DEFLATE if name == "zlib" else COMPRESSION[name.upper()]
        try:
            TIFF.COMPRESSORS[int(tag)]
        except KeyError:  # the codec needs imagecodecs (or a build of it) that is not here
            continue
        names.append(name)
    return names


def check_compression(name: str | None, kind: str, dtype: Any = None,
                      channels: int | None = None) -> str | None:
    """Validate an output compression before any work: the normalized name, or None.

    ``kind`` is :func:`output_kind`'s answer: TIFF outputs take tifffile's codecs that can
    encode here (:data:`TIFF_COMPRESSIONS`), Zarr outputs :data:`ZARR_COMPRESSIONS`. Given the
    output's ``dtype`` and ``channels``, a TIFF codec is also tried on one small tile of that
    kind (JPEG, WebP, PNG ... take only some dtypes and channel counts). Raises
    :class:`~pixelmill.errors.InvalidParameterError` naming ``--compression`` and what is valid.
    """
    if name is None:
        return None
    key = str(name).strip().lower()
    if key in ("", "none"):
        return None
    allowed = list(ZARR_COMPRESSIONS) if kind == "zarr" else _tiff_encodable()
    if key not in allowed:
        what = "a Zarr (.zarr) output" if kind == "zarr" else "a TIFF output"
        raise InvalidParameterError(
            f"--compression: {name!r} is not available for {what}; expected one of: "
            f"{', '.join(['none', *allowed])}", field="compression")
    if kind == "zarr" or dtype is None:
        return key
    import io

    import tifffile

    chans = channels or 1
    # full-range noise, the hardest content: zeros pass codecs that then fail on real pixels
    # (16-bit gray JPEG: "DCT coefficient or spatial difference out of range")
    shape = (16, 16, chans) if channels else (16, 16)
    rng = np.random.default_rng(0)
    kind_ = np.dtype(dtype).kind
    if kind_ in "ui":
        info = np.iinfo(dtype)
        sample = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    elif kind_ == "b":
        sample = rng.integers(0, 1, shape, endpoint=True).astype(dtype)
    else:
        sample = rng.random(shape).astype(dtype)
    what = f"{np.dtype(dtype).name}, {chans} channel{'s' if chans != 1 else ''}"
    try:
        with tifffile.TiffWriter(io.BytesIO(), bigtiff=True) as tw:
            tw.write(sample, tile=(16, 16), compression=key, metadata=None, **_tiff_layout(chans))
        # some codecs write what they cannot hold without a word (tifffile writes uint16 as
        # 12-bit JPEG, int32 through JPEG 2000 comes back as other numbers): a smooth
        # full-range ramp must come back close to itself
        error = _round_trip_error(key, dtype, channels)
    except MemoryError:
        raise
    except Exception as e:  # the codec's own classes: ValueError, KeyError, RuntimeError...
        raise InvalidParameterError(
            f"--compression {key}: cannot write this pipeline's output ({what}) with it ({e}); "
            "lossless codecs such as zlib, zstd or lzw take any image",
            field="compression") from e
    if error > 0.02:
        raise InvalidParameterError(
            f"--compression {key}: cannot hold this pipeline's output ({what}): its values "
            f"do not survive a round trip (mean error {error:.0%} of the range); lossless "
            "codecs such as zlib, zstd or lzw take any image", field="compression")
    return key


def _round_trip_error(key: str, dtype: Any, channels: int | None) -> float:
    """Mean absolute error, as a fraction of the dtype's range, of a smooth full-range ramp
    written as one TIFF tile with codec ``key`` and read back (0 for lossless codecs)."""
    import io

    import tifffile

    dt = np.dtype(dtype)
    y, x = np.mgrid[0:16, 0:16].astype(np.float64)
    ramp = (y * 16 + x) / 255.0
    if channels:
        ramp = np.stack([ramp, ramp.T, (y + x) / 30.0, 1.0 - ramp][:channels], axis=-1)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        span = float(info.max) - float(info.min)
        sample = np.round(info.min + ramp * span).astype(dt)
    elif dt.kind == "b":
        span, sample = 1.0, ramp > 0.5
    else:
        span, sample = 1.0, ramp.astype(dt)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, bigtiff=True) as tw:
        tw.write(sample, tile=(16, 16), compression=key, metadata=None,
                 **_tiff_layout(channels or 1))
    buf.seek(0)
    back = tifffile.imread(buf)
    if back.shape != sample.shape:
        return 1.0
    diff = np.abs(back.astype(np.float64) - sample.astype(np.float64))
    return float(np.mean(diff)) / span if np.isfinite(diff).all() else 1.0


def _zarr_compressors(compression: str):
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    return {"zstd": ZstdCodec, "gzip": GzipCodec, "blosc": BloscCodec}[compression]()


def create_tile_store(uri: str, shape: tuple[int, ...], dtype: str, chunk: tuple[int, int], *,
                      attrs: Mapping[str, Any] | None = None, compress: bool = False,
                      compression: str | None = None,
                      storage_options: Mapping[str, Any] | None = None):
    """A fresh zarr group at ``uri`` with the full-resolution array ``0`` stored C×Y×X.

    Chunks are ``(C, chunk_h, chunk_w)`` so every tile core is exactly one chunk: workers write
    their tiles concurrently without touching each other's chunks (each chunk write is atomic).
    ``compression`` (one of :data:`ZARR_COMPRESSIONS`) compresses the chunks with that codec;
    otherwise ``compress`` picks zarr's default codec, and neither leaves them uncompressed.
    """
    import zarr

    target = uri if "://" in uri and not uri.startswith("file://") else uri.removeprefix("file://")
    kw = {"storage_options": dict(storage_options)} if "://" in target and storage_options else {}
    group = zarr.open_group(target, mode="w", **kw)
    if attrs:
        group.attrs.update(dict(attrs))
    cshape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    chunks = ((shape[2], *chunk) if len(shape) == 3 else chunk)
    compressors = (_zarr_compressors(compression) if compression
                   else "auto" if compress else None)
    # OME-Zarr 0.5: each level's dimension_names match the multiscales axes
    group.create_array("0", shape=cshape, chunks=chunks, dtype=dtype, compressors=compressors,
                       fill_value=0, dimension_names=_dimension_names(len(cshape)))
    return group


def _dimension_names(ndim: int) -> tuple[str, ...]:
    """The names of a stored level's axes (C×Y×X or Y×X), as the ``multiscales`` axes."""
    return ("c", "y", "x") if ndim == 3 else ("y", "x")


def _to_stored(data: np.ndarray) -> np.ndarray:
    return data.transpose(2, 0, 1) if data.ndim == 3 else data


def _from_stored(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data.transpose(1, 2, 0)) if data.ndim == 3 else data


def write_tile(array, box: tuple[int, int, int, int], data: np.ndarray) -> None:
    """Write ``data`` (H×W[×C]) at ``box`` of a store made by :func:`create_tile_store`."""
    y0, y1, x0, x1 = box
    if array.ndim == 3:
        array[:, y0:y1, x0:x1] = _to_stored(data)
    else:
        array[y0:y1, x0:x1] = data


def read_band(array, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of a stored level as H×W[×C]."""
    return _from_stored(np.asarray(array[:, y0:y1, :] if array.ndim == 3 else array[y0:y1, :]))


#: dtypes pyramid levels are area-averaged in (OpenCV's INTER_AREA takes these)
_AREA_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64"))


def build_pyramid(group, levels: int, band: int = 512) -> int:
    """Add levels ``1..levels`` (each half the previous, area average), band by band.

    Each level is ``floor(h / 2) x floor(w / 2)`` of the one before (an odd last row or column
    is left out). Images (uint8, uint16, float32, and the other dtypes OpenCV averages) are
    area-averaged over 2x2 blocks; other dtypes (the int32 label images of
    ``connected_components``, ``watershed``, ``slic``) keep every other pixel, so a level
    holds only labels of the level above, never an average of two.
    Stops early when a level would be smaller than 1 pixel; returns the number of levels made.
    Writes OME-Zarr ``multiscales`` metadata (axes c, y, x) for all levels.
    """
    import cv2

    average = np.dtype(group["0"].dtype) in _AREA_DTYPES
    made = 0
    prev = group["0"]
    for lev in range(1, levels + 1):
        h, w = prev.shape[-2] // 2, prev.shape[-1] // 2
        if h < 1 or w < 1:
            break
        shape = (*prev.shape[:-2], h, w)
        chunks = (*prev.chunks[:-2], min(h, prev.chunks[-2]), min(w, prev.chunks[-1]))
        # overwrite: a job killed while it built the pyramid left some levels; they are
        # derived from level 0, so a resumed job makes them again
        cur = group.create_array(str(lev), shape=shape, chunks=chunks, dtype=prev.dtype,
                                 compressors=prev.compressors or None, fill_value=0,
                                 dimension_names=_dimension_names(len(shape)), overwrite=True)
        step = max(1, band // 2)
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            src = read_band(prev, 2 * y0, 2 * y1)[:, : 2 * w]
            small = (cv2.resize(src, (w, y1 - y0), interpolation=cv2.INTER_AREA) if average
                     else src[::2, ::2])
            cur[..., y0:y1, :] = _to_stored(small.reshape((y1 - y0, w, *src.shape[2:])))
        prev = cur
        made = lev
    write_ome_metadata(group, made + 1)
    return made


def write_ome_metadata(group, n_levels: int) -> None:
    """OME-Zarr 0.5 ``multiscales`` attributes for levels ``0..n_levels-1``."""
    ndim = group["0"].ndim
    axes = ([{"name": "c", "type": "channel"}] if ndim == 3 else []) + [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = []
    for lev in range(n_levels):
        f = float(2**lev)
        scale = ([1.0] if ndim == 3 else []) + [f, f]
        datasets.append({"path": str(lev),
                         "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    group.attrs["ome"] = {"version": "0.5", "multiscales": [
        {"name": "pixelmill", "axes": axes, "datasets": datasets}]}


def _tiff_tiles(array, tile: int, band: int) -> Iterator[np.ndarray]:
    h, w = array.shape[-2], array.shape[-1]
    band = max(tile, band // tile * tile)
    for y0 in range(0, h, band):
        rows = read_band(array, y0, min(h, y0 + band))
        for ty in range(0, rows.shape[0], tile):
            for tx in range(0, w, tile):
                yield rows[ty:ty + tile, tx:tx + tile]


def write_tiff_from_zarr(group, uri: str, *, tile: int = 256, levels: int = 1,
                         compression: str | None = None, band: int | None = None,
                         storage_options: Mapping[str, Any] | None = None,
                         metadata: Mapping[str, Any] | None = None,
                         iccprofile: bytes | None = None) -> int:
    """Stream a tile store (and its pyramid levels) into a tiled BigTIFF at ``uri``
    (``iccprofile``: the colour space of the values, tagged on the full-resolution image).

    Reads ``band`` rows at a time (default: the store's chunk rows rounded up to whole TIFF
    tiles), never the whole image; levels after the first go to SubIFDs
    (the layout QuPath, OpenSlide-style viewers and tifffile read as a pyramid). The file is
    written under a side name (``.NAME.pixelmill-assemble.tif``) and renamed into place (local),
    or uploaded whole (remote).
    Returns the output's size in bytes.
    """
    import tempfile

    import tifffile

    base = group["0"]
    channels = base.shape[0] if base.ndim == 3 else 1
    fs, path = storage.get_fs(uri, storage_options)
    local = storage._is_local(fs)
    if local:  # a fixed side name: a job killed while writing it leaves no stray copy behind
        folder, name = os.path.split(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{name}.pixelmill-assemble.tif")
    else:
        fd, tmp = tempfile.mkstemp(prefix=".pixelmill-", suffix=".tif")
        os.close(fd)
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
            for lev in range(levels):
                arr = group[str(lev)]
                shape = (arr.shape[1], arr.shape[2], channels) if arr.ndim == 3 else tuple(arr.shape)
                t = min(tile, 16 * -(-max(shape[0], shape[1]) // 16))
                kw: dict[str, Any] = {}
                if lev == 0:
                    kw["subifds"] = levels - 1 if levels > 1 else None
                    kw["description"] = json.dumps({"pixelmill": dict(metadata or {})})
                    if iccprofile:
                        kw["iccprofile"] = iccprofile
                else:
                    kw["subfiletype"] = 1
                kw["metadata"] = None
                rows = band or arr.chunks[-2]
                tw.write(_tiff_tiles(arr, t, -(-rows // t) * t), shape=shape, dtype=arr.dtype,
                         tile=(t, t), compression=compression, **_tiff_layout(channels), **kw)
        size = os.path.getsize(tmp)
        if local:
            storage.ordinary_file_mode(tmp)
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)
        return size
    except OSError as e:
        raise StorageError(f"{uri}: cannot write: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---- direct tiled-TIFF output (uncompressed, local) ---------------------------------------

@dataclass(frozen=True)
class TiffCanvas:
    """An uncompressed tiled BigTIFF whose tiles lie at ``offset + k * tile_bytes`` (row-major),
    so workers can write their tiles in place, concurrently, each TIFF tile by one writer."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    tile: int
    offset: int
    tile_bytes: int
    across: int


def create_tiff_canvas(path: str, shape: tuple[int, ...], dtype: str, tile: int = 256,
                       description: str | None = None,
                       iccprofile: bytes | None = None) -> TiffCanvas | None:
    """Lay out an empty (zero) tiled BigTIFF at ``path`` (tagged with ``iccprofile``, the colour
    space of the values to come); None if its tiles are not contiguous."""
    import tifffile

    channels = shape[2] if len(shape) == 3 else 1
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(None, shape=tuple(shape), dtype=dtype, tile=(tile, tile),
                 description=description, metadata=None, iccprofile=iccprofile or None,
                 **_tiff_layout(channels))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
    tile_bytes = tile * tile * channels * np.dtype(dtype).itemsize
    if not (counts == tile_bytes).all() or not (np.diff(offsets) == tile_bytes).all():
        return None
    return TiffCanvas(path, tuple(shape), np.dtype(dtype).name, tile, int(offsets[0]),
                      tile_bytes, -(-shape[1] // tile))


def write_canvas(canvas: TiffCanvas, box: tuple[int, int, int, int], data: np.ndarray) -> None:
    """Write ``data`` at ``box`` (output pixels) into the canvas's TIFF tiles.

    ``box`` must start on tile boundaries and end on one or at the image's edge, so the TIFF
    tiles it covers belong to this writer alone.
    """
    y0, y1, x0, x1 = box
    t = canvas.tile
    if y0 % t or x0 % t or (y1 % t and y1 != canvas.shape[0]) or (x1 % t and x1 != canvas.shape[1]):
        raise ValueError(f"box {box} is not aligned to {t}-pixel TIFF tiles")
    data = np.asarray(data, dtype=canvas.dtype)
    fd = os.open(canvas.path, os.O_WRONLY)
    try:
        pad = np.zeros((t, t, *data.shape[2:]), canvas.dtype)
        for ty in range(y0, y1, t):
            for tx in range(x0, x1, t):
                part = data[ty - y0:ty - y0 + t, tx - x0:tx - x0 + t]
                if part.shape[:2] != (t, t):
                    pad[...] = 0
                    pad[:part.shape[0], :part.shape[1]] = part
                    part = pad
                k = (ty // t) * canvas.across + tx // t
                _pwrite_all(fd, np.ascontiguousarray(part).data,
                            canvas.offset + k * canvas.tile_bytes)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """All of ``data`` at ``offset``: ``pwrite`` may write part of it and say how much (a disk
    that fills mid-write, a copy-on-write filesystem allocating the overwritten blocks, a file
    size limit); the rest is written again, so a full disk raises ``ENOSPC`` instead of leaving
    a tile half written under an ``ok`` row."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # pragma: no cover - a regular file's pwrite raises rather than 0
            raise OSError(28, "No space left on device")
        view, offset = view[n:], offset + n
