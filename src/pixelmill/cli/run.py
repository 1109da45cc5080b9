"""``pixelmill run PIPELINE INPUT OUTPUT``: run a pipeline over a collection.

Exit codes: 0 every input ok; 3 (PARTIAL) some inputs invalid or failed (see the manifest);
2 (USAGE) a wrong flag or pipeline field, nothing started; 4 (NO_INPUT) no images found;
1 the job could not run.
"""

from __future__ import annotations

import sys

import click

from pixelmill.cli._options import (
    engine_option,
    refuse_folder,
    storage_option,
    workers_option,
)

__all__ = ["run"]


@click.command("run")
@click.argument("pipeline")
@click.argument("input")
@click.argument("output")
@engine_option
@workers_option
@click.option("--resume", is_flag=True, help="Process only inputs without an ok manifest row.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs and manifest of an earlier run.")
@click.option("--format", "format_", default=None, metavar="FMT",
              help="Output format: jpg, png, tif, webp (default: each input's).")
@click.option("--quality", type=int, default=None, help="JPEG/WebP quality, 1-100.")
@click.option("--limit", type=int, default=None, help="Process only the first N inputs.")
@click.option("--manifest", default=None, metavar="URL",
              help="Manifest location (default: OUTPUT/manifest.parquet).")
@click.option("--timeout", type=float, default=None, metavar="S",
              help="Seconds one input may take before it is failed.")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Descend into sub-folders of INPUT.")
@click.option("--glob", "include", multiple=True, metavar="PATTERN",
              help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Skip files matching this glob.")
@click.option("--label-from", type=click.Choice(["parent", "partition"]), default=None,
              help="Add a label column from each input's folder.")
@click.option("--name", "name_template", default="{parent}/{stem}.{ext}", show_default=True,
              help="Output naming template: {parent} {stem} {ext} {name} {suffix} {label} {index}.")
@click.option("--measure-only", is_flag=True,
              help="Write no images: only the manifest (measurements) and report into OUTPUT.")
@click.option("--tile-threshold", type=int, default=64_000_000, show_default=True,
              help="Inputs with more pixels are processed tile by tile.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Inputs with more pixels are invalid (default: the codec's limit, 500 M).")
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option("--no-planes", is_flag=True,
              help="Decode every JPEG to RGB, also where a JPEG-to-JPEG job of area resizes and "
                   "gaussians could run on its Y/Cb/Cr planes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@storage_option
def run(pipeline, input, output, engine, workers, resume, overwrite, format_, quality, limit,
        manifest, timeout, recursive, include, exclude, label_from, name_template, measure_only,
        tile_threshold, max_pixels, no_report, no_planes, quiet, storage_options):
    """Run PIPELINE (a YAML/JSON file) over the images of INPUT, writing to OUTPUT.

    INPUT is a folder, file or glob (any fsspec URL: s3://, memory://, ...) or a scan manifest
    (.parquet). Outputs keep INPUT's relative folders. Exit codes: 0 all ok, 3 some inputs
    invalid or failed, 2 usage error, 4 no input images, 1 the job could not run.
    """
    from pixelmill import storage
    from pixelmill.jobs import run as run_job
    from pixelmill.pipeline import load_pipeline

    so = storage.parse_storage_options(storage_options)
    if manifest is not None:
        refuse_folder(manifest, so, field="--manifest")
    # read with --storage-option, as INPUT and OUTPUT are (an s3:// pipeline on an endpoint)
    pipeline = load_pipeline(pipeline, so)
    if measure_only and manifest is None:
        manifest = storage.join(output, "manifest.parquet")
    summary = run_job(
        pipeline, input, None if measure_only else output, manifest=manifest, engine=engine,
        workers=workers, resume=resume, format=format_, quality=quality, limit=limit,
        overwrite=overwrite, recursive=recursive, include=list(include) or None,
        exclude=list(exclude) or None, label_from=label_from, timeout=timeout,
        storage_options=so, tile_threshold=tile_threshold, progress=not quiet,
        report=not no_report, name_template=name_template, max_pixels=max_pixels,
        planes=not no_planes)
    if not quiet:
        click.echo(
            f"{summary.total} inputs: {summary.ok} ok, {summary.invalid} invalid, "
            f"{summary.failed} failed ({summary.processed} processed in {summary.elapsed:.1f} s, "
            f"{summary.images_per_s:.1f} images/s; {summary.skipped} already done)")
        for key, reason in list(summary.reasons.items())[:10]:
            click.echo(f"  {storage.printable(str(key))}: {storage.printable(str(reason))}",
                       err=True)
        if len(summary.reasons) > 10:
            click.echo(f"  ... and {len(summary.reasons) - 10} more (see the manifest)", err=True)
        click.echo(f"manifest: {summary.manifest}")
        if summary.report:
            click.echo(f"report:   {summary.report}")
    if summary.exit_code:
        # SystemExit, not click's Exit: pixelmill.cli.main runs click with standalone_mode=False,
        # where an Exit's code is returned by click and dropped; SystemExit reaches the shell.
        sys.exit(int(summary.exit_code))
