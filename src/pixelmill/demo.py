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


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    return parse


def _check_out(out: Path) -> None:
    """``--out`` is a new or empty folder, or an earlier demo's (its ``pipeline.yaml``, written
    first): the demo replaces ``collection/`` and ``run/`` there, and never a user's folders."""
    from pixelmill.errors import UsageError

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file; name a folder for the demo")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        ours = (out / "pipeline.yaml").read_text().startswith(DEMO_PIPELINE.split("\n")[0])
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise UsageError(f"--out: {out} holds files that are not an earlier demo's (no demo "
                         "pipeline.yaml); name a new or empty folder")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pixelmill.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--engine", default="local", help="local, dask or spark (default: local)")
    ap.add_argument("--workers", type=_at_least(1), default=None, help="worker processes")
    ap.add_argument("--out", default="demo-out",
                    help="folder for everything (default: demo-out): a new or empty folder, or "
                         "an earlier demo's, whose collection/ and run/ are replaced")
    ap.add_argument("--n", type=_at_least(0), default=300,
                    help="sample images to build (default: 300)")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the tiled / super-resolution / learning demos")
    args = ap.parse_args(argv)

    from pixelmill.errors import PixelmillError

    try:
        return _demo(args)
    except PixelmillError as e:  # one line, as the pixelmill command prints it
        print(f"error: {e}", file=sys.stderr)
        return int(e.exit_code)
    except OSError as e:  # an --out that cannot be written
        print(f"error: {args.out}: {e}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from pixelmill.engines import parse_engine_spec
    from pixelmill.jobs import run
    from pixelmill.samples import build_collection

    parse_engine_spec(args.engine)  # a bad --engine fails before anything is built
    out = Path(args.out)
    _check_out(out)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pipeline = out / "pipeline.yaml"
    pipeline.write_text(DEMO_PIPELINE)  # first: it marks the folder as the demo's
    collection = out / "collection"
    shutil.rmtree(collection, ignore_errors=True)
    built = build_collection(collection, args.n)
    print(f"built {built.images} sample images + {built.bad} broken files in {collection} "
          f"({time.perf_counter() - t0:.1f} s)")
    results = out / "run"
    shutil.rmtree(results, ignore_errors=True)  # no outputs of an earlier, larger --n left over
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
