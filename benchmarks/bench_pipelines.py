"""Common batch jobs: pixelmill's job path against a hand-written OpenCV process pool.

Each job runs over the same generated photos (crops of scikit-image's sample photographs,
resized, with noise), once through ``pixelmill.jobs.run`` with 2 workers (manifest and all)
and once through the fastest straightforward hand-written equivalent: a 2-process
``multiprocessing`` pool that reads the file, decodes it with OpenCV (``imdecode``), runs the
equivalent OpenCV/NumPy calls, encodes with ``imencode`` and writes the file, with glibc told
to keep freed memory (``MALLOC_MMAP_THRESHOLD_`` …) as pixelmill's workers are. Jobs:

* ``unsharp``: 1920×1080 JPEG → ``unsharp_mask`` (radius 1, amount 1) → JPEG q90;
* ``resize-png``: 1920×1080 JPEG → ``resize`` width 1024 bilinear → PNG;
* ``gray-otsu``: 1920×1080 JPEG → ``convert`` gray → ``threshold`` otsu → PNG;
* ``clahe``: 2048×1536 JPEG → ``clahe`` (per channel) → JPEG q90;
* ``rotate-flip``: 1920×1080 JPEG → ``rotate`` 90 (expand) → ``flip`` → JPEG q90;
* ``thumb-3x2``: 3000×2000 JPEG (a 3:2 camera photo) → ``resize`` long side 512 area →
  ``gaussian`` 1.5 → JPEG q90 (a 512×341 thumbnail: odd height); the pool decodes at 1/4 in
  the DCT domain (``IMREAD_REDUCED_COLOR_4``), as pixelmill's shrink-on-load does;
* ``measure``: 320×240 JPEGs → ``sharpness`` + ``brightness_contrast``, no output images
  (``--n-small`` of them, 2,000 by default).

Pools are started and warmed before timing (steady-state images/s). Methods run in
interleaved rounds and each one's median round is reported. Before timing, the first photos'
outputs of both methods are compared (decoded pixels; JPEG outputs within a small tolerance,
since pixelmill decodes JPEGs with libjpeg-turbo through simplejpeg and the pool through
OpenCV's libjpeg; measured values to a relative 1e-4).

Run: ``.venv/bin/python benchmarks/bench_pipelines.py [--n 120] [--n-small 2000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_thumbnail import MALLOC_ENV, environ, make_photos  # this folder is sys.path[0]

Q = 90

JOBS: dict[str, dict] = {
    "unsharp": {"set": "hd", "format": "jpg",
                "steps": [{"op": "unsharp_mask", "radius": 1.0, "amount": 1.0}]},
    "resize-png": {"set": "hd", "format": "png",
                   "steps": [{"op": "resize", "width": 1024, "method": "bilinear"}]},
    "gray-otsu": {"set": "hd", "format": "png",
                  "steps": [{"op": "convert", "to": "gray"},
                            {"op": "threshold", "method": "otsu"}]},
    "clahe": {"set": "big", "format": "jpg", "steps": [{"op": "clahe"}]},
    "rotate-flip": {"set": "hd", "format": "jpg",
                    "steps": [{"op": "rotate", "angle": 90, "expand": True},
                              {"op": "flip", "axis": "horizontal"}]},
    "thumb-3x2": {"set": "dslr", "format": "jpg",
                  "steps": [{"op": "resize", "long_side": 512, "method": "area"},
                            {"op": "gaussian", "sigma": 1.5}]},
    "measure": {"set": "small", "format": None,
                "steps": [{"op": "sharpness"}, {"op": "brightness_contrast"}]},
}
SIZES = {"hd": (1920, 1080), "big": (2048, 1536), "dslr": (3000, 2000), "small": (320, 240)}


# ---- hand-written equivalents (top-level: picklable for the pool) ------------------------
def _read(src: str, flags: int | None = None) -> np.ndarray:
    import cv2

    with open(src, "rb") as f:
        data = f.read()
    return cv2.imdecode(np.frombuffer(data, np.uint8),
                        cv2.IMREAD_COLOR if flags is None else flags)


def _write(dst: str, img: np.ndarray, ext: str) -> None:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, Q] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    with open(dst, "wb") as f:
        f.write(buf)


def hand_unsharp(src: str, dst: str) -> None:
    import cv2

    img = _read(src).astype(np.float64)
    k = cv2.getGaussianKernel(9, 1.0)  # radius int(4 * 1 + 0.5)
    blurred = cv2.sepFilter2D(img, -1, k, k, borderType=cv2.BORDER_REFLECT)
    out = img + 1.0 * (img - blurred)
    _write(dst, np.clip(np.rint(out), 0, 255).astype(np.uint8), ".jpg")


def hand_resize_png(src: str, dst: str) -> None:
    import cv2

    img = _read(src)
    h, w = img.shape[:2]
    _write(dst, cv2.resize(img, (1024, round(h * 1024 / w)), interpolation=cv2.INTER_LINEAR),
           ".png")


def hand_gray_otsu(src: str, dst: str) -> None:
    import cv2

    gray = cv2.cvtColor(_read(src), cv2.COLOR_BGR2GRAY)
    _, out = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _write(dst, out, ".png")


def hand_clahe(src: str, dst: str) -> None:
    import cv2

    img = _read(src)
    engine = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    out = cv2.merge([engine.apply(c) for c in cv2.split(img)])
    _write(dst, out, ".jpg")


def hand_rotate_flip(src: str, dst: str) -> None:
    import cv2

    img = cv2.rotate(_read(src), cv2.ROTATE_90_COUNTERCLOCKWISE)
    _write(dst, cv2.flip(img, 1), ".jpg")


def hand_thumb_3x2(src: str, dst: str) -> None:
    import cv2

    img = _read(src, cv2.IMREAD_REDUCED_COLOR_4)  # 750×500: the smallest scale >= 512
    h, w = img.shape[:2]
    s = 512 / max(w * 4, h * 4)
    img = cv2.resize(img, (round(w * 4 * s), round(h * 4 * s)), interpolation=cv2.INTER_AREA)
    k = cv2.getGaussianKernel(2 * int(4 * 1.5 + 0.5) + 1, 1.5)
    _write(dst, cv2.sepFilter2D(img, -1, k, k, borderType=cv2.BORDER_REFLECT), ".jpg")


def hand_measure(src: str, dst: str | None) -> dict[str, float]:
    import cv2

    # unrounded luma, as pixelmill measures it (a rounded 8-bit gray shifts the variance)
    gray = cv2.cvtColor(_read(src).astype(np.float32), cv2.COLOR_BGR2GRAY).astype(np.float64)
    lap = cv2.Laplacian(gray, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)
    mean, std = cv2.meanStdDev(gray)
    return {"sharpness": float(lap.var()), "brightness": float(mean[0, 0]) / 255,
            "contrast": float(std[0, 0]) / 255}


HAND: dict[str, Callable] = {"unsharp": hand_unsharp, "resize-png": hand_resize_png,
                             "gray-otsu": hand_gray_otsu, "clahe": hand_clahe,
                             "rotate-flip": hand_rotate_flip, "thumb-3x2": hand_thumb_3x2,
                             "measure": hand_measure}


def _hand_one(args: tuple[str, str, str | None]) -> int:
    job, src, dst = args
    HAND[job](src, dst)
    return 1


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _noop(_: int) -> int:
    return 0


class HandPool:
    """A warm 2-process spawn pool with glibc keeping freed memory."""

    def __init__(self, workers: int) -> None:
        with environ(MALLOC_ENV):
            self.pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker)
        self.pool.map(_noop, range(workers * 4))
        self.pool.map(_hand_one, [])  # nothing: the module is imported at first real unit

    def run(self, job: str, photos: list[Path], out: Path | None) -> float:
        ext = ".png" if JOBS[job]["format"] == "png" else ".jpg"
        units = [(job, str(p), None if out is None else str(out / (p.stem + ext)))
                 for p in photos]
        t0 = time.perf_counter()
        done = sum(self.pool.imap_unordered(_hand_one, units, chunksize=8))
        wall = time.perf_counter() - t0
        assert done == len(units)
        return wall

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def run_pixelmill(engine, job: str, src: Path, out: Path, manifest: Path) -> float:
    from pixelmill.jobs import run

    spec = JOBS[job]
    measure_only = spec["format"] is None
    t0 = time.perf_counter()
    summary = run({"steps": spec["steps"]}, str(src), None if measure_only else str(out),
                  manifest=str(manifest), engine=engine, format=spec["format"],
                  quality=Q if spec["format"] == "jpg" else None, progress=False,
                  report=False, overwrite=True)
    wall = time.perf_counter() - t0
    assert summary.ok == summary.total, summary.reasons
    return wall


def compare(job: str, photos: list[Path], pm_out: Path, manifest: Path, k: int = 3) -> str:
    """How the two methods' outputs of the first ``k`` photos differ (raises when not
    equivalent)."""
    import cv2

    if JOBS[job]["format"] is None:
        import pyarrow.parquet as pq

        rows = {Path(r["uri"]).name: r for r in pq.read_table(manifest).to_pylist()}
        worst = 0.0
        for p in photos[:k]:
            ref = hand_measure(str(p), None)
            for key, v in ref.items():
                got = rows[p.name][key]
                worst = max(worst, abs(got - v) / max(abs(v), 1e-12))
        assert worst < 1e-4, f"{job}: measures differ by {worst:.2g} (relative)"
        return f"measures within {worst:.1e}"
    ext = ".png" if JOBS[job]["format"] == "png" else ".jpg"
    worst, mean = 0, 0.0
    tmp = pm_out.parent / "compare"
    tmp.mkdir(exist_ok=True)
    for p in photos[:k]:
        mine = sorted(pm_out.rglob(p.stem + ".*"))
        assert mine, f"{job}: no pixelmill output for {p.name}"
        dst = tmp / (p.stem + ext)
        HAND[job](str(p), str(dst))
        a = cv2.imread(str(mine[0]), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
        assert a.shape == b.shape, f"{job}: shapes {a.shape} vs {b.shape}"
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        worst, mean = max(worst, int(d.max())), max(mean, float(d.mean()))
    limit = 0.02 if job == "gray-otsu" else 1.0  # a few pixels at Otsu's level may flip
    assert mean <= limit, f"{job}: outputs differ (mean |diff| {mean:.3f}, max {worst})"
    return f"max |diff| {worst}, mean {mean:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=120, help="photos per full-size job")
    ap.add_argument("--n-small", type=int, default=2000, help="photos of the measure job")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds; each round runs every method of every job once")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of jobs")
    ap.add_argument("--dir", default="bench-out/pipelines")
    args = ap.parse_args(argv)
    jobs = [j for j in args.jobs.split(",") if j]
    unknown = set(jobs) - set(JOBS)
    if unknown:
        ap.error(f"unknown job(s) {sorted(unknown)}; choose from {', '.join(JOBS)}")
    root = Path(args.dir)
    counts = {"hd": args.n, "big": args.n, "dslr": args.n, "small": args.n_small}
    photos = {s: make_photos(root / f"in-{s}", counts[s], SIZES[s])
              for s in {JOBS[j]["set"] for j in jobs}}

    from pixelmill.engines.local import LocalEngine

    print(f"pipelines benchmark: {args.workers} workers; {args.repeat} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    rates: dict[tuple[str, str], list[float]] = {}
    hand = HandPool(args.workers)
    try:
        with LocalEngine(workers=args.workers) as engine:
            # warm both (imports, the op registry) and check the outputs are equivalent
            for job in jobs:
                s = JOBS[job]["set"]
                src = photos[s][0].parent
                pm_out, hd_out = root / "out" / job / "pixelmill", root / "out" / job / "hand"
                for d in (pm_out, hd_out):
                    shutil.rmtree(d, ignore_errors=True)
                    d.mkdir(parents=True)
                manifest = root / "out" / job / "manifest.parquet"
                run_pixelmill(engine, job, src, pm_out, manifest)
                hand.run(job, photos[s], None if JOBS[job]["format"] is None else hd_out)
                print(f"  {job}: outputs equivalent ({compare(job, photos[s], pm_out, manifest)})",
                      flush=True)
            for r in range(args.repeat):
                for job in jobs:
                    s = JOBS[job]["set"]
                    n = len(photos[s])
                    pm_out, hd_out = root / "out" / job / "pixelmill", root / "out" / job / "hand"
                    manifest = root / "out" / job / "manifest.parquet"
                    order = ("pixelmill", "hand") if r % 2 == 0 else ("hand", "pixelmill")
                    for method in order:
                        if method == "pixelmill":
                            wall = run_pixelmill(engine, job, photos[s][0].parent, pm_out,
                                                 manifest)
                        else:
                            wall = hand.run(job, photos[s],
                                            None if JOBS[job]["format"] is None else hd_out)
                        rates.setdefault((job, method), []).append(n / wall)
                        print(f"  round {r + 1} {job} {method}: {n / wall:.1f} images/s",
                              flush=True)
    finally:
        hand.close()
    print(f"median of {args.repeat} round(s)")
    print(f"{'job':<13}{'images':>7}{'pixelmill img/s':>17}{'hand-written img/s':>20}"
          f"{'ratio':>8}")
    for job in jobs:
        pm = statistics.median(rates[(job, "pixelmill")])
        hw = statistics.median(rates[(job, "hand")])
        print(f"{job:<13}{len(photos[JOBS[job]['set']]):>7}{pm:>17.1f}{hw:>20.1f}"
              f"{pm / hw:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
