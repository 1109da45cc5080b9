"""Probing inputs into picklable :class:`RegionSource` references (headers only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.codecs._decode import TIFF_PHOTOMETRIC as PHOTOMETRIC
from pixelmill.errors import DecodeError, InvalidParameterError, StorageError, UsageError
from pixelmill.regions._samples import decoded_layout

__all__ = ["MAX_SEGMENT_BYTES", "TIFF_EXT", "RegionSource", "check_level", "open_source",
           "open_zarr_array"]

TIFF_EXT = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff")
#: a TIFF strip/tile larger than this is spilled once instead of decoded per tile
MAX_SEGMENT_BYTES = 32 * 2**20


@dataclass(frozen=True)
class RegionSource:
    """A picklable reference to an image that can be read window by window.

    ``axes`` names the stored array's axes with ``Y``, ``X``, ``C`` (samples) and ``I`` (any
    other axis, read at index 0); reads always return ``H×W`` or ``H×W×C``.

    ``shape``/``dtype`` are what reads return: a TIFF is turned upright (its ``orientation``
    tag) and its samples converted (``photometric``, float64 as float32, ...) exactly as the
    in-memory decoder does (:mod:`pixelmill.regions._samples`); ``stored_shape`` and
    ``stored_dtype`` describe the file's own grid when they differ.
    """

    uri: str
    kind: str  #: "tiff", "zarr", "npy"
    shape: tuple[int, ...]  #: (H, W) or (H, W, C), as read
    dtype: str
    axes: str
    level: int = 0
    path: str = ""  #: array path inside a zarr group
    storage_options: tuple[tuple[str, Any], ...] = field(default=())
    orientation: int = 1  #: TIFF/EXIF orientation (1–8) applied on reading; 1: as stored
    photometric: str = ""  #: stored samples converted on reading: miniswhite, palette, cmyk
    stored_shape: tuple[int, ...] = ()  #: (H, W[, C]) as stored; () when it is ``shape``
    stored_dtype: str = ""  #: the file's sample type; "" when it is ``dtype``

    @property
    def raw_shape(self) -> tuple[int, ...]:
        """The stored grid, before orientation and sample conversion."""
        return self.stored_shape or self.shape

    @property
    def raw_dtype(self) -> str:
        """The stored sample type, before conversion."""
        return self.stored_dtype or self.dtype

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
        return _thaw(self.storage_options)


def _freeze(value: Any) -> Any:
    """Nested dicts/lists as hashable tuples (a source is a cache key in workers)."""
    if isinstance(value, Mapping):
        return ("__map__", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("__seq__", tuple(_freeze(v) for v in value))
    return value


def _thaw_value(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__map__":
        return {k: _thaw_value(v) for k, v in value[1]}
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__seq__":
        return [_thaw_value(v) for v in value[1]]
    return value


def _thaw(frozen: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: _thaw_value(v) for k, v in frozen}


def _so(storage_options: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), _freeze(v)) for k, v in (storage_options or {}).items()))


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


def check_level(uri: str, level: int, levels: int) -> None:
    """Refuse a pyramid ``level`` the input does not have (a usage error naming ``--level``)."""
    if not 0 <= level < levels:
        have = "only level 0" if levels == 1 else f"levels 0 to {levels - 1}"
        raise InvalidParameterError(
            f"--level {level}: {uri} has {levels} pyramid level{'s' if levels != 1 else ''} "
            f"({have})", field="level")


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
            check_level(uri, level, len(datasets))
            path = datasets[level]["path"]
            names = [a["name"] if isinstance(a, Mapping) else str(a) for a in ms[0].get("axes", [])]
            if names:
                axes = "".join({"y": "Y", "x": "X", "c": "C"}.get(n.lower(), "I") for n in names)
        else:
            arrays = sorted(name for name, _ in node.arrays())
            if not arrays:
                raise DecodeError(f"{uri}: zarr group holds no arrays")
            path = arrays[0]
            check_level(uri, level, 1)
        node = node[path]
    else:
        check_level(uri, level, 1)
    shape = tuple(node.shape)
    axes, read_shape = _norm_axes(axes or _guess_axes(shape), shape)
    stored = np.dtype(node.dtype).name
    _, dtype = decoded_layout(uri, read_shape, stored, strict=False,
                              detail=f" (array shape {shape}, read as axes {axes})")
    return RegionSource(uri, "zarr", read_shape, dtype, axes, level, path, _so(so),
                        stored_dtype=stored if stored != dtype else "")


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
    stored = np.dtype(dtype).name
    _, out_dtype = decoded_layout(uri, read_shape, stored, strict=False,
                                  detail=f" (array shape {shape})")
    return RegionSource(uri, "npy", read_shape, out_dtype, axes, 0, "", _so(so),
                        stored_dtype=stored if stored != out_dtype else "")


def _open_tiff_source(uri: str, so: Mapping[str, Any] | None, level: int):
    import tifffile

    fs, path = storage.get_fs(uri, so)
    try:
        with fs.open(path, "rb") as fh, tifffile.TiffFile(fh) as tif:
            series = tif.series[0]
            check_level(uri, level, len(series.levels))
            lev = series.levels[level]
            page = lev.keyframe
            segment = (page.tilelength * page.tilewidth if page.is_tiled
                       else min(page.rowsperstrip, page.imagelength) * page.imagewidth)
            segment *= page.samplesperpixel * np.dtype(lev.dtype).itemsize
            axes, read_shape = _norm_axes(lev.axes, tuple(lev.shape))
            stored = np.dtype(lev.dtype).name
            photometric = PHOTOMETRIC.get(int(page.photometric), "")
            # the in-memory decoder turns the image upright by the first page's tag
            tag = tif.pages.first.tags.get("Orientation")
            orientation = int(tag.value) if tag is not None else 1
    except UsageError:  # a ValueError too, but the user's mistake, not the file's
        raise
    except (tifffile.TiffFileError, ValueError, IndexError) as e:
        raise DecodeError(f"{uri}: not a readable TIFF: {e}") from e
    orientation = orientation if 1 <= orientation <= 8 else 1
    shape, dtype = decoded_layout(uri, read_shape, stored, photometric)
    if orientation in (5, 6, 7, 8):
        shape = (shape[1], shape[0], *shape[2:])
    changed = shape != read_shape or dtype != stored
    source = RegionSource(uri, "tiff", shape, dtype, axes, level, "", _so(so), orientation,
                          photometric, read_shape if changed else (),
                          stored if dtype != stored else "")
    return source, segment


def open_source(
    uri: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    level: int = 0,
    spill_uri: str | None = None,
    memory: int | None = None,
) -> RegionSource:
    """Probe ``uri`` (headers only) and return a reference its windows can be read from.

    Formats without random access, and TIFFs whose strips are huge, are decoded once into a
    ``.npy`` at ``spill_uri`` (required for them) and the returned source reads that. Reads
    follow the in-memory decoder (:func:`pixelmill.codecs.decode`): orientation applied,
    float64 read as float32, palettes and CMYK as RGB; what it refuses is refused here.

    A format decoded whole is refused, before decoding, when its header claims more than
    :data:`pixelmill.codecs.DEFAULT_MAX_PIXELS` pixels or the decode would not fit ``memory``
    bytes (default: the memory available now); region-read inputs (TIFF, Zarr, ``.npy``) have
    no pixel limit.

    Raises :class:`~pixelmill.errors.StorageError` (``URI: no such file``) for a missing input,
    :class:`~pixelmill.errors.InvalidParameterError` for a ``level`` it does not have,
    :class:`~pixelmill.errors.PixelLimitError` for an image too big to decode whole and
    :class:`~pixelmill.errors.DecodeError` for a file that is not a readable image (or has
    more than 4 channels, or a sample type the in-memory decoder refuses); all before anything
    is decoded or written.
    """
    fs, path = storage.get_fs(uri, storage_options)
    try:
        exists = fs.exists(path)
    except OSError as e:
        raise StorageError(f"{uri}: cannot read: {e}") from e
    if not exists:
        raise StorageError(f"{uri}: no such file")
    if storage.is_local(fs):  # a pipe would be waited on forever, /dev/zero read without end
        storage.check_regular(path, uri)
    low = uri.lower().rstrip("/")
    if low.endswith(".npy"):
        check_level(uri, level, 1)
        return _open_npy_source(uri, storage_options)
    if _is_zarr(uri, storage_options):
        return _open_zarr_source(uri, storage_options, level)
    if low.endswith(TIFF_EXT):
        source, segment = _open_tiff_source(uri, storage_options, level)
        if segment <= MAX_SEGMENT_BYTES or spill_uri is None:
            return source
        from pixelmill.regions._spill import check_segment_memory, spill_tiff

        check_segment_memory(source, segment, memory)
        return spill_tiff(source, spill_uri)
    if spill_uri is None:
        raise UsageError(f"{uri}: this format has no random access; a spill location is needed")
    check_level(uri, level, 1)
    from pixelmill.regions._spill import spill_decoded

    return spill_decoded(uri, storage_options, spill_uri, memory=memory)
