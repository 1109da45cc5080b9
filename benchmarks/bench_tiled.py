"""Tiled processing of a huge image: peak memory and throughput against two baselines.

Gaussian σ=2 followed by unsharp mask on a SIZE×SIZE RGB tiled BigTIFF (default 30000², 2.7 GB
decoded), measured in one run against

- the same pipeline on an in-memory REF×REF image (default 8000²): pure compute, no I/O;
- dask-image (``dask_image.ndfilters.gaussian_filter``) + ``map_overlap`` for the unsharp mask,
  reading the same file and writing a Zarr store (dask's threaded scheduler).

Targets (issue 4): peak RSS of the whole tiled job < 1.5 GB; tiled throughput >= 80% of the
in-memory one; faster than dask-image.

    .venv/bin/python benchmarks/bench_tiled.py                 # the full 30000² run
    .venv/bin/python benchmarks/bench_tiled.py --size 12000    # a few minutes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time

import numpy as np

PIPELINE = [{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask", "radius": 1.0,
                                                 "amount": 1.0}]


class PeakRSS:
    """Resident memory of this process and its children, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.05):
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench_tiled(src: str, out: str, memory: str, workers: int) -> tuple[float, int, object]:
    from pixelmill.tiled import run_tiled

    t0 = time.perf_counter()
    summary = run_tiled(PIPELINE, src, out, memory=memory, workers=workers, progress=False)
    return time.perf_counter() - t0, summary.peak_rss, summary


def bench_in_memory(ref: int) -> tuple[float, int]:
    from pixelmill.pipeline import load_pipeline
    from pixelmill.tiled._demo import mosaic_tiles

    image = np.empty((ref, ref, 3), np.uint8)
    tiles = mosaic_tiles(ref, ref)
    for ty in range(0, ref, 256):
        for tx in range(0, ref, 256):
            t = next(tiles)
            image[ty:ty + 256, tx:tx + 256] = t[: ref - ty, : ref - tx]
    pipeline = load_pipeline(PIPELINE)
    pipeline(image[:512, :512])  # warm up
    t0 = time.perf_counter()
    out = pipeline(image)
    dt = time.perf_counter() - t0
    return dt, int(out.sum(dtype=np.uint64) % 7)  # use the result


def bench_dask(src: str, out: str, workers: int) -> tuple[float, int]:
    import dask
    import dask.array as da
    import scipy.ndimage as ndi
    import tifffile
    import zarr
    from dask_image import ndfilters

    def unsharp(block: np.ndarray) -> np.ndarray:
        f = block.astype(np.float32)
        blurred = ndi.gaussian_filter(f, sigma=(1.0, 1.0, 0), truncate=4.0, mode="reflect")
        return np.clip(np.rint(f + 1.0 * (f - blurred)), 0, 255).astype(np.uint8)

    t0 = time.perf_counter()
    with PeakRSS() as peak, tifffile.TiffFile(src) as tif:
        store = tif.series[0].aszarr()
        x = da.from_zarr(zarr.open_array(store, mode="r")).rechunk((2048, 2048, 3))
        g = ndfilters.gaussian_filter(x.astype(np.float32), sigma=(2.0, 2.0, 0), truncate=4.0,
                                      mode="reflect")
        g = da.clip(da.round(g), 0, 255).astype(np.uint8)
        u = g.map_overlap(unsharp, depth=(4, 4, 0), boundary="reflect", dtype=np.uint8)
        with dask.config.set(scheduler="threads", num_workers=workers):
            da.to_zarr(u, out, overwrite=True)
    return time.perf_counter() - t0, peak.peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=30000, help="side of the huge image")
    ap.add_argument("--ref", type=int, default=8000, help="side of the in-memory baseline")
    ap.add_argument("--memory", default="1.5GB", help="memory budget of the tiled job")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--skip-dask", action="store_true")
    args = ap.parse_args()

    from pixelmill.engines import default_workers
    from pixelmill.tiled._demo import write_mosaic_tiff

    workers = args.workers or default_workers()
    folder = args.dir or tempfile.mkdtemp(prefix="bench-tiled-")
    os.makedirs(folder, exist_ok=True)
    src = os.path.join(folder, f"mosaic-{args.size}.tif")
    mp = args.size * args.size / 1e6
    try:
        if not os.path.exists(src):
            t0 = time.perf_counter()
            write_mosaic_tiff(src, args.size, args.size)
            print(f"input: {args.size}×{args.size} RGB tiled BigTIFF ({mp:.0f} MP, "
                  f"{mp * 3 / 1e3:.2f} GB decoded) written in {time.perf_counter() - t0:.1f} s")
        t_mem, _ = bench_in_memory(args.ref)
        mem_rate = args.ref * args.ref / 1e6 / t_mem
        print(f"in-memory {args.ref}×{args.ref}: {t_mem:.2f} s, {mem_rate:.1f} MP/s")

        t_tiled, peak, summary = bench_tiled(src, os.path.join(folder, "out.tif"), args.memory,
                                             workers)
        tiled_rate = mp / t_tiled
        print(f"tiled {args.size}×{args.size}: {t_tiled:.1f} s, {tiled_rate:.1f} MP/s, "
              f"{summary.tiles} tiles of {summary.tile} px on {summary.workers} workers, "
              f"peak RSS {peak / 1e9:.2f} GB (budget {args.memory})")
        print(f"  ratio tiled / in-memory throughput: {tiled_rate / mem_rate:.2f} "
              "(target >= 0.80)")
        print(f"  peak RSS {peak / 1e9:.2f} GB (target < 1.5 GB): "
              f"{'ok' if peak < 1.5e9 else 'over'}")
        if not args.skip_dask:
            t_dask, dpeak = bench_dask(src, os.path.join(folder, "dask-out.zarr"), workers)
            dask_rate = mp / t_dask
            print(f"dask-image + map_overlap: {t_dask:.1f} s, {dask_rate:.1f} MP/s, "
                  f"peak RSS {dpeak / 1e9:.2f} GB")
            print(f"  speed-up tiled / dask-image: {t_dask / t_tiled:.2f}× (target > 1)")
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
