"""Region readers and tile writers for images too large to hold: read a window, never the whole.

Readers are described by a :class:`RegionSource` — a small, picklable value (URI, storage
options, layout) that a worker opens itself; open handles are cached per process.

- TIFF / BigTIFF, tiled or striped, pyramidal or not (tifffile's zarr view of a page reads only
  the tiles or strips a window touches),
- Zarr arrays and OME-Zarr multiscale groups (zarr, any fsspec URL),
- NumPy ``.npy`` files (memory-mapped locally, byte ranges of whole rows on other filesystems),
- everything else (JPEG, PNG, ...) has no random access: it is decoded **once** and spilled to a
  disk-backed ``.npy`` (written band by band), which the tiles then read.

Outputs are assembled by :mod:`pixelmill.tiled` in a chunked Zarr store (one chunk per tile,
written atomically by the workers); :func:`write_tiff_from_zarr` streams that store into a tiled
BigTIFF (optionally with a pyramid in SubIFDs), and :func:`build_pyramid` adds OME-Zarr levels.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import DecodeError, StorageError, UsageError

__all__ = [
    "RegionSource",
    "TiffCanvas",
    "build_pyramid",
    "create_tiff_canvas",
    "create_tile_store",
    "open_source",
    "open_zarr_array",
    "output_kind",
    "read_region",
    "write_canvas",
    "write_tiff_from_zarr",
]

TIFF_EXT = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff")
#: a TIFF strip/tile larger than this is spilled once instead of decoded per tile
MAX_SEGMENT_BYTES = 32 * 2**20


@dataclass(frozen=True)
class RegionSource:
    """A picklable reference to an image that can be read window by window.

    ``axes`` names the stored array's axes with ``Y``, ``X``, ``C`` (samples) and ``I`` (any
    other axis, read at index 0); reads always return ``H×W`` or ``H×W×C``.
    """

    uri: str
    kind: str  #: "tiff", "zarr", "npy"
    shape: tuple[int, ...]  #: (H, W) or (H, W, C), as read
    dtype: str
    axes: str
    level: int = 0
    path: str = ""  #: array path inside a zarr group
    storage_options: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.storage_options)


def _so(storage_options: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((storage_options or {}).items()))


def _norm_axes(axes: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Map a stored layout to ours: (axes with Y, X, C, I) and the read shape."""
    axes = axes.upper().replace("S", "C")
    out = []
    for a in axes:
        out.append(a if a in "YXC" else "I")
    axes = "".join(out)
    if "Y" not in axes or "X" not in axes:
        raise DecodeError(f"image axes {axes!r} have no Y and X")
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    if "C" in axes and shape[axes.index("C")] > 1:
        return axes, (h, w, shape[axes.index("C")])
    return axes, (h, w)


def _guess_axes(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXC" if shape[2] <= 4 or shape[0] > 4 else "CYX"
    return "I" * (len(shape) - 3) + ("YXC" if shape[-1] <= 4 else "CYX")


# ---- opening ------------------------------------------------------------------------------

def _is_zarr(uri: str, storage_options: Mapping[str, Any] | None) -> bool:
    if uri.rstrip("/").endswith(".zarr"):
        return True
    fs, path = storage.get_fs(uri, storage_options)
    return any(fs.exists(f"{path.rstrip('/')}/{name}") for name in ("zarr.json", ".zarray", ".zgroup"))


def open_zarr_array(uri: str, path: str = "", storage_options: Mapping[str, Any] | None = None,
                    mode: str = "r"):
    """A zarr array at ``uri`` (``path`` inside a group), on any fsspec URL."""
    import zarr

    target = uri.rstrip("/") + (f"/{path}" if path else "")
    if "://" in target and not target.startswith("file://"):
        return zarr.open_array(target, mode=mode, storage_options=dict(storage_options or {}))
    return zarr.open_array(target.removeprefix("file://"), mode=mode)


def _ome_multiscales(attrs: Mapping[str, Any]) -> list[dict] | None:
    if "multiscales" in attrs:
        return list(attrs["multiscales"])
    ome = attrs.get("ome")
    if isinstance(ome, Mapping) and "multiscales" in ome:
        return list(ome["multiscales"])
    return None


def _open_zarr_source(uri: str, so: Mapping[str, Any] | None, level: int) -> RegionSource:
    import zarr

    target = uri if "://" in uri and not uri.startswith("file://") else uri.removeprefix("file://")
    kw = {"storage_options": dict(so)} if "://" in target and so else {}
    try:
        node = zarr.open(target, mode="r", **kw)
    except Exception as e:  # zarr raises several kinds for a missing/odd store
        raise StorageError(f"{uri}: cannot open as zarr: {e}") from e
    path, axes = "", None
    if isinstance(node, zarr.Group):
        ms = _ome_multiscales(dict(node.attrs))
        if ms:
            datasets = ms[0]["datasets"]
            if level >= len(datasets):
                raise UsageError(f"{uri}: level {level} not found ({len(datasets)} levels)")
            path = datasets[level]["path"]
            names = [a["name"] if isinstance(a, Mapping) else str(a) for a in ms[0].get("axes", [])]
            if names:
                axes = "".join({"y": "Y", "x": "X", "c": "C"}.get(n.lower(), "I") for n in names)
        else:
            arrays = sorted(name for name, _ in node.arrays())
            if not arrays:
                raise DecodeError(f"{uri}: zarr group holds no arrays")
            path = arrays[0]
        node = node[path]
    shape = tuple(node.shape)
    axes, read_shape = _norm_axes(axes or _guess_axes(shape), shape)
    return RegionSource(uri, "zarr", read_shape, np.dtype(node.dtype).name, axes, level, path,
                        _so(so))


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    if major == 1:
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _open_npy_source(uri: str, so: Mapping[str, Any] | None) -> RegionSource:
    fs, path = storage.get_fs(uri, so)
    with fs.open(path, "rb") as f:
        shape, fortran, dtype = _read_npy_header(f)
    if fortran:
        raise DecodeError(f"{uri}: Fortran-ordered .npy is not supported; save it C-ordered")
    shape = tuple(shape)
    axes, read_shape = _norm_axes(_guess_axes(shape), shape)
    if axes not in ("YX", "YXC"):
        raise DecodeError(f"{uri}: .npy must be H×W or H×W×C, got shape {shape}")
    return RegionSource(uri, "npy", read_shape, np.dtype(dtype).name, axes, 0, "", _so(so))


def _open_tiff_source(uri: str, so: Mapping[str, Any] | None, level: int):
    import tifffile

    fs, path = storage.get_fs(uri, so)
    try:
        with fs.open(path, "rb") as fh, tifffile.TiffFile(fh) as tif:
            series = tif.series[0]
            if level >= len(series.levels):
                raise UsageError(f"{uri}: level {level} not found ({len(series.levels)} levels)")
            lev = series.levels[level]
            page = lev.keyframe
            segment = (page.tilelength * page.tilewidth if page.is_tiled
                       else page.rowsperstrip * page.imagewidth)
            segment *= page.samplesperpixel * np.dtype(lev.dtype).itemsize
            axes, read_shape = _norm_axes(lev.axes, tuple(lev.shape))
            dtype = np.dtype(lev.dtype).name
    except (tifffile.TiffFileError, ValueError, IndexError) as e:
        raise DecodeError(f"{uri}: not a readable TIFF: {e}") from e
    source = RegionSource(uri, "tiff", read_shape, dtype, axes, level, "", _so(so))
    return source, segment


def open_source(
    uri: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    level: int = 0,
    spill_uri: str | None = None,
) -> RegionSource:
    """Probe ``uri`` (headers only) and return a reference its windows can be read from.

    Formats without random access, and TIFFs whose strips are huge, are decoded once into a
    ``.npy`` at ``spill_uri`` (required for them) and the returned source reads that.
    """
    low = uri.lower().rstrip("/")
    if low.endswith(".npy"):
        return _open_npy_source(uri, storage_options)
    if _is_zarr(uri, storage_options):
        return _open_zarr_source(uri, storage_options, level)
    if low.endswith(TIFF_EXT):
        source, segment = _open_tiff_source(uri, storage_options, level)
        if segment <= MAX_SEGMENT_BYTES or spill_uri is None:
            return source
        return _spill_tiff(source, spill_uri)
    if spill_uri is None:
        raise UsageError(f"{uri}: this format has no random access; a spill location is needed")
    return _spill_decoded(uri, storage_options, spill_uri)


# ---- spilling (decode once into a disk-backed array) --------------------------------------

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
    with fs.open(tmp, "wb") as f:
        f.write(_npy_header(shape, dtype))
        for band in bands:
            f.write(np.ascontiguousarray(band, dtype=dtype).tobytes())
    fs.mv(tmp, path)


def _spill_tiff(source: RegionSource, spill_uri: str) -> RegionSource:
    band_rows = max(1, MAX_SEGMENT_BYTES // max(1, source.width * source.channels
                                                 * np.dtype(source.dtype).itemsize))
    bands = (read_region(source, (y0, min(source.height, y0 + band_rows), 0, source.width))
             for y0 in range(0, source.height, band_rows))
    _write_npy_bands(spill_uri, source.shape, source.dtype, bands)
    return _open_npy_source(spill_uri, None)


def _spill_decoded(uri: str, so: Mapping[str, Any] | None, spill_uri: str) -> RegionSource:
    """Decode a JPEG/PNG/... once (Pillow) and write it band by band to a ``.npy``."""
    from PIL import Image

    fs, path = storage.get_fs(uri, so)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the caller chose to tile this image; it is huge on purpose
    try:
        with fs.open(path, "rb") as fh, Image.open(fh) as im:
            im.load()
            if im.mode not in ("L", "RGB", "RGBA", "I;16", "I;16B", "I;16L"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            w, h = im.size
            first = np.asarray(im.crop((0, 0, w, min(h, 1))))
            shape = (h, w, *first.shape[2:])
            dtype = np.uint16 if first.dtype.kind in "ui" and first.dtype.itemsize == 2 else first.dtype
            band_rows = max(1, (16 * 2**20) // max(1, first.nbytes))
            bands = (np.asarray(im.crop((0, y0, w, min(h, y0 + band_rows))))
                     for y0 in range(0, h, band_rows))
            _write_npy_bands(spill_uri, shape, dtype, bands)
    except (OSError, ValueError, SyntaxError) as e:
        raise DecodeError(f"{uri}: cannot decode: {e}") from e
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return _open_npy_source(spill_uri, None)


# ---- reading windows ----------------------------------------------------------------------

_HANDLES: OrderedDict[RegionSource, Any] = OrderedDict()
_MAX_HANDLES = 4


def _close(handle: Any) -> None:
    for h in handle[1:] if isinstance(handle, tuple) else ():
        close = getattr(h, "close", None)
        if close is not None:
            close()


def _handle(source: RegionSource) -> Any:
    h = _HANDLES.get(source)
    if h is not None:
        _HANDLES.move_to_end(source)
        return h
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
        h = (np.load(path, mmap_mode="r"),) if storage._is_local(fs) else ("ranges", fs, path)
    else:  # pragma: no cover - RegionSource is built by open_source only
        raise ValueError(source.kind)
    _HANDLES[source] = h
    while len(_HANDLES) > _MAX_HANDLES:
        _close(_HANDLES.popitem(last=False)[1])
    return h


def _npy_rows(fs, path: str, source: RegionSource, y0: int, y1: int) -> np.ndarray:
    with fs.open(path, "rb") as f:
        _read_npy_header(f)
        offset = f.tell()
        row = source.width * source.channels * np.dtype(source.dtype).itemsize
        f.seek(offset + y0 * row)
        data = f.read((y1 - y0) * row)
    return np.frombuffer(data, dtype=source.dtype).reshape((y1 - y0, *source.shape[1:]))


class _RawSegments:
    """Windows of an uncompressed, chunky, native-order TIFF page read with ``os.pread`` from
    its tile/strip offsets (no decoder, no per-chunk Python machinery)."""

    def __init__(self, fd: int, page, source: RegionSource) -> None:
        self.fd = fd
        self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self.counts = np.asarray(page.databytecounts, dtype=np.int64)
        self.tiled = page.is_tiled
        self.th = page.tilelength if self.tiled else page.rowsperstrip
        self.tw = page.tilewidth if self.tiled else source.width
        self.spp = page.samplesperpixel
        self.dtype = np.dtype(source.dtype)
        self.width = source.width
        self.across = -(-source.width // self.tw)

    @classmethod
    def make(cls, tif, source: RegionSource) -> _RawSegments | None:
        try:
            lev = tif.series[0].levels[source.level]
            page = lev.keyframe
            ok = (len(lev.pages) == 1 and page.compression == 1 and page.predictor == 1
                  and (page.planarconfig == 1 or page.samplesperpixel == 1)
                  and page.fillorder == 1 and page.imagedepth == 1
                  and np.dtype(page.dtype).newbyteorder(tif.byteorder) == np.dtype(source.dtype)
                  and np.dtype(source.dtype).isnative
                  and page.bitspersample == np.dtype(source.dtype).itemsize * 8
                  and source.axes in ("YX", "YXC"))
            page = lev.pages[0]
            return cls(tif.filehandle.fileno(), page, source) if ok else None
        except (AttributeError, OSError, TypeError, ValueError):  # unusual files: the zarr path
            return None

    def _segment(self, k: int, rows: int, cols: int) -> np.ndarray:
        if k >= len(self.offsets) or self.offsets[k] == 0 or self.counts[k] == 0:
            return np.zeros((rows, cols, self.spp), self.dtype)
        data = os.pread(self.fd, int(self.counts[k]), int(self.offsets[k]))
        return np.frombuffer(data, self.dtype).reshape(rows, cols, self.spp)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0, self.spp), self.dtype)
        th, tw = self.th, self.tw
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            sy0, sy1 = max(y0, ty * th), min(y1, (ty + 1) * th)
            if not self.tiled:  # a strip: read only the rows needed
                row_bytes = self.width * self.spp * self.dtype.itemsize
                data = os.pread(self.fd, (sy1 - sy0) * row_bytes,
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


def _read_inside(source: RegionSource, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    h = _handle(source)
    if isinstance(h[0], _RawSegments):
        data = h[0].read(y0, y1, x0, x1)
        return data[..., 0] if len(source.shape) == 2 else data
    if source.kind == "npy":
        if isinstance(h[0], str):
            return _npy_rows(h[1], h[2], source, y0, y1)[:, x0:x1].copy()
        return np.array(h[0][y0:y1, x0:x1])
    arr = h[0]
    index = []
    for a in source.axes:
        index.append(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X"
                     else slice(None) if a == "C" else 0)
    data = np.asarray(arr[tuple(index)])
    kept = [a for a in source.axes if a != "I"]
    order = [kept.index(a) for a in "YXC" if a in kept]
    data = data.transpose(order)
    if data.ndim == 3 and len(source.shape) == 2:
        data = data[..., 0]
    return np.ascontiguousarray(data)


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


# ---- writing ------------------------------------------------------------------------------

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


def create_tile_store(uri: str, shape: tuple[int, ...], dtype: str, chunk: tuple[int, int], *,
                      attrs: Mapping[str, Any] | None = None, compress: bool = False,
                      storage_options: Mapping[str, Any] | None = None):
    """A fresh zarr group at ``uri`` with the full-resolution array ``0`` stored C×Y×X.

    Chunks are ``(C, chunk_h, chunk_w)`` so every tile core is exactly one chunk: workers write
    their tiles concurrently without touching each other's chunks (each chunk write is atomic).
    """
    import zarr

    target = uri if "://" in uri and not uri.startswith("file://") else uri.removeprefix("file://")
    kw = {"storage_options": dict(storage_options)} if "://" in target and storage_options else {}
    group = zarr.open_group(target, mode="w", **kw)
    if attrs:
        group.attrs.update(dict(attrs))
    cshape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    chunks = ((shape[2], *chunk) if len(shape) == 3 else chunk)
    group.create_array("0", shape=cshape, chunks=chunks, dtype=dtype,
                       compressors="auto" if compress else None, fill_value=0)
    return group


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


def build_pyramid(group, levels: int, band: int = 512) -> int:
    """Add levels ``1..levels`` (each half the previous, area average), band by band.

    Stops early when a level would be smaller than 1 pixel; returns the number of levels made.
    Writes OME-Zarr ``multiscales`` metadata (axes c, y, x) for all levels.
    """
    import cv2

    made = 0
    prev = group["0"]
    for lev in range(1, levels + 1):
        h, w = prev.shape[-2] // 2, prev.shape[-1] // 2
        if h < 1 or w < 1:
            break
        shape = (*prev.shape[:-2], h, w)
        chunks = (*prev.chunks[:-2], min(h, prev.chunks[-2]), min(w, prev.chunks[-1]))
        cur = group.create_array(str(lev), shape=shape, chunks=chunks, dtype=prev.dtype,
                                 compressors=prev.compressors or None, fill_value=0)
        step = max(1, band // 2)
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            src = read_band(prev, 2 * y0, 2 * y1)[:, : 2 * w]
            small = cv2.resize(src, (w, y1 - y0), interpolation=cv2.INTER_AREA)
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
                         metadata: Mapping[str, Any] | None = None) -> int:
    """Stream a tile store (and its pyramid levels) into a tiled BigTIFF at ``uri``.

    Reads ``band`` rows at a time (default: the store's chunk rows rounded up to whole TIFF
    tiles), never the whole image; levels after the first go to SubIFDs
    (the layout QuPath, OpenSlide-style viewers and tifffile read as a pyramid). The file is
    written under a temporary name and renamed into place (local), or uploaded whole (remote).
    Returns the output's size in bytes.
    """
    import tempfile

    import tifffile

    base = group["0"]
    channels = base.shape[0] if base.ndim == 3 else 1
    photometric = "rgb" if channels in (3, 4) else "minisblack"
    extrasamples = ("unassalpha",) if channels == 4 else None
    fs, path = storage.get_fs(uri, storage_options)
    local = storage._is_local(fs)
    folder = os.path.dirname(os.path.abspath(path)) if local else None
    if local:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pixelmill-", suffix=".tif", dir=folder)
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
                else:
                    kw["subfiletype"] = 1
                kw["metadata"] = None
                rows = band or arr.chunks[-2]
                tw.write(_tiff_tiles(arr, t, -(-rows // t) * t), shape=shape, dtype=arr.dtype, tile=(t, t),
                         photometric=photometric, extrasamples=extrasamples,
                         compression=compression, **kw)
        size = os.path.getsize(tmp)
        if local:
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
                       description: str | None = None) -> TiffCanvas | None:
    """Lay out an empty (zero) tiled BigTIFF at ``path``; None if its tiles are not contiguous."""
    import tifffile

    channels = shape[2] if len(shape) == 3 else 1
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(None, shape=tuple(shape), dtype=dtype, tile=(tile, tile),
                 photometric="rgb" if channels in (3, 4) else "minisblack",
                 extrasamples=("unassalpha",) if channels == 4 else None,
                 description=description, metadata=None)
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
                os.pwrite(fd, np.ascontiguousarray(part).data, canvas.offset + k * canvas.tile_bytes)
    finally:
        os.close(fd)
