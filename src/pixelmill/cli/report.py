"""``pixelmill report MANIFEST``: write the HTML report of a job's manifest."""

from __future__ import annotations

import posixpath

import click

from pixelmill.cli._options import storage_option

__all__ = ["report"]


@click.command("report")
@click.argument("manifest")
@click.option("--out", default=None, metavar="PATH",
              help="Where to write the page (default: report.html beside the manifest).")
@click.option("--sample", type=click.IntRange(min=0), default=12, show_default=True,
              help="Before/after thumbnail pairs to show.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out file (the default page beside the manifest is "
                   "always renewed).")
@storage_option
def report(manifest, out, sample, overwrite, storage_options):
    """Write one self-contained HTML page describing the job of MANIFEST.

    MANIFEST is a job's ``manifest.parquet``, or the output folder that holds it.
    """
    from pixelmill import storage
    from pixelmill.errors import PixelmillError

    so = storage.parse_storage_options(storage_options)
    try:
        manifest = _find_manifest(manifest, so)
        if out is not None:
            _check_out(out, manifest, so, overwrite)
        from pixelmill.report import write_report

        written = write_report(manifest, out, storage_options=so, sample=sample)
    except PixelmillError:
        raise
    except Exception as e:  # an object store's client: one line, not its traceback
        if "://" not in str(manifest) or str(manifest).startswith("file://"):
            raise
        raise storage.remote_error(manifest, e) from e
    click.echo(f"report: {written}")


def _find_manifest(manifest: str, so) -> str:
    from pixelmill import storage
    from pixelmill.errors import UsageError
    from pixelmill.manifest import journal_path

    fs, path = storage.get_fs(manifest, so)

    def interrupted(p: str) -> bool:  # a local run killed before its Parquet: the journal's rows
        return storage.is_local(fs) and fs.exists(journal_path(p))

    if not fs.exists(path):
        if interrupted(path):
            return manifest
        raise UsageError(f"MANIFEST: {manifest} does not exist")
    if fs.isdir(path):  # a run's OUTPUT folder: its manifest
        inner = storage.join(manifest, "manifest.parquet")
        inner_path = storage.get_fs(inner, so)[1]
        if not fs.exists(inner_path) and not interrupted(inner_path):
            raise UsageError(f"MANIFEST: {manifest} is a folder without a manifest.parquet")
        manifest = inner
    from pixelmill.report import check_manifest

    check_manifest(manifest, so)  # not Parquet, or not a job's manifest: a usage error, here
    return manifest


def _check_out(out: str, manifest: str, so, overwrite: bool) -> None:
    """--out never names the manifest or a file of the job (an input, an output), and replaces
    another file only with --overwrite."""
    from pixelmill import storage
    from pixelmill.cli._options import refuse_existing
    from pixelmill.errors import UsageError
    from pixelmill.manifest import read_manifest_table, select_rows

    if storage.same_location(out, manifest):
        raise UsageError(f"--out: {out} is the manifest itself; write the page elsewhere")
    target = storage.absolute(out)
    name = posixpath.basename(target.rstrip("/").replace("\\", "/"))
    for row in select_rows(read_manifest_table(manifest, so), ("uri", "output", "relpath")):
        for column in ("uri", "output"):
            value = str(row.get(column) or "")
            if value and (storage.absolute(value) == target or (  # also through a linked folder
                    posixpath.basename(value.replace("\\", "/")) == name
                    and storage.same_location(value, out))):
                raise UsageError(f"--out: {out} is the {'input' if column == 'uri' else 'output'}"
                                 f" of {row.get('relpath') or row[column]}; write the page "
                                 "elsewhere")
    fs, path = storage.get_fs(out, so)
    try:
        folder = fs.isdir(path)
    except Exception as e:  # an unreachable store, refused credentials
        raise storage.remote_error(out, e, "cannot reach") from e
    if folder:  # --overwrite cannot help: the page is a file
        raise UsageError(f"--out: {out} is a folder; name the page's file (e.g. "
                         f"{storage.join(out, 'report.html')})")
    if not overwrite:
        refuse_existing(out, so, field="--out")
