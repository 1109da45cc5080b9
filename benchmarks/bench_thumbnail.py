"""The "thumbnail" benchmark: pixelmill's job path against hand-written compositions.

Work per photo: decode a 1920×1080 JPEG, resize the long side to 512 (area/antialias),
gaussian σ=1.5, encode JPEG q85, write. Measured in one run, each on the same generated photos:

* ``pillow-loop``: a plain single-process Pillow loop (the baseline of the ratios), in a fresh
  process each round;
* ``pillow-pool``: the same in a 2-process pool;
* ``pillow-draft-pool``: Pillow with JPEG draft mode (DCT-domain downscale) in a 2-process pool;
* ``opencv-pool``: OpenCV decoding at 1/2 (``IMREAD_REDUCED_COLOR_2``), ``INTER_AREA`` and the
  gaussian as a float separable kernel (``sepFilter2D``: a quarter faster than ``GaussianBlur``'s
  8-bit path) in a 2-process pool, with and without glibc told to keep freed memory
  (``MALLOC_MMAP_THRESHOLD_`` …);
* ``planes-pool+malloc``: the same work on the JPEG's own Y/Cb/Cr planes, as pixelmill's jobs
  do it (no colour conversion; chroma filtered at half size): pixelmill's plane decoder, then
  OpenCV ``INTER_AREA`` and ``sepFilter2D`` per plane and simplejpeg's plane encoder, in a
  2-process pool with the glibc settings (left out where the plane decoder is not built);
* ``pixelmill``: ``pixelmill.jobs.run`` with 2 workers (manifest and all).

Pools are started and warmed before timing (steady-state images/s; process start-up is not
what is compared). Methods run in interleaved rounds, so a burst of load from other processes
does not land on one method only, and each method's *median* round is reported (the best round
would favour the noisiest method: the single-process loop's rate swings by up to 1.6x between
rounds on this VM, the pools' by a few per cent). Printed per method:
wall-clock images/s; images per CPU-second (workers + driver, from /proc), and from it the
rate on idle cores (P processes × images per CPU-second) — the comparison that holds on a
machine shared with other work; the ratios to the Pillow loop; per-worker peak RSS.

Run: ``.venv/bin/python benchmarks/bench_thumbnail.py [--n 400] [--workers 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

W, H, LONG, SIGMA, Q = 1920, 1080, 512, 1.5, 85
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
PIPELINE = {"steps": [{"op": "resize", "long_side": LONG, "method": "area"},
                      {"op": "gaussian", "sigma": SIGMA}]}


def make_photos(root: Path, n: int, size: tuple[int, int] = (W, H)) -> list[Path]:
    """``n`` q90 JPEGs of ``size`` (width, height; 1920×1080 by default): crops of
    scikit-image's photographs, resized, with noise."""
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
        sh, sw = src.shape[:2]
        ch, cw = int(sh * rng.uniform(0.6, 1.0)), int(sw * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, sh - ch + 1), rng.integers(0, sw - cw + 1)
        noise_seed = int(rng.integers(1 << 31))
        if p.exists():  # left by an interrupted earlier run (same seed, same bytes)
            continue
        img = cv2.resize(src[y:y + ch, x:x + cw], size, interpolation=cv2.INTER_CUBIC)
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


def _blur(img: np.ndarray) -> np.ndarray:
    import cv2

    k = cv2.getGaussianKernel(2 * int(4 * SIGMA + 0.5) + 1, SIGMA)
    return cv2.sepFilter2D(img, -1, k, k, borderType=cv2.BORDER_REFLECT)


def opencv_one(args: tuple[str, str]) -> int:
    import cv2

    src, dst = args
    img = cv2.imread(src, cv2.IMREAD_REDUCED_COLOR_2)
    h, w = img.shape[:2]
    img = cv2.resize(img, _target(w * 2, h * 2), interpolation=cv2.INTER_AREA)
    img = _blur(img)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, Q])
    assert ok
    with open(dst, "wb") as f:
        f.write(buf)
    return 1


def _chroma_blur(img: np.ndarray, pitch: int) -> np.ndarray:
    import cv2

    sigma = SIGMA / pitch
    k = cv2.getGaussianKernel(2 * int(4 * sigma + 0.5) + 1, sigma)
    return cv2.sepFilter2D(img, -1, k, k, borderType=cv2.BORDER_REFLECT)


def planes_one(args: tuple[str, str]) -> int:
    """The same work on the JPEG's Y/Cb/Cr planes: pixelmill's plane decoder (its C extension
    over libjpeg-turbo), OpenCV's ``INTER_AREA`` and ``sepFilter2D`` per plane, simplejpeg's
    plane encoder."""
    import cv2
    import simplejpeg

    from pixelmill.codecs import decode_planes

    src, dst = args
    with open(src, "rb") as f:
        y, cb, cr = decode_planes(f.read(), reduce=2)
    h, w = y.shape
    tw, th = _target(w * 2, h * 2)
    y = _blur(cv2.resize(y, (tw, th), interpolation=cv2.INTER_AREA))
    cb = _chroma_blur(cv2.resize(cb, (tw // 2, th // 2), interpolation=cv2.INTER_AREA), 2)
    cr = _chroma_blur(cv2.resize(cr, (tw // 2, th // 2), interpolation=cv2.INTER_AREA), 2)
    buf = simplejpeg.encode_jpeg_yuv_planes(y, cb, cr, quality=Q)
    with open(dst, "wb") as f:
        f.write(buf)
    return 1


def stage_ceiling(photos: list[Path], k: int = 60, rounds: int = 3) -> dict[str, float]:
    """Single-core milliseconds per photo of each stage of the fastest compositions.

    RGB route: read the file, decode at 1/2 in the DCT domain (the smallest scale still >= the
    output), area resize (OpenCV's ``INTER_AREA`` and pixelmill's block-matrix path, both
    timed), gaussian, JPEG encode. Planes route (where pixelmill's plane decoder is built):
    decode the Y/Cb/Cr planes at 1/2, area resize and gaussian per plane (chroma at half size),
    encode the planes. Each stage is timed alone, in the calling process, on ``k`` photos, best
    of ``rounds``. The sum of a route's fastest stages is what one core needs per photo with no
    overhead at all, so ``workers / sum`` bounds every composition of these stages.
    """
    import cv2

    from pixelmill.codecs import decode_planes, planes_available
    from pixelmill.ops.geometry import _area_shrink

    cv2.setNumThreads(1)
    best: dict[str, float] = {}
    planes = planes_available()
    for _ in range(rounds):
        t: dict[str, float] = {}

        def lap(name: str, t0: float, t: dict[str, float] = t) -> float:
            now = time.perf_counter()
            t[name] = t.get(name, 0.0) + now - t0
            return now

        for p in photos[:k]:
            t0 = time.perf_counter()
            data = p.read_bytes()
            t0 = lap("read", t0)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
            t0 = lap("decode 1/2", t0)
            h, w = img.shape[:2]
            tw, th = _target(w * 2, h * 2)
            small = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            t0 = lap("area resize (OpenCV)", t0)
            _area_shrink(img, th, tw)
            t0 = lap("area resize (pixelmill)", t0)
            small = _blur(small)
            t0 = lap("gaussian", t0)
            cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, Q])
            t0 = lap("encode", t0)
            if not planes:
                continue
            import simplejpeg

            y, cb, cr = decode_planes(data, reduce=2)
            t0 = lap("planes: decode 1/2", t0)
            y = _area_shrink(y, th, tw)
            cb, cr = _area_shrink(cb, th // 2, tw // 2), _area_shrink(cr, th // 2, tw // 2)
            t0 = lap("planes: area resize (pixelmill)", t0)
            y, cb, cr = _blur(y), _chroma_blur(cb, 2), _chroma_blur(cr, 2)
            t0 = lap("planes: gaussian", t0)
            simplejpeg.encode_jpeg_yuv_planes(y, cb, cr, quality=Q)
            t0 = lap("planes: encode", t0)
        for key, total in t.items():
            best[key] = min(best.get(key, float("inf")), total / min(k, len(photos)) * 1000)
    return best


def route_sums(stages: dict[str, float]) -> dict[str, float]:
    """Milliseconds per photo of each route's fastest stages (see :func:`stage_ceiling`)."""
    resizes = [k for k in stages if k.startswith("area resize")]
    rgb = (sum(v for k, v in stages.items() if k not in resizes and not k.startswith("planes"))
           + min(stages[k] for k in resizes))
    sums = {"RGB": rgb}
    if any(k.startswith("planes") for k in stages):
        sums["planes"] = stages["read"] + sum(v for k, v in stages.items()
                                              if k.startswith("planes"))
    return sums


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


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds consumed so far by processes ``pids``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


class Timer:
    """Wall time, and CPU time of this process plus ``pids`` (the workers)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def __enter__(self) -> Timer:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time() + cpu_seconds(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() + cpu_seconds(self.pids) - self.cpu0


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` inside the block (processes started there inherit it)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_pool(fn, jobs, workers: int, env: dict | None = None) -> tuple[Timer, list[float]]:
    with environ(env or {}), mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        pool.map(_noop, range(workers * 4))  # started and warm
        with Timer([p.pid for p in pool._pool]) as t:
            done = sum(pool.imap_unordered(fn, jobs, chunksize=8))
        rss = [peak_rss_mb(p.pid) for p in pool._pool]
    assert done == len(jobs)
    return t, rss


def _timed_loop(jobs: list[tuple[str, str]]) -> tuple[float, float, float]:
    """In a fresh process: the plain loop over ``jobs``; (wall s, CPU s, peak RSS MB)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for j in jobs:
        pillow_one(j)
    return time.perf_counter() - wall0, time.process_time() - cpu0, peak_rss_mb(os.getpid())


def run_loop(jobs: list[tuple[str, str]]) -> tuple[Timer, list[float]]:
    """The single-process loop, run in a fresh process as a user's script would be (as the
    pools' workers are): run in this long-lived driver, its speed swung between 40 and 70
    images/s from round to round with the heap left behind by the other methods (a Pillow
    decode faults in ~18 MB of fresh pages per photo unless freed memory happens to be there)."""
    with mp.get_context("spawn").Pool(1) as pool:
        pool.apply(_noop, (0,))  # started (imports done), as the pools are
        wall, cpu, rss = pool.apply(_timed_loop, (jobs,))
    t = Timer([])
    t.wall, t.cpu = wall, cpu
    return t, [rss]


def run_stages(photos: list[Path]) -> dict[str, float]:
    """:func:`stage_ceiling` in a fresh process with glibc keeping freed memory (the settings of
    the fastest pool), not in this driver, whose heap history makes timings drift."""
    with environ(MALLOC_ENV), mp.get_context("spawn").Pool(1, initializer=_init_worker) as pool:
        return pool.apply(stage_ceiling, (photos,))


def run_pixelmill(src: Path, out: Path, workers: int, warm: list[Path]) -> tuple[Timer, list[float]]:
    from pixelmill.engines.local import LocalEngine
    from pixelmill.jobs import run

    with LocalEngine(workers=workers) as engine:
        # start and warm the workers (imports, op registry) on a few photos elsewhere
        warm_dir = out.parent / (out.name + "-warm")
        shutil.rmtree(warm_dir, ignore_errors=True)
        run(PIPELINE, str(warm[0].parent), str(warm_dir), engine=engine, limit=workers * 2,
            format="jpg", quality=Q, progress=False, report=False, batch_size=1)
        with Timer([w.proc.pid for w in engine._pool]) as t:
            summary = run(PIPELINE, str(src), str(out), engine=engine, format="jpg", quality=Q,
                          progress=False, report=False, overwrite=True)
        rss = [peak_rss_mb(w.proc.pid) for w in engine._pool]
    assert summary.ok == summary.total, summary.reasons
    return t, rss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds; each round runs every method once (the median round is kept)")
    ap.add_argument("--dir", default="bench-out/thumbnail")
    ap.add_argument("--loop-n", type=int, default=100,
                    help="photos for the single-process Pillow loop (a rate; default 100)")
    args = ap.parse_args(argv)
    base = Path(args.dir)
    photos = make_photos(base / "in", args.n)
    outs = base / "out"
    n = len(photos)

    def jobs_for(name: str, subset=None) -> list[tuple[str, str]]:
        d = outs / name
        d.mkdir(parents=True, exist_ok=True)
        return [(str(p), str(d / p.name)) for p in (subset or photos)]

    def loop():
        jobs = jobs_for("pillow-loop", photos[: args.loop_n])
        t, rss = run_loop(jobs)
        return len(jobs), t, rss

    def pool(fn, name, env=None):
        def thunk():
            t, rss = run_pool(fn, jobs_for(name), args.workers, env)
            return n, t, rss
        return thunk

    def pm():
        t, rss = run_pixelmill(base / "in", outs / "pixelmill", args.workers, photos)
        return n, t, rss

    methods = {
        "pillow-loop": (loop, 1),
        "pillow-pool": (pool(pillow_one, "pillow-pool"), args.workers),
        "pillow-draft-pool": (pool(pillow_draft_one, "pillow-draft-pool"), args.workers),
        "opencv-pool": (pool(opencv_one, "opencv-pool"), args.workers),
        "opencv-pool+malloc": (pool(opencv_one, "opencv-pool-malloc", MALLOC_ENV), args.workers),
        "planes-pool+malloc": (pool(planes_one, "planes-pool-malloc", MALLOC_ENV), args.workers),
        "pixelmill": (pm, args.workers),
    }
    from pixelmill.codecs import planes_available

    if not planes_available():  # built without the C extension: no plane decoder to call
        del methods["planes-pool+malloc"]
    print(f"thumbnail benchmark: {n} photos {W}x{H} -> long side {LONG}, gaussian {SIGMA}, "
          f"JPEG q{Q}; {args.workers} workers; {args.repeat} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    walls: dict[str, list[float]] = {name: [] for name in methods}
    per_cpus: dict[str, list[float]] = {name: [] for name in methods}
    rss_of: dict[str, float] = {}
    for r in range(args.repeat):
        for name, (thunk, _) in methods.items():
            count, t, rss = thunk()
            walls[name].append(count / t.wall)
            per_cpus[name].append(count / t.cpu)
            rss_of[name] = max(rss_of.get(name, 0.0), max(rss))
            print(f"  round {r + 1} {name}: {count / t.wall:.1f} images/s wall, "
                  f"{count / t.cpu:.1f} images per CPU-second", flush=True)
    wall = {name: statistics.median(v) for name, v in walls.items()}
    per_cpu = {name: statistics.median(v) for name, v in per_cpus.items()}
    print(f"median of {args.repeat} round(s); wall img/s ranges: " + ", ".join(
        f"{name} {min(v):.1f}-{max(v):.1f}" for name, v in walls.items()))
    # on idle cores a method running P processes does P x (images per CPU-second)
    idle = {name: per_cpu[name] * procs for name, (_, procs) in methods.items()}
    base_wall, base_idle = wall["pillow-loop"], idle["pillow-loop"]
    print(f"{'method':<20}{'wall img/s':>11}{'x loop':>8}{'img/CPU-s':>11}"
          f"{'idle img/s':>12}{'x loop':>8}{'peak RSS MB':>13}")
    for name in methods:
        print(f"{name:<20}{wall[name]:>11.1f}{wall[name] / base_wall:>8.2f}{per_cpu[name]:>11.1f}"
              f"{idle[name]:>12.1f}{idle[name] / base_idle:>8.2f}{rss_of[name]:>13.0f}")
    hand = [k for k in methods if k not in ("pixelmill", "pillow-loop")]
    best_wall = max(wall[k] for k in hand)
    best_idle = max(idle[k] for k in hand)
    print(f"pixelmill / Pillow loop: {wall['pixelmill'] / base_wall:.2f}x wall, "
          f"{idle['pixelmill'] / base_idle:.2f}x on idle cores (bar >= 7)")
    print(f"pixelmill / fastest hand-written: {wall['pixelmill'] / best_wall:.2f}x wall, "
          f"{idle['pixelmill'] / best_idle:.2f}x on idle cores (bar >= 1)")
    stages = run_stages(photos)
    sums = route_sums(stages)
    per_photo = min(sums.values())
    ceiling = args.workers * 1000 / per_photo
    print("single-core ms per photo of the fastest stages, timed alone: "
          + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + "; sums: "
          + ", ".join(f"{k} route {v:.2f} ms" for k, v in sums.items()))
    print(f"ceiling for any composition of these stages on {args.workers} cores (no overhead): "
          f"{ceiling:.1f} img/s = {ceiling / base_idle:.2f}x the Pillow loop on idle cores")
    print(f"pixelmill per-worker peak RSS: {rss_of['pixelmill']:.0f} MB (bar < 300)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
