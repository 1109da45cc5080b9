"""``pixelmill upscale INPUT OUTPUT``: super-resolve an image of any size, tile by tile."""

from __future__ import annotations

import click

from pixelmill.cli._options import (
    engine_option,
    refuse_existing,
    storage_option,
    workers_option,
)

__all__ = ["upscale"]

#: tile core size when --tile is not given (the streaming path goes smaller to fit --memory)
DEFAULT_TILE = 512

#: outputs the streaming tiled job can write (anything else is encoded whole)
_STREAMING_SUFFIXES = (".tif", ".tiff", ".zarr")


def _check_in_memory(shape, dtype, out_shape, tile: int, batch: int, budget: int | None) -> None:
    """Refuse, before computing, an in-memory upscale whose output (the array, then its encoded
    file) would not fit ``--memory`` or, without it, the memory available now."""
    import math

    import numpy as np
    import psutil

    from pixelmill.errors import InvalidParameterError
    from pixelmill.ops.sr import SR_PIXEL_BYTES, TORCH_WORKER_BYTES
    from pixelmill.storage import human_size

    h, w = shape[:2]
    itemsize = np.dtype(dtype).itemsize
    out_bytes = math.prod(out_shape) * itemsize
    tiles = min(batch, math.ceil(h / tile) * math.ceil(w / tile))
    tile_px = (min(tile, h) + 64) * (min(tile, w) + 64)  # core + a generous halo
    work = TORCH_WORKER_BYTES + tiles * tile_px * SR_PIXEL_BYTES
    need = math.prod(shape) * itemsize + 2 * out_bytes + work  # + at most its encoded file
    limit = budget if budget is not None else psutil.virtual_memory().available
    if need > limit and budget is not None:
        # the least the streaming path needs (this process, one worker with torch and the
        # model, a 64-px tile): a budget under it is not helped by a .tif OUTPUT, so do not
        # say to write one
        least = (psutil.Process().memory_info().rss + TORCH_WORKER_BYTES
                 + (64 + 2 * 32) ** 2 * SR_PIXEL_BYTES)
        if limit < least:
            stream = (f", or a .tif/.zarr OUTPUT (streamed tile by tile) with --memory well "
                      f"above {human_size(least)}"
                      if need > least else "")
            raise InvalidParameterError(
                f"--memory: a {out_shape[1]}×{out_shape[0]} result made in memory needs about "
                f"{human_size(need)}, more than the {human_size(limit)} of --memory; torch "
                f"and a model alone take about {human_size(TORCH_WORKER_BYTES)} before any "
                f"pixel (streaming to a .tif/.zarr OUTPUT needs them too: more than "
                f"{human_size(least)} in all): give --memory {human_size(need)} or more{stream}",
                field="--memory")
    if need > limit:
        raise InvalidParameterError(
            f"OUTPUT: a {out_shape[1]}×{out_shape[0]} result made in memory needs about "
            f"{human_size(need)}, more than the {human_size(limit)} "
            f"{'of --memory' if budget is not None else 'available'}; write a .tif or .zarr "
            "OUTPUT to stream it tile by tile within a fixed budget", field="OUTPUT")


@click.command()
@click.argument("input_uri", metavar="INPUT")
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--scale", type=click.IntRange(2, 4), default=2, show_default=True)
@click.option("--model", type=click.Choice(["edsr", "fsrcnn", "espcn", "bicubic"]),
              default="edsr", show_default=True, help="Shipped network (or MATLAB bicubic).")
@click.option("--device", default="auto", show_default=True, metavar="DEVICE",
              help="auto (CUDA when torch sees a GPU), cpu, cuda or cuda:N.")
@click.option("--tile", type=click.IntRange(min=16), default=None,
              help="Tile core size in input pixels (default: 512; on the streaming path, "
                   "smaller when --memory does not hold 512).")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True,
              help="Tiles per network pass (in-memory path).")
@click.option("--ensemble", is_flag=True,
              help="Geometric self-ensemble: average over the 8 flips/rotations (8x slower, "
              "~0.1 dB better).")
@click.option("--memory", default=None, help="Memory budget of the streaming path, e.g. 2GB.")
@click.option("--resume", is_flag=True,
              help="Streaming path: continue a killed run; only tiles without an ok manifest "
              "row (<OUTPUT>.manifest.parquet) are upscaled again.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing OUTPUT (and the streaming path's manifest).")
@click.option("--stream/--no-stream", default=None,
              help="Force the streaming tiled job (TIFF/Zarr output) or the in-memory path; "
              "default: stream when OUTPUT is .tif/.tiff/.zarr.")
@engine_option
@workers_option
@storage_option
def upscale(input_uri, output_uri, scale, model, device, tile, batch, ensemble, memory, resume,
            overwrite, stream, engine, workers, storage_options) -> None:
    """Upscale INPUT by --scale with a super-resolution network, writing OUTPUT.

    TIFF/Zarr outputs stream through the tiled job (any size, bounded memory, resumable
    manifest); other formats are read whole and upscaled in batched tiles in this process.
    """
    from pixelmill.engines import parse_engine_spec
    from pixelmill.errors import InvalidParameterError
    from pixelmill.ops import get_op
    from pixelmill.storage import parse_storage_options

    so = parse_storage_options(list(storage_options))
    parse_engine_spec(engine)  # a wrong --engine is refused whichever path OUTPUT takes
    params = {"model": model, "scale": scale, "device": device, "ensemble": ensemble}
    if engine is None or str(engine).split("=")[0] == "local":  # this machine's devices
        from pixelmill.devices import resolve_device

        resolve_device(device, field="--device")
    try:
        get_op("super_resolve").bind(params, where="upscale")  # fails before any work
    except InvalidParameterError as e:  # upscale.device: ... -> --device: ... (the flag)
        if e.field != "upscale.device":
            raise
        raise InvalidParameterError("--" + str(e).removeprefix("upscale."),
                                    field="--device") from e
    from pixelmill.storage import same_location

    if same_location(input_uri, output_uri):  # --overwrite would destroy the input
        raise InvalidParameterError(
            f"OUTPUT: {output_uri} is the INPUT itself; write the result to another file "
            "(an image is never replaced in place)", field="OUTPUT")
    if stream is None:
        stream = output_uri.lower().rstrip("/").endswith(_STREAMING_SUFFIXES)
    if resume and not stream:
        raise InvalidParameterError(
            "--resume: only the streaming path (a .tif/.tiff/.zarr OUTPUT) keeps a manifest "
            "to resume from", field="resume")
    if resume and overwrite:
        raise InvalidParameterError("--resume and --overwrite exclude each other",
                                    field="overwrite")
    from pixelmill.tiled import parse_memory

    memory = parse_memory(memory, "--memory")  # the flag's name in the error, on both paths
    if not stream:  # one process here: a cluster or a worker count would be silently unused
        if engine is not None and str(engine).split("=")[0] != "local":
            raise InvalidParameterError(
                f"--engine: {engine} runs only the streaming path; write a .tif/.tiff/.zarr "
                "OUTPUT (or give --stream), or leave --engine out: this OUTPUT is upscaled "
                "whole in this process", field="--engine")
        if workers is not None:
            raise InvalidParameterError(
                "--workers: worker processes run only the streaming path; write a "
                ".tif/.tiff/.zarr OUTPUT (or give --stream), or leave --workers out: this "
                "OUTPUT is upscaled whole in this process", field="--workers")
    if stream:
        if not output_uri.lower().rstrip("/").endswith(_STREAMING_SUFFIXES):
            raise InvalidParameterError(
                "OUTPUT: the streaming path writes .tif/.tiff/.zarr", field="OUTPUT")
        from pixelmill.tiled import run_tiled

        summary = run_tiled([{"op": "super_resolve", **params}], input_uri, output_uri,
                            tile=tile, max_tile=None if tile else DEFAULT_TILE, memory=memory,
                            engine=engine, workers=workers,
                            resume=resume, overwrite=overwrite, storage_options=so,
                            progress=True)
        again = f" ({summary.resumed} from an earlier run)" if summary.resumed else ""
        click.echo(f"{summary.status}: {summary.width}×{summary.height} -> "
                   f"{summary.out_width}×{summary.out_height}, {summary.tiles} "
                   f"tile{'' if summary.tiles == 1 else 's'}{again}, "
                   f"{summary.seconds:.1f} s -> {output_uri}")
        if summary.status != "ok":
            from pixelmill.cli import exit_with
            from pixelmill.errors import ExitCode

            exit_with(ExitCode.PARTIAL)  # it ran; some tiles failed (rows in the manifest)
        return
    import time

    from pixelmill import codecs, storage
    from pixelmill.devices import resolve_device
    from pixelmill.errors import DecodeError
    from pixelmill.images import check_output, write_image
    from pixelmill.sr.tiles import upscale_tiled

    tile = tile or DEFAULT_TILE
    check_output(output_uri)  # an unwritable format fails before the input is read
    if not overwrite:
        refuse_existing(output_uri, so, field="OUTPUT")
    dev = resolve_device(device, field="--device")
    budget = memory
    t0 = time.perf_counter()
    data = storage.read_bytes(input_uri, so)
    try:  # the header says the size: a result that cannot fit fails before decoding
        info = codecs.probe(data)
        shape = info.shape()
        # more than 4 channels: the decoder's refusal (as the streaming path gives it), not
        # OUTPUT's of the upscaled shape
        codecs.check_channels(info.channels)
        dtype = _decoded_dtype(data, info)
        # the output keeps the input's dtype and channels: say now if OUTPUT cannot hold them
        out_shape = (shape[0] * scale, shape[1] * scale, *shape[2:])
        check_output(output_uri, out_shape, dtype)
        _check_in_memory(shape, dtype, out_shape, tile, batch, budget)
        image = codecs.decode(data)
    except DecodeError as e:
        raise type(e)(f"{input_uri}: {e}") from e
    profile = codecs.icc_profile(data)  # the colour space of the values, kept in the output
    del data
    from pixelmill.engines.local import keep_freed_memory

    with keep_freed_memory():  # tile after tile of feature maps: no page faults each time
        out = upscale_tiled(image, model, scale, tile=tile, batch=batch, device=dev,
                            ensemble=ensemble)
    write_image(output_uri, out, storage_options=so, icc_profile=profile)
    click.echo(f"{image.shape[1]}×{image.shape[0]} -> {out.shape[1]}×{out.shape[0]} "
               f"({model} x{scale}, {time.perf_counter() - t0:.1f} s) -> {output_uri}")


def _decoded_dtype(data: bytes, info) -> str:
    """The dtype :func:`codecs.decode` will return, from the header: a TIFF's sample format
    (a 32-bit TIFF may be float32, uint32 or int32; the last two are refused here, with the
    decoder's own reason, rather than reported as a float32 that OUTPUT cannot hold)."""
    import io

    import numpy as np

    if info.format == "tif":
        import tifffile

        from pixelmill.codecs._decode import tiff_samples

        with tifffile.TiffFile(io.BytesIO(data)) as tf:
            page = tf.pages[0]
            stored, palette = page.dtype, page.photometric == tifffile.PHOTOMETRIC.PALETTE
        if stored is not None and not palette:
            return tiff_samples(np.zeros((1, 1), stored), strict=True).dtype.name
    return {16: "uint16", 32: "float32", 64: "float32"}.get(info.bit_depth, "uint8")
