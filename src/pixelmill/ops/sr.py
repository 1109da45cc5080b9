"""Super-resolution ops (the ``super_resolve`` op is declared here; models live in pixelmill.sr)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from pixelmill.ops._common import check_image
from pixelmill.ops._registry import op
from pixelmill.sr.receptive import receptive_field

__all__ = ["check_local_devices", "super_resolve"]


def _halo(params: Mapping[str, Any]) -> int:
    if params["model"] == "bicubic":
        return 2  # MATLAB's bicubic reads 2 input pixels on each side when enlarging
    # the shipped model's own hyper-parameters (a scale may have more blocks than the default)
    return max(receptive_field(params["model"], int(params["scale"]),
                               _card_params(params["model"], int(params["scale"]))), 2)


def _weights_dir():
    """The shipped weights' folder, found without importing torch (``pixelmill.sr.weights``
    imports it): validating a pipeline must not load torch into a tiled job's driver, which
    never runs the network (~0.2 GiB of its resident memory)."""
    import sys
    from pathlib import Path

    loaded = sys.modules.get("pixelmill.sr.weights")
    if loaded is not None:  # its WEIGHTS_DIR, as a caller may have set it
        return Path(loaded.WEIGHTS_DIR)
    import pixelmill.sr

    return Path(pixelmill.sr.__file__).resolve().parent / "weights"


def _card_params(model: str, scale: int) -> dict[str, Any]:
    import json

    try:
        card = json.loads((_weights_dir() / f"{model}_x{scale}.json").read_text())
    except (OSError, ValueError):
        return {}  # no shipped card: the op's check says so
    return dict(card.get("params") or {})


def _check(params: Mapping[str, Any]) -> str | None:
    # the syntax only: whether the GPU exists is for the process that runs the op to say
    # (see check_local_devices for a job that runs on this machine)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(params["device"])):
        return f"device: {params['device']!r} is not a device (use auto, cpu, cuda or cuda:N)"
    if params["model"] == "bicubic":
        return None
    if not (_weights_dir() / f"{params['model']}_x{params['scale']}.safetensors").exists():
        from pixelmill.sr.weights import available_models  # imports torch: the error path only

        shipped = ", ".join(f"{c['name']} x{c['scale']}" for c in available_models()) or "none"
        return (f"no shipped weights for model {params['model']!r} at scale {params['scale']} "
                f"(shipped: {shipped})")
    return None


def check_local_devices(pipeline: Any) -> None:
    """For a job that runs on this machine (the local engine): refuse, before any work, a
    ``super_resolve`` step whose ``device`` torch cannot use here, naming the step
    (``steps[0].device: 'cuda' requested, but this torch … sees no CUDA device``). A job on a
    Dask or Spark cluster leaves the check to its workers, whose devices may differ."""
    from pixelmill.pipeline import load_pipeline

    for i, step in enumerate(load_pipeline(pipeline).steps):
        if step.op != "super_resolve":
            continue
        device = dict(step.params).get("device", "auto")
        if device in (None, "", "auto", "cpu"):
            continue  # always usable: no torch import for a CPU job
        from pixelmill.devices import resolve_device

        resolve_device(device, field=f"steps[{i}].device")


#: resident memory a worker adds once torch and a model are loaded (measured: ~0.4 GiB more
#: than a worker with NumPy and OpenCV only); the feature extractors' figure
TORCH_WORKER_BYTES = 450 * 2**20

#: what ``super_resolve`` declares per worker on top of the tiler's idle worker: torch and a
#: shipped model measured 210–218 MiB (espcn, fsrcnn, edsr ×2 on CPU, after the first tile,
#: ``tests/sr/test_job_memory.py``), plus room for what the C heap holds between tiles
SR_WORKER_BYTES = 400 * 2**20

#: working memory per input pixel of a tile while a network runs on it (feature maps, the
#: float64 colour planes, the upscaled output): measured peaks 857–966 B for espcn on 520- and
#: 1048-pixel tiles, up to 1188 (fsrcnn) and 1242–1360 (edsr, whose peak varies with how the
#: heap is laid out; SR_WORKER_BYTES' headroom covers the rest) on 264–520-pixel tiles. A job's
#: workers keep no more than this per tile pixel resident beyond their floor
#: (``pixelmill.tiled._worker._settle``), so the plan holds for the whole job
SR_PIXEL_BYTES = 1280


@op(family="sr", halo=_halo, scale=lambda p: float(p["scale"]), check=_check,
    worker_bytes=SR_WORKER_BYTES, pixel_bytes=SR_PIXEL_BYTES)
def super_resolve(
    image: np.ndarray,
    *,
    model: Literal["edsr", "fsrcnn", "espcn", "bicubic"] = "edsr",
    scale: Literal[2, 3, 4] = 2,
    device: str = "auto",
    ensemble: bool = False,
) -> np.ndarray:
    """Upscale by ``scale`` with a shipped super-resolution network (on the BT.601 Y channel).

    Cb and Cr are upscaled with MATLAB's bicubic; gray images go through the network as they
    are; an alpha channel is upscaled bicubically. The network is loaded once per process.
    Its receptive field is the op's halo, so tiled output equals whole-image output.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C (C = 1 gray, 2 gray + alpha, 3 RGB or 4 RGBA), uint8, uint16 or float32 (float taken as nominal [0, 1]).
    model : str
        Shipped network: ``edsr`` (best), ``fsrcnn``, ``espcn``; ``bicubic`` for MATLAB's bicubic.
    scale : int
        Upscaling factor: 2, 3 or 4.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    ensemble : bool
        Geometric self-ensemble: average the network over the 8 flips/rotations of the
        input (8× the compute, ~0.1 dB; no effect on ``bicubic``).

    Returns
    -------
    ndarray
        (S·H)×(S·W)[×C], same dtype as ``image``.
    """
    check_image(image, "super_resolve")
    from pixelmill.sr.infer import upscale_image

    if model == "bicubic":
        return upscale_image(image, None, scale)
    from pixelmill.sr.weights import load_model

    return upscale_image(image, load_model(model, scale, device), scale,
                         ensemble=ensemble)
