"""Super-resolution speed and memory: throughput per model, tiled ×2 of a big image, tile overhead.

Prints, for ×2 on this machine's CPU (or --device cuda):

1. output megapixels/s of MATLAB bicubic and of each shipped ×2 network on a --frame×--frame
   RGB image (whole-image inference);
2. a streaming tiled ×2 job (``pixelmill.tiled.run_tiled`` with the ``super_resolve`` op) of a
   --size×--size RGB image, from a ``.npy`` input to a tiled BigTIFF output, with the peak
   resident memory of the whole process tree (target < 2 GB for 8000×8000);
3. per-pixel speed of batched tiles (``upscale_tiled``) relative to one whole-image pass
   (target >= 70 %).

Usage: python benchmarks/bench_sr.py [--size 8000] [--frame 512] [--job-model espcn]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sample_image(n: int, seed: int = 0) -> np.ndarray:
    """A natural-looking RGB image of n×n: a tiled photograph with a little noise."""
    from skimage import data

    base = data.astronaut()
    reps = -(-n // base.shape[0])
    img = np.tile(base, (reps, reps, 1))[:n, :n]
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


def throughput(frame: int, device: str, repeat: int) -> None:
    from pixelmill.sr.infer import upscale_image
    from pixelmill.sr.weights import available_models, load_model

    image = sample_image(frame)
    out_mp = (2 * frame) ** 2 / 1e6
    t = best_of(lambda: upscale_image(image, None, 2), repeat)
    print(f"  bicubic (MATLAB)  {out_mp / t:8.2f} output MP/s")
    for card in available_models():
        if int(card["scale"]) != 2:
            continue
        model = load_model(card["name"], 2, device)
        upscale_image(image[:64, :64], model, 2)  # warm-up
        t = best_of(lambda m=model: upscale_image(image, m, 2), repeat)
        print(f"  {card['name']:<17} {out_mp / t:8.2f} output MP/s")


def tiles_vs_whole(frame: int, model_name: str, tile: int, device: str, repeat: int) -> None:
    from pixelmill.sr.infer import upscale_image
    from pixelmill.sr.tiles import upscale_tiled
    from pixelmill.sr.weights import load_model

    image = sample_image(frame, seed=1)
    model = load_model(model_name, 2, device)
    upscale_image(image[:64, :64], model, 2)
    whole = best_of(lambda: upscale_image(image, model, 2), repeat)
    tiled = best_of(lambda: upscale_tiled(image, model, 2, tile=tile, batch=4), repeat)
    print(f"  {model_name} {frame}×{frame}: whole {whole:.2f} s, {tile}px tiles {tiled:.2f} s "
          f"-> tiles run at {100 * whole / tiled:.0f} % of whole-image speed per pixel "
          f"(target >= 70 %)")


def tiled_job(size: int, model_name: str, tile: int, workers: int, memory: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.npy"
        image = np.lib.format.open_memmap(src, mode="w+", dtype=np.uint8, shape=(size, size, 3))
        band = sample_image(min(size, 1024))
        for y in range(0, size, band.shape[0]):
            for x in range(0, size, band.shape[1]):
                h, w = min(band.shape[0], size - y), min(band.shape[1], size - x)
                image[y : y + h, x : x + w] = band[:h, :w]
        image.flush()
        del image
        out = Path(tmp) / "big_x2.tif"
        code = (
            "from pixelmill.tiled import run_tiled\n"
            f"s = run_tiled([{{'op': 'super_resolve', 'model': {model_name!r}, 'scale': 2}}], "
            f"{str(src)!r}, {str(out)!r}, tile={tile}, workers={workers}, memory={memory!r}, "
            "progress=False)\n"
            "print(s.status, s.tiles, s.out_width, s.out_height)\n"
        )
        peak = driver = 0
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        done = threading.Event()

        def watch() -> None:
            nonlocal peak, driver
            root = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    rss = [p.memory_info().rss for p in procs]
                    peak, driver = max(peak, sum(rss)), max(driver, rss[0])
                except psutil.Error:
                    pass
                time.sleep(0.2)

        thread = threading.Thread(target=watch, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        stdout, _ = proc.communicate()
        seconds = time.perf_counter() - t0
        done.set()
        thread.join()
        out_mp = (2 * size) ** 2 / 1e6
        print(f"  {size}×{size} RGB -> {2 * size}×{2 * size} with {model_name}: "
              f"{stdout.strip()}, {seconds:.0f} s, {out_mp / seconds:.2f} output MP/s, "
              f"peak RSS (process tree) {peak / 2**30:.2f} GiB (target < 2 GiB; the driver's "
              f"own peak {driver / 2**30:.2f} GiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8000, help="side of the tiled-job image")
    ap.add_argument("--frame", type=int, default=512, help="side of the throughput image")
    ap.add_argument("--tiled-model", default="edsr", help="model of the tiles-vs-whole test")
    ap.add_argument("--job-model", default="edsr", help="model of the streaming tiled job")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--memory", default="2GB")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-job", action="store_true")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{os.cpu_count()} CPUs")
    from pixelmill.engines.local import keep_freed_memory

    # in this process, as `pixelmill upscale` and `sr eval` run the networks (and as local
    # workers run tiles): glibc keeps freed feature maps for the next pass
    with keep_freed_memory():
        print(f"1. throughput at x2 on a {args.frame}×{args.frame} RGB image:")
        throughput(args.frame, args.device, args.repeat)
        print("2. tiles vs whole image:")
        tiles_vs_whole(args.frame, args.tiled_model, max(64, args.frame // 2), args.device,
                       args.repeat)
    if not args.skip_job:
        print("3. streaming tiled job:")
        tiled_job(args.size, args.job_model, args.tile, args.workers, args.memory)


if __name__ == "__main__":
    main()
