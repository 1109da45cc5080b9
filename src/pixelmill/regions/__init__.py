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

from pixelmill.errors import UsageError
from pixelmill.regions._read import read_region, release
from pixelmill.regions._source import (
    MAX_SEGMENT_BYTES,
    TIFF_EXT,
    RegionSource,
    check_level,
    open_source,
    open_zarr_array,
)
from pixelmill.regions._write import (
    TIFF_COMPRESSIONS,
    ZARR_COMPRESSIONS,
    TiffCanvas,
    build_pyramid,
    check_compression,
    create_tiff_canvas,
    create_tile_store,
    output_kind,
    read_band,
    write_canvas,
    write_ome_metadata,
    write_tiff_from_zarr,
    write_tile,
)

__all__ = [
    "MAX_SEGMENT_BYTES",
    "TIFF_COMPRESSIONS",
    "TIFF_EXT",
    "ZARR_COMPRESSIONS",
    "RegionSource",
    "TiffCanvas",
    "UsageError",
    "build_pyramid",
    "check_compression",
    "check_level",
    "create_tiff_canvas",
    "create_tile_store",
    "open_source",
    "open_zarr_array",
    "output_kind",
    "read_band",
    "read_region",
    "release",
    "write_canvas",
    "write_ome_metadata",
    "write_tiff_from_zarr",
    "write_tile",
]
