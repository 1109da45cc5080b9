"""The huge-image part of ``make demo``: a >= 100-megapixel mosaic processed in tiles."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["demo", "mosaic_tiles", "write_mosaic_tiff"]

DEMO_PIPELINE = [{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask", "radius": 1.0,
                                                     "amount": 1.0}]


def _samples() -> list[np.ndarray]:
    """Bundled RGB photographs from scikit-image, cut to 256×256 blocks."""
    from skimage import data

    blocks = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        for y in range(0, h - 255, 256):
            for x in range(0, w - 255, 256):
                blocks.append(np.ascontiguousarray(img[y:y + 256, x:x + 256, :3]))
    return blocks


def mosaic_tiles(height: int, width: int, tile: int = 256) -> Iterator[np.ndarray]:
    """Row-major 256×256 RGB tiles of a mosaic of bundled photographs (flipped and rotated so
    neighbours differ); only one tile exists at a time."""
    if tile != 256:
        raise ValueError("mosaic tiles are 256 pixels")
    blocks = _samples()
    for ty in range(-(-height // tile)):
        for tx in range(-(-width // tile)):
            k = (ty * 7919 + tx * 104729) % (len(blocks) * 8)
            b = blocks[k % len(blocks)]
            b = np.rot90(b, (k // len(blocks)) % 4)
            yield np.ascontiguousarray(b[:, ::-1] if k // len(blocks) >= 4 else b)


def write_mosaic_tiff(path: str, height: int, width: int) -> None:
    """Write a tiled RGB BigTIFF of the mosaic, streaming tile by tile."""
    import tifffile

    tifffile.imwrite(path, mosaic_tiles(height, width), shape=(height, width, 3), dtype="uint8",
                     tile=(256, 256), photometric="rgb", bigtiff=True)


def demo(out_dir: str, engine: Any = None, *, side: int = 10240,
         memory: str = "1GiB") -> Any:
    """Build a ``side``×``side`` RGB mosaic (10240² = 105 megapixels) as a tiled BigTIFF,
    sharpen it tile by tile within ``memory``, and print what it took.

    Parameters
    ----------
    out_dir : str
        Folder for ``huge-mosaic.tif`` and ``huge-mosaic-sharpened.tif``.
    engine : Engine, optional
        An open engine to run the tiles on (default: a local one).

    Returns
    -------
    TiledSummary
    """
    from pixelmill.tiled._job import run_tiled

    os.makedirs(out_dir, exist_ok=True)
    src = os.path.join(out_dir, "huge-mosaic.tif")
    out = os.path.join(out_dir, "huge-mosaic-sharpened.tif")
    t0 = time.perf_counter()
    write_mosaic_tiff(src, side, side)
    t_write = time.perf_counter() - t0
    summary = run_tiled(DEMO_PIPELINE, src, out, memory=memory, engine=engine, progress=False)
    mp = side * side / 1e6
    print(f"tiles: built a {side}×{side} RGB BigTIFF ({mp:.0f} megapixels, "
          f"{side * side * 3 / 2**20:.0f} MiB decoded) from bundled photos in {t_write:.1f} s")
    print(f"tiles: gaussian + unsharp mask in {summary.tiles} tiles of {summary.tile} px on "
          f"{summary.workers} workers: {summary.status}, {summary.seconds:.1f} s "
          f"({mp / max(summary.seconds, 1e-9):.1f} MP/s)")
    print(f"tiles: peak memory of the whole job {summary.peak_rss / 2**20:.0f} MiB "
          f"(budget {summary.memory / 2**20:.0f} MiB) -> {out}")
    return summary
