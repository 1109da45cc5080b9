"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

from pixelmill.engines import ENGINE_NAMES

workers_option = click.option(
    "--workers", type=click.IntRange(min=1), default=None,
    help="Worker processes (default: the number of CPU cores).",
)
engine_option = click.option(
    "--engine", default="local", show_default=True, metavar="NAME[=ADDRESS]",
    help=f"Where to run: {', '.join(ENGINE_NAMES)}; e.g. dask=tcp://host:8786, "
    "spark=spark://host:7077, spark=local[4].",
)
storage_option = click.option(
    "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
    help="Option passed to the fsspec filesystem (repeatable), e.g. endpoint_url=http://...",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace what an earlier run left at the output.")


def refuse_existing(uri: str, storage_options=None, *, field: str,
                    hint: str = "use --overwrite to replace it") -> None:
    """An output an earlier run left (a file, or a folder that is not empty) is a usage error,
    before any work: nothing a user made is replaced without ``--overwrite``."""
    from pixelmill import storage
    from pixelmill.errors import PixelmillError, UsageError

    fs, path = storage.get_fs(uri, storage_options)
    try:
        taken = fs.exists(path) and not (fs.isdir(path) and not fs.ls(path))
    except PixelmillError:
        raise
    except Exception as e:  # an unreachable store, refused credentials, a bad --storage-option
        raise storage.remote_error(uri, e, "cannot reach") from e
    if taken:
        raise UsageError(f"{field}: {uri} already exists; {hint}")


def refuse_input(uri: str, field: str, *, files: tuple[str, ...] = (),
                 folders: tuple[str, ...] = ()) -> None:
    """An output that is one of the command's input ``files`` or lies inside one of its input
    ``folders`` (a model, an index) is a usage error, even with ``--overwrite``: writing it
    would destroy what the command reads."""
    from pixelmill import storage
    from pixelmill.errors import UsageError

    for f in files:
        if storage.same_location(uri, f):
            raise UsageError(f"{field}: {uri} is an input of this command; write it elsewhere")
    for d in folders:
        if storage.within(uri, d):
            raise UsageError(f"{field}: {uri} is inside {d}, an input of this command; write "
                             "it elsewhere")


def refuse_folder(uri: str, storage_options=None, *, field: str,
                  example: str = "manifest.parquet") -> None:
    """A flag that names a file (a manifest, a table, a page) given a folder — one that ends
    with ``/`` or a local folder that exists — is a usage error before any work: the job would
    run to its end and then fail to write there (or, with ``--overwrite``, fail to remove it)."""
    import os

    from pixelmill import storage
    from pixelmill.errors import UsageError

    folder = uri.endswith(("/", os.sep))
    if not folder:
        fs, path = storage.get_fs(uri, storage_options)
        folder = storage.is_local(fs) and os.path.isdir(path)
    if folder:
        raise UsageError(f"{field}: {uri} is a folder; name a file, e.g. "
                         f"{storage.join(uri, example)}")
