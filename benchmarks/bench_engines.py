"""The engines benchmark: the thumbnail job on the local, Dask and Spark engines, and the Spark
baselines a Spark user writes today.

Work per photo (the thumbnail pipeline of the jobs benchmark): decode a 1920×1080 JPEG, resize
the long side to 512 (area), gaussian σ=1.5, encode JPEG q85, write. Measured in one run, 2
workers each, on the same generated photos:

* ``local``, ``dask``, ``spark``: ``pixelmill.jobs.run`` with an open engine of each kind
  (``get_engine("dask")`` = a LocalCluster of 2 worker processes, ``get_engine("spark")`` =
  ``local[2]``), manifest and all, after the same warm-up run on each (10% of the photos:
  starts the workers, and lets the JVM compile its hot paths);
* ``spark image source + pandas UDF``: ``spark.read.format("image")`` (Spark decodes with Java
  ImageIO and ships raw pixels to Python) and a pandas UDF doing the same resize/blur/encode
  with OpenCV;
* ``spark binaryFile + Pillow UDF``: ``spark.read.format("binaryFile")`` and a pandas UDF that
  decodes, resizes (box filter), blurs and encodes with Pillow.

Also prints each engine's per-unit scheduling overhead: a no-op mapped over many units with the
engine's default batching, and one unit per task. Bars: pixelmill on Spark >= 10x the
image-source baseline and >= 3x the binaryFile baseline; each distributed engine within 15% of
the local engine's images/s.

Run: ``.venv/bin/python benchmarks/bench_engines.py [--n 2000] [--baseline-n 200] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

W, H, LONG, SIGMA, Q = 1920, 1080, 512, 1.5, 85
PIPELINE = {"steps": [{"op": "resize", "long_side": LONG, "method": "area"},
                      {"op": "gaussian", "sigma": SIGMA}]}


def make_photos(root: Path, n: int) -> list[Path]:
    """The jobs benchmark's photos (benchmarks/bench_thumbnail.py), generated once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_thumbnail import make_photos as make

    return make(root, n)


def noop(unit: int) -> int:
    return unit


def time_job(engine, src: Path, out: Path, warm_dir: Path) -> tuple[float, int]:
    from pixelmill.jobs import run

    shutil.rmtree(warm_dir, ignore_errors=True)
    n = len(list(src.glob("*.jpg")))
    run(PIPELINE, str(src), str(warm_dir), engine=engine, limit=max(2 * engine.workers, n // 10),
        format="jpg", quality=Q, progress=False, report=False)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = run(PIPELINE, str(src), str(out), engine=engine, format="jpg", quality=Q,
                  progress=False, report=False, overwrite=True)
    dt = time.perf_counter() - t0
    assert summary.ok == summary.total, summary.reasons
    return dt, summary.total


def overhead(engine, n_units: int, n_tasks: int) -> tuple[float, float]:
    """(ms per unit with default batching, ms per task with one unit per task)."""
    t0 = time.perf_counter()
    assert len(list(engine.map(noop, range(n_units)))) == n_units
    batched = (time.perf_counter() - t0) / n_units * 1e3
    t0 = time.perf_counter()
    assert len(list(engine.map(noop, range(n_tasks), batch_size=1))) == n_tasks
    single = (time.perf_counter() - t0) / n_tasks * 1e3
    return batched, single


def _target(w: int, h: int) -> tuple[int, int]:
    s = LONG / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def spark_baselines(spark, src: Path, out: Path, n: int) -> dict[str, float]:
    """images/s of the two hand-written Spark versions over the first ``n`` photos."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    files = sorted(str(p) for p in src.glob("*.jpg"))[:n]
    out_img, out_bin = out / "image-source", out / "binaryfile"
    for d in (out_img, out_bin):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    @pandas_udf("long")
    def thumb_from_struct(image: pd.DataFrame) -> pd.Series:
        import cv2
        import numpy as np

        sizes = []
        for origin, h, w, c, data in zip(image["origin"], image["height"], image["width"],
                                         image["nChannels"], image["data"], strict=True):
            bgr = np.frombuffer(data, np.uint8).reshape(h, w, c)
            small = cv2.resize(bgr, _target(w, h), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), SIGMA)
            _, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, Q])
            with open(os.path.join(str(out_img), os.path.basename(origin)), "wb") as f:
                f.write(buf.tobytes())
            sizes.append(len(buf))
        return pd.Series(sizes)

    @pandas_udf("long")
    def thumb_pillow(path: pd.Series, content: pd.Series) -> pd.Series:
        import io

        from PIL import Image, ImageFilter

        sizes = []
        for p, data in zip(path, content, strict=True):
            with Image.open(io.BytesIO(data)) as im:
                small = im.convert("RGB").resize(_target(*im.size), Image.Resampling.BOX)
            small = small.filter(ImageFilter.GaussianBlur(SIGMA))
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=Q)
            with open(os.path.join(str(out_bin), os.path.basename(p)), "wb") as f:
                f.write(buf.getvalue())
            sizes.append(buf.tell())
        return pd.Series(sizes)

    rates = {}
    t0 = time.perf_counter()
    df = spark.read.format("image").load(files)
    total = df.select(thumb_from_struct("image").alias("n")).agg(F.sum("n")).collect()[0][0]
    rates["spark image source + pandas UDF"] = n / (time.perf_counter() - t0)
    assert total and len(os.listdir(out_img)) == n
    t0 = time.perf_counter()
    df = spark.read.format("binaryFile").load(files)
    total = df.select(thumb_pillow("path", "content").alias("n")).agg(F.sum("n")).collect()[0][0]
    rates["spark binaryFile + Pillow UDF"] = n / (time.perf_counter() - t0)
    assert total and len(os.listdir(out_bin)) == n
    return rates


def main(argv: list[str] | None = None) -> int:
    import warnings

    from pixelmill.engines import get_engine

    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="photos for the pixelmill engines")
    ap.add_argument("--baseline-n", type=int, default=200,
                    help="photos for the (slow) Spark baselines (rates are per image)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--units", type=int, default=2000, help="no-op units for the overhead")
    ap.add_argument("--dir", default="bench-out/engines")
    args = ap.parse_args(argv)
    base = Path(args.dir)
    photos = make_photos(base / "in", args.n)
    src = photos[0].parent
    n, nb = len(photos), min(args.baseline_n, len(photos))
    print(f"engines benchmark: {n} photos {W}x{H} -> long side {LONG} (area), gaussian {SIGMA}, "
          f"JPEG q{Q}; {args.workers} workers; Spark baselines on {nb} photos", flush=True)
    rates: dict[str, float] = {}
    costs: dict[str, tuple[float, float]] = {}
    spark_conf = {"spark.driver.memory": "2g",
                  "spark.sql.execution.arrow.maxRecordsPerBatch": "8",
                  "spark.sql.files.maxPartitionBytes": str(8 * 2**20)}
    for name in ("local", "dask", "spark"):
        options = {"conf": spark_conf} if name == "spark" else {}
        with get_engine(name, workers=args.workers, **options) as engine:
            dt, total = time_job(engine, src, base / "out" / name, base / "warm" / name)
            rates[name] = total / dt
            print(f"  {name}: {rates[name]:.1f} images/s", flush=True)
            costs[name] = overhead(engine, args.units, min(args.units, 200))
            if name == "spark":
                rates.update(spark_baselines(engine.session, src, base / "out", nb))
                for key in list(rates)[3:]:
                    print(f"  {key}: {rates[key]:.1f} images/s", flush=True)
    print(f"{'method':<34}{'images/s':>10}{'x local':>9}")
    for name, rate in rates.items():
        print(f"{name:<34}{rate:>10.1f}{rate / rates['local']:>9.2f}")
    print(f"{'engine':<10}{'ms/unit (batched)':>20}{'ms/task (1 unit)':>18}")
    for name, (batched, single) in costs.items():
        print(f"{name:<10}{batched:>20.3f}{single:>18.2f}")
    img = rates["spark"] / rates["spark image source + pandas UDF"]
    binf = rates["spark"] / rates["spark binaryFile + Pillow UDF"]
    print(f"pixelmill on Spark / image source + pandas UDF: {img:.1f}x (bar >= 10)")
    print(f"pixelmill on Spark / binaryFile + Pillow UDF: {binf:.1f}x (bar >= 3)")
    for name in ("dask", "spark"):
        print(f"{name} / local: {rates[name] / rates['local']:.2f} (bar >= 0.85)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
