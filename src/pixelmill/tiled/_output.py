"""Where a tiled job's output takes shape: side files, the in-place TIFF canvas, the tile
store and its assembly into the final TIFF or OME-Zarr."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pixelmill import regions, storage
from pixelmill.errors import StorageError
from pixelmill.tiled._worker import CHUNK_ROWS
from pixelmill.tiling import scale_box

__all__ = ["assemble", "canvas_tile", "chunk_for", "finish_canvas", "input_profile",
           "open_canvas", "output_bytes", "sidecar", "store_attrs"]


def sidecar(output_uri: str, suffix: str) -> str:
    """A hidden side file beside the output: ``dir/.name.<suffix>``."""
    out = output_uri.rstrip("/")
    if "://" in out:
        head, _, name = out.rpartition("/")
        return f"{head}/.{name}.{suffix}"
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(folder, f".{name}.{suffix}")


def input_profile(pipeline, input_uri: str, so: Mapping[str, Any]) -> bytes | None:
    """The input's ICC profile when the output's values are still in the input's colour space
    (:attr:`pixelmill.pipeline.Pipeline.keeps_colour_space`), read from its header only; the
    output is tagged with it where its colour model fits (:func:`_fitting`)."""
    from pixelmill.codecs._icc import icc_profile_of_file

    if not pipeline.keeps_colour_space:
        return None
    try:
        with storage.open_ranged(input_uri, so) as f:
            return icc_profile_of_file(f)
    except Exception:
        return None


def _fitting(profile: bytes | None, shape: tuple[int, ...], channels_first: bool) -> bytes | None:
    """The profile a TIFF of this output holds, by the rule :func:`pixelmill.codecs.encode`
    follows (a store's shape is C×H×W)."""
    from pixelmill.codecs._encode import embedded_profile

    if channels_first and len(shape) == 3:
        shape = (*shape[1:], shape[0])
    return embedded_profile(profile, tuple(shape), "tif")


def output_bytes(output_uri: str, so: Mapping[str, Any] | None = None) -> int | None:
    """The size of an output: a file's, or the sum of a Zarr store's files; None if absent."""
    fs, path = storage.get_fs(output_uri, so)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    if info.get("type") == "file":
        return int(info.get("size") or 0)
    return int(sum(v.get("size", 0) or 0 for v in fs.find(path, detail=True).values()))


def store_attrs(store_uri: str, so: Mapping[str, Any]) -> dict[str, Any]:
    import zarr

    fs, path = storage.get_fs(store_uri, so)
    local = storage._is_local(fs)
    try:
        group = zarr.open_group(path if local else store_uri, mode="r",
                                **({} if local or not so else {"storage_options": so}))
        return dict(group.attrs)
    except Exception:  # an unreadable leftover store is simply not resumable
        return {}


def canvas_tile(chunk: tuple[int, int], n_tiles: int, out_shape) -> int | None:
    """The TIFF tile size that lets tile cores be written in place, or None."""
    rows, cols = chunk
    for t in (256, 128, 512, 64, 1024, 32, 16):
        if (rows % t == 0 or rows >= out_shape[0]) and (cols % t == 0 or cols >= out_shape[1]):
            return t if n_tiles > 1 or t <= max(out_shape[:2]) else None
    return None


def open_canvas(output_uri, out_shape, out_dtype, tile, fingerprint, resume, iccprofile=None):
    """The partial TIFF being written in place (reused when resuming the same plan)."""
    path = sidecar(output_uri, "pixelmill-partial.tif")
    plan_path = sidecar(output_uri, "pixelmill-partial.json")
    if resume and os.path.exists(path) and os.path.exists(plan_path):
        with open(plan_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("pixelmill_plan") == fingerprint and saved.get("canvas"):
            return regions.TiffCanvas(**{**saved["canvas"],
                                         "shape": tuple(saved["canvas"]["shape"])}), True
    try:
        canvas = regions.create_tiff_canvas(
            path, out_shape, out_dtype, tile,
            description=json.dumps({"pixelmill": {"pipeline": fingerprint["pipeline"]}}),
            iccprofile=_fitting(iccprofile, tuple(out_shape), False))
    except OSError as e:
        # a full disk (or quota, or file size limit) while the canvas's zeros were written: the
        # part written would hold that space for nothing, and no plan says it is a canvas
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise StorageError(f"OUTPUT: {output_uri}: cannot write the output ({path}): "
                           f"{e.strerror or e}") from e
    if canvas is None:  # pragma: no cover - tifffile laid the tiles out unexpectedly
        os.unlink(path)
        return None, False
    storage.write_atomic(plan_path, json.dumps({"pixelmill_plan": fingerprint,
                                                "canvas": asdict(canvas)}).encode())
    return canvas, False


def finish_canvas(canvas, output_uri: str) -> int:
    os.replace(canvas.path, storage.get_fs(output_uri)[1])
    os.unlink(sidecar(output_uri, "pixelmill-partial.json"))
    return os.path.getsize(storage.get_fs(output_uri)[1])


def chunk_for(windows, plan, shape) -> tuple[int, int]:
    """Chunks of the tile store: a tile core's output width, and 256 rows when that divides the
    core's output height (so assembling reads 256-row bands without re-reading chunks)."""
    y0, y1, x0, x1 = scale_box(windows[0].core, plan.scale, shape)
    rows, cols = max(1, y1 - y0), max(1, x1 - x0)
    if len(windows) > 1 and rows % CHUNK_ROWS == 0:
        rows = CHUNK_ROWS
    return rows, cols


def assemble(store_uri, so, output_uri, out_kind, pyramid, compression, fingerprint,
             iccprofile=None) -> int:
    """Finish the output from the tile store (pyramid, OME metadata, TIFF or the Zarr itself);
    returns the output's size in bytes."""
    import zarr

    fs, store_path = storage.get_fs(store_uri, so)
    local = storage._is_local(fs)
    group = zarr.open_group(store_path if local else store_uri, mode="r+",
                            **({} if local or not so else {"storage_options": so}))
    base = group["0"]
    levels = 0
    if pyramid:
        side = max(base.shape[-2:])
        levels = max(0, math.ceil(math.log2(max(1, side / 256))))
        levels = regions.build_pyramid(group, levels)
    else:
        regions.write_ome_metadata(group, 1)
    if out_kind == "tiff":
        channels = base.shape[0] if base.ndim == 3 else None
        # a whole-image unit learns its output dtype only now
        regions.check_compression(compression, out_kind, base.dtype, channels)
        size = regions.write_tiff_from_zarr(group, output_uri, levels=levels + 1,
                                            compression=compression, storage_options=so,
                                            metadata={"pipeline": fingerprint["pipeline"]},
                                            iccprofile=_fitting(iccprofile, base.shape, True))
        fs.rm(store_path, recursive=True)
        return size
    out_fs, out_path = storage.get_fs(output_uri, so)
    if store_uri != output_uri:  # else written in place
        if out_fs.exists(out_path):
            out_fs.rm(out_path, recursive=True)
        fs.mv(store_path, out_path, recursive=True)
    return output_bytes(output_uri, so) or 0
