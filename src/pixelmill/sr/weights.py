"""Shipped and trained model weights: safetensors files with a JSON card each (never pickle).

A model is two files side by side: ``<arch>_x<S>.safetensors`` (the tensors) and
``<arch>_x<S>.json`` (its card: architecture, hyper-parameters, scale, training data,
epochs, held-out PSNR/SSIM and bicubic's on the same split). The package ships its models in
``pixelmill/sr/weights/``; :func:`load_model` also takes a path to a ``.safetensors`` file
whose card sits next to it. Loaded networks are cached per process, so a worker loads a
model once, not once per tile; a worker process (one of an engine's pool) runs torch with
one thread, as the engine already runs one worker per core (``PIXELMILL_TORCH_THREADS``
overrides).
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixelmill.devices import resolve_device
from pixelmill.errors import InvalidParameterError
from pixelmill.sr.models import ARCHITECTURES, build_model, receptive_field
from pixelmill.storage import ordinary_file_mode, write_atomic

__all__ = [
    "WEIGHTS_DIR",
    "LoadedModel",
    "available_models",
    "json_safe",
    "load_model",
    "model_card",
    "read_card",
    "resolve_device",
    "save_model",
]

#: where the package's shipped weights live
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_LOCK = threading.Lock()


class LoadedModel:
    """A network in eval mode with its card, receptive field and scale."""

    def __init__(self, net: torch.nn.Module, card: dict[str, Any]) -> None:
        self.net = net.eval()
        self.card = card
        self.arch = str(card["architecture"])
        self.scale = int(card["scale"])
        self.halo = receptive_field(self.arch, self.scale, card.get("params"))

    def __repr__(self) -> str:
        return f"LoadedModel({self.card.get('name', self.arch)!r}, scale={self.scale})"


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card next to a ``.safetensors`` file."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def model_card(path: str | Path, field: str = "model") -> dict[str, Any]:
    """The card of the model at ``path``, checked: a ``.safetensors`` file without its ``.json``
    card, a training checkpoint or a card without ``architecture``/``scale`` is an
    :class:`InvalidParameterError` naming ``field`` and what is missing."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    what = ("a model is a .safetensors file with its .json card beside it (architecture, "
            "scale, params), as `pixelmill sr train` writes them")
    if not card_path.is_file():
        raise InvalidParameterError(
            f"{field}: {path} has no card {card_path.name} beside it; {what}", field=field)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidParameterError(
            f"{field}: the card {card_path} cannot be read as JSON ({e}); {what}",
            field=field) from e
    if not isinstance(card, dict):
        card = {}
    if "architecture" in card and "scale" in card:
        arch, scale = card["architecture"], card["scale"]
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise InvalidParameterError(
                f"{field}: the card {card_path} names architecture {arch!r}, "
                f"not one of {', '.join(ARCHITECTURES)}", field=field)
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise InvalidParameterError(
                f"{field}: the card {card_path} gives scale {scale!r}; expected an integer "
                ">= 2", field=field)
        _check_card_params(card.get("params"), arch, card_path, field)
        return card
    config = card.get("config")
    if isinstance(config, dict) and "epoch" in card:  # sr train's checkpoint.json
        best = path.with_name(f"{config.get('arch')}_x{config.get('scale')}.safetensors")
        raise InvalidParameterError(
            f"{field}: {path} is a training checkpoint (network and optimizer state), not a "
            f"model; use the best weights the run wrote beside it, {best}, or ship them with "
            f"`pixelmill sr export {best}`", field=field)
    missing = " and ".join(k for k in ("architecture", "scale") if k not in card)
    raise InvalidParameterError(
        f"{field}: the card {card_path} has no {missing}; {what}", field=field)


def _check_card_params(params: Any, arch: str, card_path: Path, field: str) -> None:
    """Refuse a card's ``params`` that are not an object of ``arch``'s hyper-parameters with
    values of their types (``"channels": "big"``), naming ``field`` and the card."""
    from pixelmill.sr.training import check_params

    if params is None:
        return
    if not isinstance(params, dict):
        raise InvalidParameterError(
            f"{field}: the card {card_path} gives params {params!r}; expected an object of "
            f"{arch}'s hyper-parameters ({', '.join(ARCHITECTURES[arch][1])})", field=field)
    try:
        check_params(arch, params)
    except InvalidParameterError as e:  # "--param: channels='big': ..." -> the card's params
        raise InvalidParameterError(
            f"{field}: the card {card_path} gives params "
            f"{str(e).removeprefix('--param: ')}", field=field) from e


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an infinite PSNR) as None, so that it is strict
    JSON (``null``, never ``Infinity`` or ``NaN``), in nested dicts and lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def save_model(
    net: torch.nn.Module, card: dict[str, Any], path: str | Path, *, half: bool = False
) -> Path:
    """Write ``net``'s weights (float16 when ``half``) and its card; returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"architecture": card["architecture"]})
    ordinary_file_mode(tmp)  # safetensors writes 0600; the card beside it is 0644
    tmp.replace(path)
    write_card(path, card, half=half)
    return path


def write_card(path: str | Path, card: dict[str, Any], *, half: bool = False) -> None:
    """Write (atomically) the JSON card beside the weights at ``path``, as strict JSON: a
    non-finite figure (the infinite PSNR of an exact reconstruction) is written ``null``."""
    card = json_safe({**card, "weights_dtype": "float16" if half else "float32"})
    text = json.dumps(card, indent=2, allow_nan=False) + "\n"
    write_atomic(str(Path(path).with_suffix(".json")), text.encode())


def available_models(weights_dir: Path | None = None) -> list[dict[str, Any]]:
    """Cards of every model shipped in ``weights_dir`` (default: the package's), sorted."""
    cards = []
    for p in sorted((weights_dir or WEIGHTS_DIR).glob("*.safetensors")):
        if p.with_suffix(".json").exists():
            card = read_card(p)
            if "architecture" in card and "scale" in card:  # not a training checkpoint
                cards.append({**card, "file": p.name})
    return sorted(cards, key=lambda c: (c.get("name", ""), int(c["scale"])))


def _resolve(name: str, scale: int) -> Path:
    candidate = Path(name)
    if candidate.suffix == ".safetensors":
        if not candidate.exists():
            raise InvalidParameterError(f"model: no weights file {name}", field="model")
        model_card(candidate)  # a checkpoint, or weights without their card, say so here
        return candidate
    path = WEIGHTS_DIR / f"{name}_x{scale}.safetensors"
    if not path.exists():
        shipped = ", ".join(f"{c['name']} x{c['scale']}" for c in available_models()) or "none"
        raise InvalidParameterError(
            f"model: no shipped weights for {name!r} at scale {scale} (shipped: {shipped}; "
            f"architectures: {', '.join(ARCHITECTURES)})",
            field="model",
        )
    return path


def _configure_threads() -> None:
    """One torch thread per worker process (engines run one worker per core), unless
    ``PIXELMILL_TORCH_THREADS`` says otherwise; the main process keeps torch's default."""
    wanted = os.environ.get("PIXELMILL_TORCH_THREADS")
    if wanted:
        torch.set_num_threads(max(1, int(wanted)))
    elif multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)


@functools.lru_cache(maxsize=16)
def _load(path: str, device: str) -> LoadedModel:
    """The network at ``path`` built from its card; weights that cannot be read, or that are
    not the tensors of the network the card describes, are an :class:`InvalidParameterError`
    naming the file and what is wrong (``field="model"``)."""
    _configure_threads()
    card = read_card(path)
    described = f"the {card.get('architecture')} x{card.get('scale')} network its card describes"
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as e:  # truncated, or not safetensors at all
        raise InvalidParameterError(
            f"model: {path} cannot be read as safetensors weights ({_brief(e)})",
            field="model") from e
    try:
        net = build_model(card["architecture"], int(card["scale"]), card.get("params"))
        net.load_state_dict({k: v.float() for k, v in tensors.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # other tensors than the card's
        raise InvalidParameterError(
            f"model: {path} does not hold the tensors of {described} ({_brief(e)})",
            field="model") from e
    return LoadedModel(net.to(device), card)


def _brief(error: BaseException, limit: int = 240) -> str:
    """``error``'s type and message on one line, cut at ``limit`` characters (torch's load
    errors list every missing and unexpected key over many lines)."""
    text = " ".join(str(error).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_model(name: str, scale: int, device: str = "cpu") -> LoadedModel:
    """The network ``name`` (a shipped model or a ``.safetensors`` path) for ``scale``, on
    ``device`` (see :func:`resolve_device`).

    Cached per process and device. Raises :class:`InvalidParameterError` naming the shipped
    models when there is none for ``name`` at ``scale``.
    """
    device = resolve_device(device)
    path = _resolve(name, int(scale))
    with _LOCK:
        model = _load(str(path.resolve()), device)
    if model.scale != int(scale):
        raise InvalidParameterError(
            f"model: {path.name} is a x{model.scale} model, not x{scale}", field="model"
        )
    return model
