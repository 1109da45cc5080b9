"""``pixelmill report MANIFEST``: write the HTML report of a job's manifest."""

from __future__ import annotations

import click

from pixelmill.cli._options import storage_option

__all__ = ["report"]


@click.command("report")
@click.argument("manifest")
@click.option("--out", default=None, metavar="PATH",
              help="Where to write the page (default: report.html beside the manifest).")
@click.option("--sample", type=click.IntRange(min=0), default=12, show_default=True,
              help="Before/after thumbnail pairs to show.")
@storage_option
def report(manifest, out, sample, storage_options):
    """Write one self-contained HTML page describing the job of MANIFEST.

    MANIFEST is a job's ``manifest.parquet``, or the output folder that holds it.
    """
    from pixelmill import storage
    from pixelmill.errors import UsageError
    from pixelmill.report import write_report

    so = storage.parse_storage_options(storage_options)
    fs, path = storage.get_fs(manifest, so)
    if not fs.exists(path):
        raise UsageError(f"MANIFEST: {manifest} does not exist")
    if fs.isdir(path):  # a run's OUTPUT folder: its manifest
        inner = storage.join(manifest, "manifest.parquet")
        if not fs.exists(storage.get_fs(inner, so)[1]):
            raise UsageError(f"MANIFEST: {manifest} is a folder without a manifest.parquet")
        manifest = inner
    storage.read_parquet(manifest, so, schema_only=True)  # not Parquet: a usage error, here
    written = write_report(manifest, out, storage_options=so, sample=sample)
    click.echo(f"report: {written}")
