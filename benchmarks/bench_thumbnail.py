"""The "thumbnail" benchmark: pixelmill's job path against hand-written compositions.

Work per photo: decode a 1920×1080 JPEG, resize the long side to 512 (area/antialias),
gaussian σ=1.5, encode JPEG q85, write. Measured in one run, each on the same generated photos:

* ``pillow-loop``: a plain single-process Pillow loop (the baseline of the ratios);
* ``pillow-pool``: the same in a 2-process pool;
* ``pillow-draft-pool``: Pillow with JPEG draft mode (DCT-domain downscale) in a 2-process pool;
* ``opencv-pool``: OpenCV decoding at 1/2 (``IMREAD_REDUCED_COLOR_2``) in a 2-process pool,
  with and without glibc told to keep freed memory (``MALLOC_MMAP_THRESHOLD_`` …);
* ``pixelmill``: ``pixelmill.jobs.run`` with 2 workers (manifest and all).

Pools are started and warmed before timing (steady-state images/s; process start-up is not
what is compared). Prints images/s, the ratio to the Pillow loop, and per-worker peak RSS.

Run: ``.venv/bin/python benchmarks/bench_thumbnail.py [--n 400] [--workers 2] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

W, H, LONG, SIGMA, Q = 1920, 1080, 512, 1.5, 85
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
PIPELINE = {"steps": [{"op": "resize", "long_side": LONG, "method": "area"},
                      {"op": "gaussian", "sigma": SIGMA}]}


def make_photos(root: Path, n: int) -> list[Path]:
    """``n`` 1920×1080 q90 JPEGs: crops of scikit-image's photographs, upscaled, with noise."""
    import cv2
    from skimage import data

    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"photo{i:04d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(0)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
               np.dstack([data.camera()] * 3)]
    for i, p in enumerate(paths):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        noise_seed = int(rng.integers(1 << 31))
        if p.exists():  # left by an interrupted earlier run (same seed, same bytes)
            continue
        img = cv2.resize(src[y:y + ch, x:x + cw], (W, H), interpolation=cv2.INTER_CUBIC)
        noise = np.random.default_rng(noise_seed).normal(0, 4, img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(p), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


# ---- hand-written compositions (top-level: picklable for the pools) ----------------------
def _target(w: int, h: int) -> tuple[int, int]:
    s = LONG / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def pillow_one(args: tuple[str, str]) -> int:
    from PIL import Image, ImageFilter

    src, dst = args
    with Image.open(src) as im:
        im = im.convert("RGB").resize(_target(*im.size), Image.Resampling.BOX)
    im = im.filter(ImageFilter.GaussianBlur(SIGMA))
    im.save(dst, "JPEG", quality=Q)
    return 1


def pillow_draft_one(args: tuple[str, str]) -> int:
    from PIL import Image, ImageFilter

    src, dst = args
    with Image.open(src) as im:
        size = _target(*im.size)
        im.draft("RGB", size)
        im = im.convert("RGB").resize(size, Image.Resampling.BOX)
    im = im.filter(ImageFilter.GaussianBlur(SIGMA))
    im.save(dst, "JPEG", quality=Q)
    return 1


def opencv_one(args: tuple[str, str]) -> int:
    import cv2

    src, dst = args
    img = cv2.imread(src, cv2.IMREAD_REDUCED_COLOR_2)
    h, w = img.shape[:2]
    img = cv2.resize(img, _target(w * 2, h * 2), interpolation=cv2.INTER_AREA)
    r = int(4 * SIGMA + 0.5)
    img = cv2.GaussianBlur(img, (2 * r + 1, 2 * r + 1), SIGMA, borderType=cv2.BORDER_REFLECT)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, Q])
    assert ok
    with open(dst, "wb") as f:
        f.write(buf)
    return 1


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _noop(_: int) -> int:
    return 0


def peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_pool(fn, jobs, workers: int, env: dict | None = None) -> tuple[float, list[float]]:
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            pool.map(_noop, range(workers * 4))  # started and warm
            t0 = time.perf_counter()
            done = sum(pool.imap_unordered(fn, jobs, chunksize=8))
            dt = time.perf_counter() - t0
            rss = [peak_rss_mb(p.pid) for p in pool._pool]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert done == len(jobs)
    return dt, rss


def run_pixelmill(src: Path, out: Path, workers: int, warm: list[Path]) -> tuple[float, list[float]]:
    from pixelmill.engines.local import LocalEngine
    from pixelmill.jobs import run

    with LocalEngine(workers=workers) as engine:
        # start and warm the workers (imports, op registry) on a few photos elsewhere
        warm_dir = out.parent / (out.name + "-warm")
        shutil.rmtree(warm_dir, ignore_errors=True)
        run(PIPELINE, str(warm[0].parent), str(warm_dir), engine=engine, limit=workers * 2,
            format="jpg", quality=Q, progress=False, report=False, batch_size=1)
        t0 = time.perf_counter()
        summary = run(PIPELINE, str(src), str(out), engine=engine, format="jpg", quality=Q,
                      progress=False, report=False, overwrite=True)
        dt = time.perf_counter() - t0
        rss = [peak_rss_mb(w.proc.pid) for w in engine._pool]
    assert summary.ok == summary.total, summary.reasons
    return dt, rss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of N timings per method")
    ap.add_argument("--dir", default="bench-out/thumbnail")
    ap.add_argument("--loop-n", type=int, default=None,
                    help="photos for the single-process Pillow loop (default: all)")
    args = ap.parse_args(argv)
    base = Path(args.dir)
    photos = make_photos(base / "in", args.n)
    outs = base / "out"
    n = len(photos)

    def jobs_for(name: str, subset=None) -> list[tuple[str, str]]:
        d = outs / name
        d.mkdir(parents=True, exist_ok=True)
        return [(str(p), str(d / p.name)) for p in (subset or photos)]

    results: dict[str, tuple[float, list[float]]] = {}

    def best(name: str, thunk) -> None:
        runs = [thunk() for _ in range(args.repeat)]
        results[name] = max(runs, key=lambda r: r[0])  # (images/s, peak RSS per worker)
        print(f"  {name}: {results[name][0]:.1f} images/s", flush=True)

    loop_photos = photos[: args.loop_n] if args.loop_n else photos

    def loop():
        jobs = jobs_for("pillow-loop", loop_photos)
        t0 = time.perf_counter()
        for j in jobs:
            pillow_one(j)
        return len(jobs) / (time.perf_counter() - t0), [peak_rss_mb(os.getpid())]

    def pool(fn, name, env=None):
        def thunk():
            dt, rss = run_pool(fn, jobs_for(name), args.workers, env)
            return n / dt, rss
        return thunk

    def pm():
        dt, rss = run_pixelmill(base / "in", outs / "pixelmill", args.workers, photos)
        return n / dt, rss

    print(f"thumbnail benchmark: {n} photos {W}x{H} -> long side {LONG}, gaussian {SIGMA}, "
          f"JPEG q{Q}; {args.workers} workers; best of {args.repeat}", flush=True)
    best("pillow-loop", loop)
    best("pillow-pool", pool(pillow_one, "pillow-pool"))
    best("pillow-draft-pool", pool(pillow_draft_one, "pillow-draft-pool"))
    best("opencv-pool", pool(opencv_one, "opencv-pool"))
    best("opencv-pool+malloc", pool(opencv_one, "opencv-pool-malloc", MALLOC_ENV))
    best("pixelmill", pm)
    base_rate = results["pillow-loop"][0]
    hand = max(v[0] for k, v in results.items() if k not in ("pixelmill", "pillow-loop"))
    print(f"{'method':<22}{'images/s':>10}{'x loop':>9}{'peak RSS/worker MB':>22}")
    for name, (rate, rss) in results.items():
        print(f"{name:<22}{rate:>10.1f}{rate / base_rate:>9.2f}"
              f"{max(rss):>22.0f}")
    pm_rate, pm_rss = results["pixelmill"]
    print(f"pixelmill / Pillow loop: {pm_rate / base_rate:.2f}x (bar >= 7)")
    print(f"pixelmill / fastest hand-written: {pm_rate / hand:.2f}x (bar >= 1)")
    print(f"pixelmill per-worker peak RSS: {max(pm_rss):.0f} MB (bar < 300)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
