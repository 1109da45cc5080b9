"""Training a super-resolution network on LR/HR luma patches, with validation, checkpoints, resume.

One *epoch* is ``iters_per_epoch`` Adam steps on random ``patch``² low-resolution patches
(HR patches S times larger) with random flips and rotations, drawn from the training part of
the data folder (see :func:`pixelmill.sr.data.split_files`). After each epoch the network is
measured on central ``val_side`` px crops (``val_side=0``: the whole images) of the held-out
part (Y-channel PSNR with S pixels shaved), a checkpoint is written (``checkpoint.safetensors``
+ ``checkpoint.json``: network, optimizer, epoch, elapsed time, RNG state — no pickle), and the
best network so far is exported as ``<arch>_x<S>.safetensors`` with its card. The learning
rate follows a cosine from ``lr`` to 0 over the run, measured in epochs or, with a time
budget, in elapsed minutes, whichever is further along. ``resume=True`` continues from the checkpoint in ``out``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixelmill.errors import DecodeError, InvalidParameterError, PixelmillError
from pixelmill.metrics import psnr
from pixelmill.sr.data import load_pairs, sample_patches, train_val_split
from pixelmill.sr.models import build_model
from pixelmill.sr.weights import _brief, save_model
from pixelmill.storage import ordinary_file_mode

__all__ = [
    "TrainConfig",
    "check_folder",
    "check_params",
    "check_patch",
    "check_validation",
    "run_files",
    "train",
]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint and the card)."""

    arch: str
    scale: int
    data: str
    out: str
    epochs: int = 100
    iters_per_epoch: int = 500
    batch: int = 16
    patch: int = 32
    lr: float = 1e-3
    minutes: float | None = None
    init: str | None = None
    seed: int = 0
    device: str | None = None
    val_side: int = 192
    loss: str = "l1"
    params: dict[str, Any] = field(default_factory=dict)


def _device(name: str | None) -> torch.device:
    from pixelmill.devices import resolve_device

    return torch.device(resolve_device(name, field="--device"))


def _validate(net: torch.nn.Module, pairs, device: torch.device) -> float:
    net.eval()
    scores = []
    with torch.inference_mode():
        for lr, hr in zip(pairs.lr, pairs.hr, strict=True):
            x = torch.from_numpy(lr)[None, None].to(device)
            y = net(x)[0, 0].float().cpu().numpy()
            scores.append(psnr(hr, np.clip(y, 0, 1), data_range=1.0, crop_border=pairs.scale))
    net.train()
    return float(np.mean(scores))


_LOSSES = {"l1": torch.nn.L1Loss, "mse": torch.nn.MSELoss}


_OTHER_NETWORK = ("would load its weights into another network (train in another --out, or "
                  "start from its weights with --init)")

#: what a resume may not change: the checkpoint config's key -> (its flag, why)
_RESUME_KEEPS = {
    "arch": ("model", _OTHER_NETWORK),
    "scale": ("scale", _OTHER_NETWORK),
    "params": ("param", _OTHER_NETWORK),
    "val_side": ("val-side", "would compare scores of different images"),
    "loss": ("loss", "would change the objective halfway (fine-tune with --init instead)"),
}


def _check_resume(out: Path, earlier: dict[str, Any], cfg: TrainConfig) -> None:
    """A resume continues one run: refuse settings that would load the checkpoint into another
    network (``--model``, ``--scale``, ``--param``), change what it optimises or what its best
    weights were scored on (the card could then describe neither half). Checked on the
    checkpoint's config, before any tensor is loaded."""
    from pixelmill.sr.models import ARCHITECTURES

    for key, (flag, reason) in _RESUME_KEEPS.items():
        if key == "params":  # the full hyper-parameters: a default given or not is the same
            defaults = ARCHITECTURES[cfg.arch][1]
            before = {**defaults, **(earlier.get("params") or {})}
            now = {**defaults, **cfg.params}
            for k in now:
                if before.get(k) != now[k]:
                    raise InvalidParameterError(
                        f"--param: the run in {out} used {k}={before.get(k)!r}; resuming with "
                        f"{k}={now[k]!r} {reason}", field="param")
            continue
        if key in earlier:
            before = earlier[key]
        elif hasattr(TrainConfig, key):  # a setting added since: the run used its default
            before = getattr(TrainConfig, key)
        else:
            continue
        if before != getattr(cfg, key):
            raise InvalidParameterError(
                f"--{flag}: the run in {out} used {key}={before!r}; resuming "
                f"with {getattr(cfg, key)!r} {reason}", field=flag.replace("-", "_"))


#: the files of a run in its --out: the checkpoint, then the best weights and their card
_CHECKPOINT = ("checkpoint.safetensors", "checkpoint.json")


def run_files(out: str | Path, arch: str, scale: int) -> list[Path]:
    """What a run of ``arch`` at ``scale`` writes in ``out`` and an earlier run (or an export)
    may have left there: the checkpoint and ``<arch>_x<S>.safetensors`` + its ``.json`` card;
    those present, in that order."""
    out = Path(out)
    names = (*_CHECKPOINT, f"{arch}_x{scale}.safetensors", f"{arch}_x{scale}.json")
    return [out / n for n in names if (out / n).exists()]


def check_folder(path: str | Path, flag: str) -> None:
    """Refuse an output folder that is an existing file, or lies under one (``--out
    notes.txt/run``), naming ``flag``, before anything is written."""
    path = Path(path)
    for here in (path, *path.parents):
        if here.exists():
            if here.is_dir():
                return
            where = "is a file" if here == path else f"cannot be created: {here} is a file"
            raise InvalidParameterError(f"{flag}: {path} {where}, not a folder",
                                        field=flag.lstrip("-"))


def _read_checkpoint_config(out: Path) -> dict[str, Any]:
    """The ``config`` of the checkpoint in ``out``, for a resume; an ``out`` with no complete
    checkpoint is an :class:`InvalidParameterError` saying there is nothing to resume."""
    if not all((out / n).is_file() for n in _CHECKPOINT):
        left = sorted(p.name for p in out.glob("*.safetensors")) if out.is_dir() else []
        there = (f"; it holds {', '.join(left)}, which a resume does not take over: start over "
                 "there with --overwrite, or train into another --out") if left else ""
        where = f"{out} holds no checkpoint ({' + '.join(_CHECKPOINT)})" if out.is_dir() else \
            f"{out} does not exist"
        raise InvalidParameterError(f"--resume: nothing to resume: {where}{there}",
                                    field="resume")
    try:
        meta = _checkpoint_meta(out)
        config = meta["config"]
        if not isinstance(config, dict):
            raise TypeError(f"config is {type(config).__name__}, not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
            SafetensorError) as e:
        raise InvalidParameterError(
            f"--resume: the checkpoint in {out} cannot be read ({_brief(e)}); "
            "start over with --overwrite", field="resume") from e
    return config


#: least low-resolution patch side (``sr train --patch``'s bound)
MIN_PATCH = 8

#: least value of a hyper-parameter where 1 is not enough (ESPCN's second layer has channels/2)
_MIN_PARAM = {("espcn", "channels"): 2}


def check_params(arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse hyper-parameters ``arch`` does not declare (:data:`~pixelmill.sr.models
    .ARCHITECTURES` defaults) or of the wrong type: integer ones must be positive integers,
    float ones positive numbers. Returns ``params`` with integral floats (``4.0``) as ints."""
    from pixelmill.sr.models import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise InvalidParameterError(
            f"--model: {arch!r} is not one of {', '.join(ARCHITECTURES)}", field="model")
    defaults = ARCHITECTURES[arch][1]
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key not in defaults:
            raise InvalidParameterError(
                f"--param: {arch} has no hyper-parameter {key!r} (it has "
                f"{', '.join(f'{k}={v}' for k, v in defaults.items())})", field="param")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(defaults[key], int):
            least = _MIN_PARAM.get((arch, key), 1)
            if not number or not math.isfinite(value) or value != int(value) or value < least:
                raise InvalidParameterError(
                    f"--param: {key}={value!r}: expected an integer >= {least}", field="param")
            value = int(value)
        elif not number or not math.isfinite(value) or value <= 0:
            raise InvalidParameterError(
                f"--param: {key}={value!r}: expected a positive number", field="param")
        checked[key] = value
    return checked


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file's header (decoded only when PIL cannot say)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            return h, w
    except Exception:  # PIL cannot say: the decoder says what is wrong with the file
        from pixelmill.sr.data import read_rgb

        return read_rgb(path).shape[:2]


def check_patch(files: list[Path], scale: int, patch: int) -> None:
    """Refuse a low-resolution ``patch`` side that no training image holds (each image gives
    ``side // scale`` low-resolution pixels per side), from the files' headers."""
    if not files:
        return
    sizes = [_image_size(f) for f in files]
    if any(h // scale >= patch and w // scale >= patch for h, w in sizes):
        return
    largest = max(sizes, key=lambda s: min(s))
    fits = min(largest) // scale
    advice = (f"use --patch {fits} or less" if fits >= MIN_PATCH else
              f"--patch is at least {MIN_PATCH}: training images need "
              f"{MIN_PATCH * scale}×{MIN_PATCH * scale} pixels or more at x{scale}")
    raise InvalidParameterError(
        f"--patch: no training image holds a {patch}×{patch} low-resolution patch at x{scale} "
        f"(it needs {patch * scale}×{patch * scale} pixels; the largest of the {len(files)} "
        f"training images is {largest[1]}×{largest[0]}); {advice}", field="patch")


def check_validation(files: list[Path], scale: int, val_side: int, held_out: bool) -> None:
    """Refuse, from the files' headers, a validation set of which no image can be paired at
    ``scale`` (a pair needs ``4 * scale`` pixels per side, after the central ``val_side`` crop
    when ``val_side`` is not 0): every epoch would score NaN and no best weights be kept."""
    least = 4 * scale
    if val_side and val_side < least:
        raise InvalidParameterError(
            f"--val-side: central {val_side}px crops are too small to score at x{scale}: each "
            f"side needs at least {least} px; use --val-side {least} or more (0: whole images)",
            field="val_side")
    sizes = [_image_size(f) for f in files]
    if not files or any(min(h, w) >= least for h, w in sizes):
        return
    what = "held-out" if held_out else "validation (the folder has no held-out split)"
    shown = ", ".join(f"{f.name} ({w}×{h})" for f, (h, w) in zip(files[:5], sizes, strict=False))
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    raise InvalidParameterError(
        f"--data: no {what} image can be scored at x{scale}: each needs at least "
        f"{least}×{least} pixels, and the {len(files)} there are smaller: {shown}{more}; add "
        "larger images to the folder (10 % of them, by the CRC-32 of the path, are held out)",
        field="data")


def _val_what(cfg: TrainConfig) -> str:
    return f"central {cfg.val_side}px crops" if cfg.val_side else "whole images"


def _bicubic_psnr(pairs) -> float:
    from pixelmill.sr.resample import imresize

    return float(np.mean([
        psnr(hr, np.clip(imresize(lr.astype(np.float64), pairs.scale), 0, 1), data_range=1.0,
             crop_border=pairs.scale)
        for lr, hr in zip(pairs.lr, pairs.hr, strict=True)
    ]))


def _save_checkpoint(out: Path, net, opt, state: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for key, val in st.items():
            tensors[f"opt.{idx}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    meta = {**state, "param_groups": opt_state["param_groups"]}
    # the run state travels inside the weights' file: one rename makes a checkpoint whole (two
    # files replaced one by one paired epoch N+1's weights with epoch N's state after a stop
    # between them); checkpoint.json is a readable copy
    tmp = out / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    ordinary_file_mode(tmp)  # safetensors writes 0600; checkpoint.json beside it is 0644
    tmp.replace(out / "checkpoint.safetensors")
    tmpj = out / "checkpoint.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=1))
    tmpj.replace(out / "checkpoint.json")


#: the safetensors metadata key holding a checkpoint's run state
_META_KEY = "pixelmill.checkpoint"


def _checkpoint_meta(out: Path) -> dict[str, Any]:
    """A checkpoint's run state: from its weights' file (written with them in one rename), or
    from ``checkpoint.json`` for a checkpoint written before it was kept there."""
    from safetensors import safe_open

    with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
        text = (f.metadata() or {}).get(_META_KEY)
    meta = json.loads(text if text is not None else (out / "checkpoint.json").read_text())
    if not isinstance(meta, dict):
        raise TypeError(f"the checkpoint's state is {type(meta).__name__}, not an object")
    return meta


def _load_checkpoint(out: Path, net, opt) -> dict[str, Any]:
    """The run state of the checkpoint in ``out``, its network and optimizer loaded into
    ``net`` and ``opt``; one that cannot be read or loaded is an
    :class:`InvalidParameterError` naming ``--resume``."""
    try:
        meta = _checkpoint_meta(out)
        tensors = load_file(str(out / "checkpoint.safetensors"))
        net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise InvalidParameterError(
            f"--resume: the checkpoint in {out} cannot be loaded ({_brief(e)}); start "
            "over with --overwrite", field="resume") from e
    return meta


def _init_from(net: torch.nn.Module, path: str) -> int:
    """Copy every tensor of ``path`` whose name and shape match ``net`` (e.g. x2 body -> x4).

    Residual blocks the source lacks (a deeper EDSR grown from a shallower one) start with
    their last convolution at zero: they pass their input through, so the grown network starts
    as the same function and training only adds to it.

    A wider EDSR (more ``channels``) grown from a narrower one starts as the same function
    too: each source tensor fills the leading channels, the weights by which an old channel
    would read a new one are zero, and the new channels keep their fresh random weights. The
    old channels then compute exactly what they computed before, the tail reads only them,
    and the new channels carry (non-zero) features that training can start to use at once.
    Returns how many source tensors were copied, wholly or into leading channels; a file
    that is not safetensors weights, or none of whose tensors fits, is an
    :class:`InvalidParameterError` naming ``--init``.
    """
    from pixelmill.sr.models import EDSR, _ResBlock

    try:
        source = load_file(path)
    except (OSError, SafetensorError) as e:
        raise InvalidParameterError(
            f"--init: {path} cannot be read as safetensors weights ({_brief(e)}); give a "
            "model's .safetensors file", field="init") from e
    own = net.state_dict()
    widths = None  # (source width, own width) when an EDSR is widened
    if isinstance(net, EDSR) and "head.weight" in source:
        widths = (source["head.weight"].shape[0], own["head.weight"].shape[0])

    def fits(k: str, v: torch.Tensor) -> bool:
        if k not in own or own[k].dim() != v.dim():
            return False
        if own[k].shape == v.shape:
            return True
        return widths is not None and widths[0] < widths[1] and all(
            a == b or (a, b) == widths for a, b in zip(v.shape, own[k].shape, strict=True))

    copied = {k: v.float() for k, v in source.items() if fits(k, v)}
    if not copied:
        raise InvalidParameterError(
            f"--init: none of the {len(source)} tensors of {path} matches the network by name "
            f"and shape ({type(net).__name__} has {', '.join(list(own)[:4])}, …); give weights "
            "of the same architecture (a model's .safetensors, not a checkpoint)", field="init")
    with torch.no_grad():
        for k, v in copied.items():  # the whole tensor, or its leading channels
            if v.dim() == 4 and own[k].shape[1] > v.shape[1]:
                own[k][: v.shape[0], v.shape[1]:] = 0  # old channels ignore the new ones
            own[k][tuple(slice(0, n) for n in v.shape)] = v
    net.load_state_dict(own)
    if copied:
        with torch.no_grad():
            for name, module in net.named_modules():
                if isinstance(module, _ResBlock) and not any(k.startswith(name + ".")
                                                             for k in copied):
                    module.conv2.weight.zero_()
                    module.conv2.bias.zero_()
    return len(copied)


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train per ``cfg``; returns the card of the best network (also written to ``cfg.out``).

    Everything that can be refused is refused before anything is written (no empty ``out``
    is left): the loss, the hyper-parameters, the device, an ``out`` that is (or lies under)
    a file, ``resume`` without a checkpoint in ``out`` or with settings other than the
    checkpoint's (``arch``, ``scale``, ``params``, ``val_side``, ``loss``), images that cannot
    be read, a ``patch`` no training image holds, validation images none of which can be
    scored, and ``init`` weights that cannot be read or match nothing. Each is an
    :class:`~pixelmill.errors.InvalidParameterError` naming the field.
    """
    if cfg.loss not in _LOSSES:
        raise InvalidParameterError(
            f"loss: {cfg.loss!r} is not one of {sorted(_LOSSES)}", field="loss")
    # what can be refused is refused before anything is written (no empty --out is left)
    cfg.params = check_params(cfg.arch, dict(cfg.params))
    device = _device(cfg.device)  # a device torch cannot use
    out = Path(cfg.out)
    check_folder(out, "--out")
    if resume:  # a checkpoint of this network and these settings, before the data is read
        _check_resume(out, _read_checkpoint_config(out), cfg)
    root = Path(cfg.data)
    train_files, val_files, held_out = train_val_split(root)
    try:  # from the headers: an unreadable image, or sizes that cannot train or validate
        check_patch(train_files, cfg.scale, cfg.patch)
        check_validation(val_files, cfg.scale, cfg.val_side, held_out)
    except DecodeError as e:
        raise InvalidParameterError(f"--data: {e}", field="data") from e
    with torch.random.fork_rng(devices=[]):  # the caller's torch RNG is left as it was
        torch.manual_seed(cfg.seed)
        net = build_model(cfg.arch, cfg.scale, cfg.params)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    state: dict[str, Any] = {"epoch": 0, "elapsed": 0.0, "best_psnr": -math.inf, "history": []}
    if resume:
        state = _load_checkpoint(out, net, opt)
        state.pop("param_groups", None)
        rng.bit_generator.state = state.pop("rng")
        started = f"resumed at epoch {state['epoch']} ({state['elapsed'] / 60:.1f} min trained)"
    elif cfg.init:
        started = f"initialised {_init_from(net, cfg.init)} tensors from {cfg.init}"
    else:
        started = ""
    cache = Path(tempfile.gettempdir()) / "pixelmill-sr-cache"
    t0 = time.perf_counter()
    try:  # a file whose header reads but whose pixels do not decode
        pairs = load_pairs(train_files, cfg.scale, cache_dir=cache)
        val_pairs = load_pairs(val_files, cfg.scale, cache_dir=cache, max_side=cfg.val_side)
    except DecodeError as e:
        raise InvalidParameterError(f"--data: {e}", field="data") from e
    if not val_pairs.lr:  # the headers said otherwise (check_validation): never score NaN
        raise InvalidParameterError(
            f"--data: none of the {len(val_files)} validation images of {root} can be scored "
            f"at x{cfg.scale} (each needs {4 * cfg.scale}×{4 * cfg.scale} pixels or more)",
            field="data")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidParameterError(f"--out: cannot create {out}: {e}", field="out") from e
    log(
        f"data: {len(pairs.lr)} training / {len(val_pairs.lr)} "
        f"{'held-out' if held_out else 'validation (a training image: no held-out split)'} images "
        f"(prepared in {time.perf_counter() - t0:.0f} s), device {device}"
    )
    bicubic = _bicubic_psnr(val_pairs)
    scored = "held-out" if held_out else "validation (training image)"
    log(f"bicubic on the {scored} {_val_what(cfg)}: {bicubic:.3f} dB")
    if started:
        log(started)
    loss_fn = _LOSSES[cfg.loss]()
    name = f"{cfg.arch}_x{cfg.scale}"
    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
        )
        bar.start()
    try:
        while state["epoch"] < cfg.epochs:
            if cfg.minutes and state["elapsed"] >= 60 * cfg.minutes:  # a resumed, finished run
                log(f"time budget of {cfg.minutes} min already reached "
                    f"({state['elapsed'] / 60:.1f} min trained); give a larger --minutes to "
                    "train on")
                break
            start = time.perf_counter() - state["elapsed"]
            task = bar.add_task(f"epoch {state['epoch'] + 1}", total=cfg.iters_per_epoch,
                                info="") if bar else None
            net.train()
            losses = []
            for it in range(cfg.iters_per_epoch):
                frac = state["epoch"] / cfg.epochs + it / (cfg.iters_per_epoch * cfg.epochs)
                if cfg.minutes:
                    frac = max(frac, (time.perf_counter() - start) / (60 * cfg.minutes))
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
                lr_b, hr_b = sample_patches(pairs, rng, cfg.batch, cfg.patch)
                x = torch.from_numpy(lr_b).to(device)
                y = torch.from_numpy(hr_b).to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                if bar and it % 10 == 0:
                    bar.update(task, completed=it + 1, info=f"loss {np.mean(losses[-50:]):.5f}")
            if bar:
                bar.remove_task(task)
            state["epoch"] += 1
            state["elapsed"] = time.perf_counter() - start
            val = _validate(net, val_pairs, device)
            state["history"].append({"epoch": state["epoch"], "loss": float(np.mean(losses)),
                                     "val_psnr": val, "minutes": state["elapsed"] / 60})
            improved = val > state["best_psnr"]
            if improved:
                state["best_psnr"] = val
                save_model(net, _card(cfg, state, pairs, val_pairs, bicubic, held_out), out / name)
            _save_checkpoint(out, net, opt, {**state, "config": asdict(cfg),
                                             "rng": rng.bit_generator.state})
            log(
                f"{name} epoch {state['epoch']}/{cfg.epochs} loss {np.mean(losses):.5f} "
                f"val PSNR {val:.3f} dB{' *' if improved else ''} "
                f"({state['elapsed'] / 60:.1f} min)"
            )
            if cfg.minutes and state["elapsed"] >= 60 * cfg.minutes:
                log(f"time budget of {cfg.minutes} min reached")
                break
    finally:
        if bar:
            bar.stop()
    if not state["best_psnr"] > -math.inf:  # every epoch scored NaN (a diverged network)
        raise PixelmillError(
            f"{name}: no epoch scored a validation PSNR (NaN: the network diverged?), so no "
            f"weights were kept; the checkpoint in {out} holds the last epoch")
    return json.loads((out / f"{name}.json").read_text())


def _card(
    cfg: TrainConfig, state: dict[str, Any], pairs, val_pairs, bicubic: float, held_out: bool
) -> dict:
    from pixelmill.sr.models import ARCHITECTURES

    return {
        "name": cfg.arch,
        "architecture": cfg.arch,
        "params": {**ARCHITECTURES[cfg.arch][1], **cfg.params},
        "scale": cfg.scale,
        "channel": "Y (BT.601); Cb/Cr by MATLAB bicubic",
        "training_data": {
            "folder": Path(cfg.data).name,
            "images": len(pairs.lr),
            "held_out": len(val_pairs.lr) if held_out else 0,
            "split": "CRC-32 of the relative path % 100 < 10 is held out",
            "degradation": "MATLAB bicubic imresize(HR, 1/S) on uint8 RGB",
        },
        "training": {
            "epochs": state["epoch"],
            "iterations": state["epoch"] * cfg.iters_per_epoch,
            "batch": cfg.batch,
            "lr_patch": cfg.patch,
            "loss": cfg.loss,
            "minutes": round(state["elapsed"] / 60, 1),
            "init": Path(cfg.init).name if cfg.init else None,
        },
        "validation": {
            "protocol": f"{'held-out' if held_out else 'training-image (no held-out split)'} "
                        f"{_val_what(cfg)}, Y PSNR, {cfg.scale}px shaved",
            "psnr": round(state["best_psnr"], 3),
            "bicubic_psnr": round(bicubic, 3),
        },
    }
