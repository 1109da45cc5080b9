"""``pixelmill scan URL``: inventory a folder or bucket of images (thin: parse, call, print)."""

from __future__ import annotations

import io
import json

import click

from pixelmill.cli._options import engine_option, json_option, storage_option, workers_option
from pixelmill.errors import ExitCode

__all__ = ["scan"]


def _print_summary(summary: dict, out: str | None) -> None:
    from pixelmill import storage

    echo = click.echo
    size = summary["bytes"]
    echo(f"{summary['files']} files ({size / 1e6:,.1f} MB): {summary['valid']} valid, "
         f"{summary['invalid']} invalid")

    def block(title: str, counts: dict) -> None:
        if not counts:
            return
        echo(f"\n{title}:")
        width = max(len(str(k)) for k in counts)
        for key, n in counts.items():
            echo(f"  {key if key is not None else '(none)'!s:<{width}}  {n:>8}")

    if "by_label" in summary:
        block("by label", summary["by_label"])
    block("by format", summary["by_format"])
    block("by size", summary["by_size"])
    if summary["invalid_by_reason"]:
        echo("\ninvalid files by reason:")
        for reason, group in summary["invalid_by_reason"].items():
            echo(f"  {group['count']:>6}  {reason}")
            for ex in group["examples"]:
                echo(f"          e.g. {storage.printable(ex['uri'])}: "
                     f"{storage.printable(str(ex['reason']))}")
    if out:
        echo(f"\nmanifest: {out}")


def _check_out(out: str, url: str, so: dict, overwrite: bool, **listing) -> None:
    """--out replaces a file only with --overwrite, is no folder, can be written, and is never
    one of the scanned files (also when named through a linked folder), even with --overwrite."""
    from pixelmill import storage
    from pixelmill.cli._options import refuse_existing, refuse_folder
    from pixelmill.errors import PixelmillError, UsageError

    refuse_folder(out, so, field="--out", example="inventory.parquet")
    if not overwrite:  # an earlier inventory, or any file the user has, stays
        refuse_existing(out, so, field="--out")
    storage.check_writable(out, so, field="--out")
    fs, path = storage.get_fs(out, so)
    try:
        present, folder = fs.exists(path), fs.isdir(path)
    except PixelmillError:
        raise
    except Exception as e:  # an unreachable store, refused credentials, a bad --storage-option
        raise storage.remote_error(out, e, "cannot reach", field="--out") from e
    if folder:
        raise UsageError(f"--out: {out} is a folder; name the manifest file, e.g. "
                         f"{storage.join(out, 'inventory.parquet')}")
    if present:  # with --overwrite: it must not be a file this scan reads
        for entry in storage.list_files(url, storage_options=so, unlisted=[], **listing):
            if storage.same_location(out, entry.uri):
                raise UsageError(f"--out: {out} is one of the scanned files; write the "
                                 "manifest elsewhere")


@click.command("scan")
@click.argument("url")
@click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders.")
@click.option("--glob", "include", multiple=True, metavar="PATTERN",
              help="Only files whose name or relative path matches (repeatable), e.g. '*.png'.")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Skip files whose name or relative path matches (repeatable).")
@click.option("--label-from", type=click.Choice(["parent", "partition"]), default=None,
              help="Label each file by its parent folder, or by key=value path segments.")
@click.option("--verify", is_flag=True,
              help="Decode every pixel (catches truncated or corrupt data; slower).")
@click.option("--sha256", is_flag=True, help="Add a sha256 column (checksum of each file).")
@click.option("--out", default=None, metavar="URL",
              help="Write the manifest as Parquet here (any storage URL).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Files claiming more pixels are invalid (default 500,000,000).")
@click.option("--no-progress", is_flag=True, help="Do not draw the progress bar.")
@json_option
@workers_option
@engine_option
@storage_option
def scan(url, recursive, include, exclude, label_from, verify, sha256, out, overwrite,
         max_pixels, no_progress, as_json, workers, engine, storage_options) -> None:
    """Inventory the images at URL: formats, sizes, labels, and every bad file with a reason.

    URL is a folder, a file or a glob on any storage fsspec knows (a local path, file://,
    s3://bucket/prefix, memory://, hdfs://...). Exit status: 0 all valid, 3 some files
    invalid, 4 no image files found, 2 bad arguments, 1 storage errors.
    """
    from pixelmill import codecs, inventory, storage
    from pixelmill.cli import exit_with

    so = storage.parse_storage_options(storage_options)
    if out:  # before any file is read: a bad --out must not cost the whole scan
        _check_out(out, url, so, overwrite, recursive=recursive, include=include or None,
                   exclude=exclude or None)
    table = inventory.scan(
        url, recursive=recursive, include=include or None, exclude=exclude or None,
        label_from=label_from, verify=verify, sha256=sha256, engine=engine, workers=workers,
        storage_options=so, max_pixels=max_pixels or codecs.DEFAULT_MAX_PIXELS,
        progress=not no_progress and not as_json,
    )
    if out and storage.absolute(out) in table.column("uri").to_pylist():
        from pixelmill.errors import UsageError  # even --overwrite: it is a scanned file

        raise UsageError(f"--out: {out} is one of the scanned files; write the manifest "
                         "elsewhere")
    if out:
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        storage.write_atomic(out, buf.getvalue(), so)
    summary = inventory.summarize(table)
    if as_json:
        click.echo(json.dumps({**summary, "manifest": out}, indent=2, default=str))
    else:
        _print_summary(summary, out)
    if summary["invalid"]:
        exit_with(ExitCode.PARTIAL)
