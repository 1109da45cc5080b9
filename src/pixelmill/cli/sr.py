"""``pixelmill sr``: train, evaluate and list super-resolution models; fuse frames."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from pixelmill.cli._options import json_option, overwrite_option, refuse_existing
from pixelmill.errors import DecodeError, InvalidParameterError

__all__ = ["sr"]

_SCALE = click.option("--scale", type=click.IntRange(2, 4), default=2, show_default=True,
                      help="Upscaling factor.")


def _default_data() -> str:
    from pixelmill.sr.data import default_data_dir

    return str(default_data_dir())


@click.group()
def sr() -> None:
    """Super-resolution models: train, eval, models, fuse."""


@sr.command()
@click.option("--model", "arch", type=click.Choice(["espcn", "fsrcnn", "edsr"]), required=True,
              help="Architecture to train.")
@_SCALE
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Folder of training images (default: <repo>/../shared/data/sr-train).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for checkpoints and the best weights (default: runs/<model>_x<S>).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--iters", "iters_per_epoch", type=click.IntRange(min=1), default=500,
              show_default=True, help="Optimizer steps per epoch.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--patch", type=click.IntRange(min=8), default=32, show_default=True,
              help="Low-resolution patch side.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True, help="Initial learning rate (cosine decay to 0).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time budget: stop (and finish the lr schedule) after this many minutes.")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Initialise matching tensors from these weights (e.g. a x2 model for x4; "
                   "a shallower or narrower edsr is grown, starting as the same function).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Architecture hyper-parameter, e.g. channels=32 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--overwrite", is_flag=True,
              help="Start over in an --out that holds an earlier run (its checkpoint is lost).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-side", type=click.IntRange(min=0), default=192, show_default=True,
              help="HR side of the central crops of the held-out images scored after each "
                   "epoch to keep the best weights; 0 scores whole images, as `sr eval` does.")
@click.option("--loss", type=click.Choice(["l1", "mse"]), default="l1", show_default=True,
              help="Pixel loss; mse optimises PSNR directly (e.g. to fine-tune an l1 model).")
def train(arch, scale, data, out, epochs, iters_per_epoch, batch, patch, lr, minutes, init,
          params, resume, overwrite, device, threads, seed, val_side, loss) -> None:
    """Train a network on LR/HR patches with validation PSNR each epoch."""
    import torch

    from pixelmill.sr.training import TrainConfig
    from pixelmill.sr.training import train as run_training

    if threads:
        torch.set_num_threads(threads)
    hyper = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidParameterError(f"--param: expected KEY=VALUE, got {item!r}", field="param")
        try:  # numbers (and true/false) as JSON; anything else stays text for the check
            hyper[key] = json.loads(value)
        except ValueError:
            hyper[key] = value
    from pixelmill.sr.training import check_params

    hyper = check_params(arch, hyper)  # unknown keys, wrong types: before any work
    out = out or str(Path("runs") / f"{arch}_x{scale}")
    if resume and overwrite:
        raise InvalidParameterError("--resume and --overwrite exclude each other",
                                    field="overwrite")
    from pixelmill.sr.training import check_folder, run_files

    check_folder(out, "--out")  # notes.txt/run: named before anything else is looked at
    earlier = run_files(out, arch, scale)
    if not resume and not overwrite and earlier:  # a run's checkpoint, or a model (an export)
        names = ", ".join(p.name for p in earlier)
        if earlier[0].name.startswith("checkpoint."):
            what, how = "an earlier run", "use --resume to continue it or --overwrite to start over"
        else:
            what, how = "a model", "use --overwrite to replace it, or another --out"
        raise InvalidParameterError(f"--out: {out} holds {what} ({names}); {how}", field="out")
    cfg = TrainConfig(
        arch=arch, scale=scale, data=data or _default_data(),
        out=out, epochs=epochs,
        iters_per_epoch=iters_per_epoch, batch=batch, patch=patch, lr=lr, minutes=minutes,
        init=init, seed=seed, device=device, val_side=val_side, loss=loss, params=hyper,
    )
    card = run_training(cfg, resume=resume, progress=sys.stderr.isatty(),
                        log=lambda m: click.echo(m, err=False))
    best = card["validation"]["psnr"]  # null in the card when infinite (an exact result)
    # a folder without a held-out split validates on a training image: not a held-out figure
    what = "held-out" if card["training_data"].get("held_out") else \
        "validation (training image: no held-out split)"
    click.echo(f"best {what} PSNR {math.inf if best is None else best:.3f} dB -> {cfg.out}")


@sr.command(name="eval")
@click.argument("data", type=click.Path(exists=True))
@_SCALE
@click.option("--model", default="edsr", show_default=True,
              help="Shipped model name, a .safetensors path, or 'bicubic'.")
@click.option("--split", type=click.Choice(["all", "val", "train"]), default="all",
              show_default=True, help="Evaluate only the held-out (val) part of a training folder.")
@click.option("--crop", type=click.IntRange(min=16), default=None,
              help="Use a central CROP×CROP region of each image (quicker on large images).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--ensemble", is_flag=True,
              help="Geometric self-ensemble: average over the 8 flips/rotations (8x slower).")
@json_option
def eval_(data, scale, model, split, crop, device, ensemble, as_json) -> None:
    """Evaluate on a folder: modcrop, MATLAB bicubic degradation, Y PSNR/SSIM, S px shaved."""
    from pixelmill.devices import resolve_device
    from pixelmill.sr.data import benchmark_images, split_files
    from pixelmill.sr.evaluate import check_crop, evaluate_files

    device = resolve_device(device, field="--device")  # before any output
    check_crop(crop, scale)
    if model != "bicubic":  # an unknown model, a checkpoint, weights without a card: now
        from pixelmill.sr.weights import load_model

        try:
            load_model(model, scale, device)  # cached: evaluate_files reuses it
        except InvalidParameterError as e:
            if e.field != "model":
                raise
            raise InvalidParameterError("--" + str(e), field="--model") from e
    found, layout = benchmark_images(data, scale)
    files = split_files(found, data, split)
    many = f"{len(files)} image{'' if len(files) == 1 else 's'}"
    if not as_json:
        click.echo(f"{many} ({layout}{'' if split == 'all' else ', ' + split})")

    def show(row):
        if not as_json:
            click.echo(f"{row['image']:<28} {row['psnr']:8.3f} dB  SSIM {row['ssim']:.4f}")

    from pixelmill.engines.local import keep_freed_memory

    try:
        with keep_freed_memory():  # image after image of feature maps, in this process
            result = evaluate_files(files, scale, model, device=device, on_image=show,
                                    crop=crop, ensemble=ensemble)
    except DecodeError as e:  # an empty or damaged image: named, as one too small to score
        raise InvalidParameterError(str(e), field="DATA") from e
    label = f"{model}+ensemble" if ensemble and model != "bicubic" else model
    if as_json:
        # an exact reconstruction scores an infinite PSNR: null in JSON (so is the mean of a
        # set holding one), never the invalid `Infinity`
        click.echo(json.dumps({"images": [_finite(r) for r in result["images"]],
                               "mean": _finite(result["mean"]),
                               "scale": scale, "model": model, "ensemble": ensemble,
                               "layout": layout}, allow_nan=False))
    else:
        m = result["mean"]
        click.echo(f"{'mean (' + many + ')':<28} {m['psnr']:8.3f} dB  "
                   f"SSIM {m['ssim']:.4f}   [{label} x{scale}]")


def _finite(row: dict) -> dict:
    """``row`` with its non-finite float scores (an infinite PSNR) as None (JSON null)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in row.items()}


@sr.command()
@json_option
def models(as_json) -> None:
    """List the shipped models with their held-out figures."""
    from pixelmill.sr.weights import available_models, json_safe

    cards = available_models()
    if as_json:  # a card written before cards were strict JSON may hold Infinity: null
        click.echo(json.dumps(json_safe(cards), indent=2, allow_nan=False))
        return
    if not cards:
        click.echo("no shipped models")
        return
    click.echo(f"{'model':<8} {'scale':>5} {'held-out PSNR':>14} {'bicubic':>8} {'epochs':>7}  file")
    for c in cards:
        v = c.get("validation", {})
        bic = v.get("heldout_bicubic_psnr", v.get("bicubic_psnr"))
        own = v.get("heldout_psnr", v.get("psnr", math.nan))
        own = math.inf if own is None else own  # null: infinite (an exact reconstruction)
        click.echo(
            f"{c['name']:<8} {'x' + str(c['scale']):>5} {own:>11.2f} dB"
            f" {'' if bic is None else f'{bic:.2f}':>8} {c['training']['epochs']:>7}  {c['file']}"
        )


@sr.command()
@click.argument("paths", nargs=-1, required=True, metavar="FRAME... OUTPUT")
@_SCALE
@click.option("--iterations", type=click.IntRange(min=0), default=20, show_default=True,
              help="Back-projection iterations.")
@click.option("--prior", type=click.Choice(["edsr", "fsrcnn", "espcn", "none"]), default="edsr",
              show_default=True,
              help="Start back-projection from this network's upscale of the first frame "
              "(and refine the registration against it); none: the classic shift-and-add "
              "estimate.")
@json_option
@overwrite_option
def fuse(paths, scale, iterations, prior, as_json, overwrite) -> None:
    """Fuse several shifted low-resolution frames of one scene into one S-times larger image.

    Registration (correlation peaks refined through the degradation model), a learned
    single-frame upscale of the first frame (--prior; or robust shift-and-add onto the fine
    grid with --prior none), iterative back-projection over every frame. The output is
    aligned with the first frame.
    """
    from pixelmill.images import check_output, read_image, write_image
    from pixelmill.sr.fusion import fuse_frames

    if len(paths) < 3:
        raise InvalidParameterError("fuse: give at least 2 frames and an OUTPUT", field="FRAME")
    prior = None if prior == "none" else prior
    if prior is not None:
        from pixelmill.ops import get_op

        get_op("super_resolve").bind({"model": prior, "scale": scale}, where="--prior")
    *frames_uris, output = paths
    from pixelmill.storage import same_location

    for k, frame in enumerate(frames_uris):  # --overwrite would destroy that frame
        if same_location(frame, output):
            raise InvalidParameterError(
                f"OUTPUT: {output} is FRAME {k + 1}; write the result to another file "
                "(a frame is never replaced in place)", field="OUTPUT")
    check_output(output)  # an unwritable format fails before any frame is read
    if not overwrite:
        refuse_existing(output, field="OUTPUT")
    try:
        frames = [read_image(u) for u in frames_uris]
    except DecodeError as e:  # an empty or damaged frame: named (its path), before any work
        raise InvalidParameterError(str(e), field="FRAME") from e
    f0 = frames[0]
    check_output(output, (f0.shape[0] * scale, f0.shape[1] * scale, *f0.shape[2:]), f0.dtype)
    from pixelmill.engines.local import keep_freed_memory

    try:
        # arrays allocated and freed over and over: without it 8 frames of 2000×2000 spent 47
        # of 146 CPU-seconds before back-projection on page faults (worker threads still map
        # blocks over 64 MiB afresh: glibc's per-thread heaps are no larger)
        with keep_freed_memory():
            fused, shifts = fuse_frames(frames, scale, iterations=iterations, prior=prior)
    except InvalidParameterError as e:  # FRAMES[k] -> FRAMES[k] (its path)
        import re

        msg = re.sub(r"^FRAMES\[(\d+)\]",
                     lambda m: f"{m.group(0)} ({frames_uris[int(m.group(1))]})", str(e))
        raise InvalidParameterError(msg, field=e.field) from e
    write_image(output, fused)
    if as_json:
        click.echo(json.dumps({"output": output, "shape": list(fused.shape),
                               "shifts": [{"frame": u, "dy": float(d[0]), "dx": float(d[1])}
                                          for u, d in zip(frames_uris, shifts, strict=True)]}))
        return
    for u, d in zip(frames_uris, shifts, strict=True):
        click.echo(f"{u}: dy {d[0]:+.3f} dx {d[1]:+.3f} px")
    click.echo(f"fused {len(frames)} frames -> {fused.shape[1]}×{fused.shape[0]} -> {output}")


def _card_figures(card: dict, files, held_out: bool, scale: int, shipped: dict,
                  bicubic: dict) -> None:
    """Record the exported model's held-out scores (and bicubic's) in its card."""
    card["validation"] = {
        **card.get("validation", {}),
        "heldout_images": len(files) if held_out else 0,
        "heldout_protocol": f"full {'held-out' if held_out else 'training (no held-out split)'} "
                            f"images, MATLAB bicubic x1/{scale} degradation, "
                            f"Y PSNR/SSIM with {scale}px shaved (pixelmill sr eval --split val)",
        "heldout_psnr": round(shipped["mean"]["psnr"], 3),
        "heldout_ssim": round(shipped["mean"]["ssim"], 4),
        "heldout_bicubic_psnr": round(bicubic["mean"]["psnr"], 3),
        "heldout_bicubic_ssim": round(bicubic["mean"]["ssim"], 4),
    }


@sr.command()
@click.argument("weights", type=click.Path(dir_okay=False, exists=True))
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Training folder whose held-out split is evaluated (default: the shared one).")
@click.option("--to", "dest", type=click.Path(file_okay=False), default=None,
              help="Destination folder (default: the package's sr/weights).")
@click.option("--float32", "full", is_flag=True, help="Keep float32 weights (default float16).")
@click.option("--overwrite", is_flag=True,
              help="Replace a model of the same name and scale already at the destination "
                   "(a shipped one, with the default --to).")
def export(weights, data, dest, full, overwrite) -> None:
    """Ship trained WEIGHTS: float16 copy + card with held-out PSNR/SSIM (model and bicubic).

    Staged and scored in a hidden folder beside the destination, then moved into place: an
    export that fails leaves what was there."""
    import tempfile

    from pixelmill.sr.data import train_val_split
    from pixelmill.sr.evaluate import evaluate_files
    from pixelmill.sr.training import check_folder
    from pixelmill.sr.weights import WEIGHTS_DIR, load_model, model_card, save_model, write_card

    card = model_card(weights, "WEIGHTS")  # a checkpoint or weights without a card: say so
    scale = int(card["scale"])
    try:  # weights that cannot be read or are not the card's network: before any work
        net = load_model(weights, scale).net
    except InvalidParameterError as e:
        if e.field != "model":
            raise
        raise InvalidParameterError("WEIGHTS: " + str(e).removeprefix("model: "),
                                    field="WEIGHTS") from e
    target = Path(dest or WEIGHTS_DIR) / f"{card['name']}_x{scale}"
    check_folder(target.parent, "--to")  # notes.txt/out
    there = [p for p in (target.with_suffix(".safetensors"), target.with_suffix(".json"))
             if p.exists()]
    if there and not overwrite:
        what = "a shipped model" if not dest else "a model"
        raise InvalidParameterError(
            f"--to: {there[0]} already exists ({what} of the same name and scale); pass "
            "--overwrite to replace it, or --to another folder", field="to")
    root = data or _default_data()
    _, files, held_out = train_val_split(root)
    if not held_out:
        click.echo(f"warning: {root} is too small for a held-out split; the card's figures "
                   f"come from the training image {files[0].name}", err=True)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidParameterError(f"--to: cannot create {target.parent}: {e}",
                                    field="to") from e
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        save_model(net, card, staged, half=not full)  # scored as shipped
        try:
            shipped = evaluate_files(files, scale, str(staged.with_suffix(".safetensors")))
        except DecodeError as e:  # an empty or damaged image in --data: named
            raise InvalidParameterError(f"--data: {e}", field="data") from e
        bicubic = evaluate_files(files, scale, "bicubic")
        _card_figures(card, files, held_out, scale, shipped, bicubic)
        write_card(staged, card, half=not full)
        for suffix in (".safetensors", ".json"):  # the card last: listed once both are there
            staged.with_suffix(suffix).replace(target.with_suffix(suffix))
    click.echo(f"{target.name}: {'held-out' if held_out else 'training image'} "
               f"{shipped['mean']['psnr']:.3f} dB / "
               f"{shipped['mean']['ssim']:.4f} (bicubic {bicubic['mean']['psnr']:.3f} dB / "
               f"{bicubic['mean']['ssim']:.4f}) -> {target.with_suffix('.safetensors')}")
