"""Benchmark of pixelmill.learn: feature extraction, CNN training, nearest-neighbour queries.

    python benchmarks/bench_learn.py [--n 24] [--workers 2] [--vectors 100000] [--dim 128]

1. Feature extraction on 1920×1080 JPEGs: each extractor (default parameters) as a batch job
   (``pixelmill.learn.extract``, local engine, ``--workers`` processes) in images/s (HOG with
   ``size=[128, 128]``: at full size its vector has 2.5 million values), against
   the same job reading, decoding and shrinking to 1/8 with a bilinear resize, then
   ``color_moments``, as the read+decode baseline (ratio of steady rates), and in-process milliseconds per image (one core).
2. CNN training on CPU: images/s of the default small net (32×32 RGB, 3 stages) per epoch,
   against its own inference (forward only) images/s.
3. Index queries at ``--vectors`` random vectors: p50/p99 latency of one query for exact NumPy
   search and HNSW (hnswlib; usearch too when installed), the approximate ones' recall@10
   against the exact neighbours, and build times.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

EXTRACTORS = {
    "color_histogram": {},
    "color_moments": {},
    "hog size=128x128": {"op": "hog", "size": [128, 128]},
    "lbp_histogram": {},
    "glcm": {},
    "gradient_stats": {},
    "cnn_embedding": {},
    "color_histogram grid 4x4 max": {"op": "color_histogram", "grid": [4, 4], "pool": "max"},
}


def make_jpegs(folder: str, n: int, width: int, height: int) -> list[str]:
    import cv2
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = cv2.resize(sources[i % len(sources)], (width, height),
                         interpolation=cv2.INTER_CUBIC).astype(np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:04d}.jpg")
        cv2.imwrite(path, img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def bench_extraction(n: int, workers: int, width: int, height: int) -> None:
    from pixelmill.images import read_image
    from pixelmill.learn import extract
    from pixelmill.ops import get_op

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "jpegs")
        os.makedirs(folder)
        paths = make_jpegs(folder, n, width, height)
        sample = read_image(paths[0])
        print(f"\n== feature extraction: {n} JPEGs {width}×{height}, {workers} workers ==")
        print("job img/s: whole job incl. worker start-up; steady: workers / mean per-image time")
        print(f"{'extractor':<32}{'dim':>7}{'ms/img 1 core':>15}{'job img/s':>11}"
              f"{'steady img/s':>14}{'vs base':>9}")

        def job(steps, name):
            out = os.path.join(tmp, f"{name.replace(' ', '_')}.parquet")
            summary = extract(steps, folder, out, workers=workers, progress=False)
            assert summary.ok == n, summary.reasons
            import pyarrow.parquet as pq

            per_image = np.mean(pq.read_table(out, columns=["t_total"]).column(0).to_numpy())
            return summary.images_per_s, workers / per_image

        # full-size decode (a bilinear resize is not shortened at decode) + a cheap vector op
        base, base_steady = job([{"op": "resize", "factor": 0.125, "method": "bilinear"},
                                 {"op": "color_moments"}], "baseline")
        print(f"{'baseline: decode, 1/8, moments':<32}{9:>7}{'':>15}{base:>11.2f}"
              f"{base_steady:>14.2f}{1.0:>9.2f}")
        for label, params in EXTRACTORS.items():
            params = dict(params)
            name = params.pop("op", label)
            op = get_op(name)
            op(sample, **params)  # warm (loads the CNN once)
            t0 = time.perf_counter()
            reps = 3
            for _ in range(reps):
                vec = op(sample, **params)
            ms = (time.perf_counter() - t0) / reps * 1000
            rate, steady = job([{"op": name, **params}], label)
            print(f"{label:<32}{vec.size:>7}{ms:>15.1f}{rate:>11.2f}{steady:>14.2f}"
                  f"{steady / base_steady:>9.2f}")


def bench_cnn(epochs: int, n_per_class: int, threads: tuple[int, ...] = (1, 2)) -> None:
    import torch

    from pixelmill.learn.cnn import CNNConfig, train_cnn
    from pixelmill.learn.datasets import color_texture_classes

    images, labels = color_texture_classes(n_per_class, seed=0)
    print(f"\n== CNN training on CPU: {len(images)} images 32×32 RGB, 20 classes, "
          f"{epochs} epochs ==")
    for n_threads in threads:
        config = CNNConfig(epochs=epochs, patience=epochs, device="cpu")
        model = train_cnn(images, labels, images[:40], labels[:40], config, threads=n_threads)
        train_rate = np.median([h["images_per_s"] for h in model.history])
        # train_cnn(threads=) sets torch's threads for its own call only: the baseline runs
        # with the same count (torch.get_num_threads() here is the process's own setting)
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            t0 = time.perf_counter()
            model.predict_proba(images)
            infer_rate = len(images) / (time.perf_counter() - t0)
        finally:
            torch.set_num_threads(before)
        print(f"{n_threads} thread(s): training {train_rate:8.1f} images/s (median "
              f"epoch, augmented); inference {infer_rate:8.1f} images/s (baseline); ratio "
              f"{train_rate / infer_rate:.2f}")


def _latencies(search, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        idx = search(q[None])
        times.append(time.perf_counter() - t0)
        found.append(idx[0])
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), np.array(found)


def bench_index(n: int, dim: int, n_queries: int) -> None:
    from pixelmill.learn.index import make_index

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, dim)).astype(np.float32)
    X = (centres[rng.integers(0, 200, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    rows = [{"key": str(i)} for i in range(n)]
    print(f"\n== index: {n} vectors × {dim} (cosine), {n_queries} single queries, k=10 ==")
    t0 = time.perf_counter()
    exact = make_index(X, rows, kind="exact")
    t_exact = time.perf_counter() - t0
    queries = exact.transform(X[rng.choice(n, n_queries, replace=False)] + 0.05)
    p50, p99, truth = _latencies(lambda q: exact.search(q, 10)[0], queries)
    print(f"{'kind':<22}{'build s':>9}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}{'speed-up':>10}")
    print(f"{'exact (NumPy)':<22}{t_exact:>9.2f}{p50:>9.3f}{p99:>9.3f}{1.0:>11.3f}{1.0:>10.1f}")
    base = p50

    def recall(found):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])

    t0 = time.perf_counter()
    approx = make_index(X, rows, kind="hnsw")
    t_build = time.perf_counter() - t0
    for ef in (64, 128):
        approx.ef = ef
        p50, p99, found = _latencies(lambda q: approx.search(q, 10)[0], queries)
        print(f"{f'hnswlib M=16 ef={ef}':<22}{t_build:>9.2f}{p50:>9.3f}{p99:>9.3f}"
              f"{recall(found):>11.3f}{base / p50:>10.1f}")
    try:
        from usearch.index import Index
    except ImportError:
        print("usearch: not installed (pip install usearch to compare)")
        return
    t0 = time.perf_counter()
    u = Index(ndim=dim, metric="cos", connectivity=16, expansion_add=200, expansion_search=128)
    u.add(np.arange(n), exact.vectors)
    t_build = time.perf_counter() - t0
    p50, p99, found = _latencies(lambda q: np.atleast_2d(u.search(q[0], 10).keys), queries)
    print(f"{'usearch M=16 ef=128':<22}{t_build:>9.2f}{p50:>9.3f}{p99:>9.3f}"
          f"{recall(found):>11.3f}{base / p50:>10.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=24, help="JPEGs for feature extraction")
    ap.add_argument("--size", default="1920x1080", help="JPEG size WxH")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=30, help="CNN images per class (20 classes)")
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip", default="", help="comma list of: features, cnn, index")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if "features" not in skip:
        bench_extraction(args.n, args.workers, width, height)
    if "cnn" not in skip:
        bench_cnn(args.epochs, args.per_class)
    if "index" not in skip:
        bench_index(args.vectors, args.dim, args.queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
