"""``pixelmill tile PIPELINE INPUT OUTPUT``: process one huge image tile by tile.

Exit codes: 0 the output was written (or, with ``--resume``, was already complete); 1 some tiles
failed (rerun with ``--resume``) or the job could not run (a missing or unreadable INPUT); 2 a
wrong flag, pipeline field, ``--compression`` or ``--level``, a pipeline that cannot be tiled
within ``--memory``, or an existing OUTPUT without ``--resume``/``--overwrite`` (nothing
started).
"""

from __future__ import annotations

import click

from pixelmill.cli._options import (
    engine_option,
    json_option,
    refuse_folder,
    storage_option,
    workers_option,
)

__all__ = ["tile"]


@click.command("tile")
@click.argument("pipeline")
@click.argument("input")
@click.argument("output")
@click.option("--tile", "tile_size", type=click.IntRange(min=1), default=None, metavar="PIXELS",
              help="Tile core size in input pixels (default: the largest that fits --memory).")
@click.option("--memory", default=None, metavar="SIZE",
              help="Memory budget of the whole job, e.g. 2GB (default: half the free memory, "
              "at most 4 GiB). Tile size and concurrency are chosen from it.")
@engine_option
@workers_option
@click.option("--resume", is_flag=True,
              help="Continue a killed run: only tiles without an ok manifest row are processed "
              "(nothing, when OUTPUT is complete from the same pipeline and input).")
@click.option("--overwrite", is_flag=True,
              help="Replace the OUTPUT and manifest of an earlier run.")
@click.option("--pyramid", is_flag=True,
              help="Also write half-size levels (TIFF SubIFDs / OME-Zarr multiscales).")
@click.option("--compression", default=None, metavar="NAME",
              help="TIFF: zlib, zstd, lzw, lzma, packbits, jpeg, webp, ...; Zarr: zstd, gzip, "
              "blosc (default: none).")
@click.option("--level", type=click.IntRange(min=0), default=0, show_default=True,
              help="Pyramid level of INPUT to read (pyramidal TIFF / OME-Zarr).")
@click.option("--manifest", default=None, metavar="URL",
              help="Manifest location (default: OUTPUT.manifest.parquet).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@json_option
@storage_option
def tile(pipeline, input, output, tile_size, memory, engine, workers, resume, overwrite, pyramid,
         compression, level, manifest, quiet, as_json, storage_options):
    """Run PIPELINE on the huge image INPUT tile by tile, writing OUTPUT (.tif or .zarr).

    The overlap between tiles comes from the pipeline's ops (their halo and scale), so the
    result equals processing the whole image at once. INPUT may be a tiled/striped/pyramidal
    (Big)TIFF, a Zarr or OME-Zarr store, a .npy file, or a JPEG/PNG (decoded once to disk).
    """
    import json

    from pixelmill import storage
    from pixelmill.errors import UsageError
    from pixelmill.pipeline import load_pipeline
    from pixelmill.tiled import parse_memory, run_tiled

    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    memory = parse_memory(memory, "--memory")  # the flag's name in the error
    so = storage.parse_storage_options(storage_options)
    if manifest is not None:
        refuse_folder(manifest, so, field="--manifest")
    # read with --storage-option, as INPUT and OUTPUT are (an s3:// pipeline on an endpoint)
    pipeline = load_pipeline(pipeline, so)
    summary = run_tiled(pipeline, input, output, tile=tile_size, memory=memory, engine=engine,
                        workers=workers, manifest=manifest, resume=resume, storage_options=so,
                        progress=not quiet and not as_json, pyramid=pyramid,
                        compression=compression, level=level, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), default=str))
    elif quiet:
        pass
    elif summary.up_to_date:
        click.echo(
            f"{summary.width}×{summary.height} -> {summary.out_width}×{summary.out_height}: "
            f"already complete, {summary.ok}/{summary.tiles} tiles ok in an earlier run with "
            f"this pipeline and input; nothing to do\noutput: {summary.output}")
    else:
        click.echo(
            f"{summary.width}×{summary.height} -> {summary.out_width}×{summary.out_height}: "
            f"{summary.ok}/{summary.tiles} tiles ok ({summary.resumed} from an earlier run), "
            f"tile {summary.tile} px, {summary.workers} worker{'' if summary.workers == 1 else 's'}"
            f", {summary.seconds:.1f} s, peak memory {storage.human_size(summary.peak_rss)} of "
            f"{storage.human_size(summary.memory)}")
        if summary.output:
            click.echo(f"output: {summary.output}")
    if summary.status != "ok":
        click.echo(f"error: {summary.reason}", err=True)
        from pixelmill.cli import exit_with
        from pixelmill.errors import ExitCode

        exit_with(ExitCode.PARTIAL)  # it ran; some tiles failed (rows in the manifest)
