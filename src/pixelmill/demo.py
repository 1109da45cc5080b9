"""``python -m pixelmill.demo`` (what ``make demo`` runs): a whole job on a sample collection.

Builds a few hundred varied images (plus a few broken files) from scikit-image's bundled
photographs into ``demo-out/collection``, runs a representative pipeline — resize to a long
side of 512, unsharp mask, and measurements (sharpness, brightness/contrast, blur flag,
channel statistics, perceptual hash) — and prints where the outputs, the manifest and the
HTML report are. Then runs the demos of the other parts when they are installed
(``pixelmill.tiled``, ``pixelmill.sr``, ``pixelmill.learn``).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time
from pathlib import Path

__all__ = ["DEMO_PIPELINE", "main"]

DEMO_PIPELINE = """\
# the demo pipeline: thumbnails with a little sharpening, and measurements as manifest columns
steps:
  - op: resize
    long_side: 512
    method: area
  - op: unsharp_mask
    radius: 1.5
    amount: 0.8
  - op: sharpness
  - op: brightness_contrast
  - op: blur_flag
  - op: channel_stats
  - op: phash
"""


def _hooks(out: Path, engine: str) -> None:
    """Call the optional demos of other parts; each prints its own lines."""
    for module, call in (("pixelmill.tiled", lambda m: m.demo(out, engine)),
                         ("pixelmill.sr", lambda m: m.demo(out)),
                         ("pixelmill.learn", lambda m: m.demo(out, engine))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if not callable(getattr(mod, "demo", None)):
            continue
        t0 = time.perf_counter()
        try:
            call(mod)
        except Exception as e:  # one part's demo must not hide the others
            print(f"{module}.demo failed: {type(e).__name__}: {e}", file=sys.stderr)
        else:
            print(f"({module} demo: {time.perf_counter() - t0:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pixelmill.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--engine", default="local", help="local, dask or spark (default: local)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes")
    ap.add_argument("--out", default="demo-out", help="folder for everything (default: demo-out)")
    ap.add_argument("--n", type=int, default=300, help="sample images to build (default: 300)")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the tiled / super-resolution / learning demos")
    args = ap.parse_args(argv)

    from pixelmill.jobs import run
    from pixelmill.samples import build_collection

    out = Path(args.out)
    t0 = time.perf_counter()
    collection = out / "collection"
    shutil.rmtree(collection, ignore_errors=True)
    built = build_collection(collection, args.n)
    print(f"built {built.images} sample images + {built.bad} broken files in {collection} "
          f"({time.perf_counter() - t0:.1f} s)")
    pipeline = out / "pipeline.yaml"
    pipeline.write_text(DEMO_PIPELINE)
    results = out / "run"
    summary = run(str(pipeline), str(collection), str(results), engine=args.engine,
                  workers=args.workers, overwrite=True, label_from="parent", progress=True)
    print(f"{summary.total} inputs: {summary.ok} ok, {summary.invalid} invalid, "
          f"{summary.failed} failed in {summary.elapsed:.1f} s "
          f"({summary.images_per_s:.1f} images/s, engine {args.engine})")
    for key, reason in summary.reasons.items():
        print(f"  {Path(key).name}: {reason}")
    print(f"outputs:  {results}/ (same folders as the collection)")
    print(f"manifest: {summary.manifest}")
    print(f"report:   {summary.report}")
    print(f"pipeline: {pipeline}   (re-run: pixelmill run {pipeline} {collection} {results} "
          "--resume)")
    if not args.no_extras:
        _hooks(out, args.engine)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
