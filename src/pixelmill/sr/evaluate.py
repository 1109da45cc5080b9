"""The super-resolution evaluation protocol of the literature, exactly.

For every image: crop to a multiple of S (*modcrop*), degrade with MATLAB's bicubic
``imresize(HR, 1/S)`` on the uint8 image, upscale with the model (or MATLAB's bicubic for
``bicubic``), round to uint8, then PSNR and SSIM on the BT.601 Y channel
(``16 + (65.481 R + 128.553 G + 24.966 B) / 255``) with S pixels shaved from every side.
Gray images stay single-channel and are measured on their only channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixelmill.errors import InvalidParameterError, NoInputError
from pixelmill.metrics import psnr, ssim
from pixelmill.sr.data import degrade, modcrop, read_rgb
from pixelmill.sr.infer import upscale_image
from pixelmill.sr.weights import load_model

__all__ = ["SSIM_WINDOW", "check_crop", "evaluate_arrays", "evaluate_files", "min_side"]

#: side of SSIM's window (11×11, σ = 1.5): what must be left once the protocol has shaved
SSIM_WINDOW = 11


def min_side(scale: int) -> int:
    """The least side an image needs to be scored at ``scale``: after *modcrop* (a multiple of
    S) and S pixels shaved from every side, SSIM's 11×11 window must still fit."""
    return -(-(SSIM_WINDOW + 2 * scale) // scale) * scale


def check_crop(crop: int | None, scale: int) -> None:
    """Refuse a ``--crop`` side that no image could be scored on at ``scale`` (see
    :func:`min_side`), naming the flag rather than each image it was cut from."""
    if crop and crop < min_side(scale):
        raise InvalidParameterError(
            f"--crop: {crop} px is too small to score at x{scale}: with {scale} px shaved from "
            f"every side SSIM's {SSIM_WINDOW}×{SSIM_WINDOW} window does not fit; use --crop "
            f"{min_side(scale)} or more", field="crop")


def evaluate_arrays(
    hr: np.ndarray, scale: int, upscale: Callable[[np.ndarray], np.ndarray]
) -> dict[str, float]:
    """PSNR/SSIM of ``upscale(degrade(modcrop(hr)))`` against ``modcrop(hr)`` (uint8 in).

    An image smaller than :func:`min_side` on a side is an :class:`InvalidParameterError`
    saying so (nothing would be left to score)."""
    h, w = hr.shape[:2]
    if min(h, w) < min_side(scale):
        mh, mw = h - h % scale, w - w % scale
        left = f"{max(mw - 2 * scale, 0)}×{max(mh - 2 * scale, 0)}"
        raise InvalidParameterError(
            f"{w}×{h} is too small to score at x{scale}: cropped to a multiple of {scale} "
            f"({mw}×{mh}) with {scale} px shaved from every side, {left} px are left, and "
            f"SSIM needs {SSIM_WINDOW}×{SSIM_WINDOW}; each side needs at least "
            f"{min_side(scale)} px", field="DATA")
    hr = modcrop(hr, scale)
    lr = degrade(hr, scale)
    sr = upscale(lr)
    kw: dict[str, Any] = {"data_range": 255.0, "crop_border": scale, "y_channel": hr.ndim == 3}
    return {"psnr": psnr(hr, sr, **kw), "ssim": ssim(hr, sr, **kw)}


def evaluate_files(
    files: Sequence[Path],
    scale: int,
    model: str = "bicubic",
    *,
    device: str = "cpu",
    on_image: Callable[[dict[str, Any]], None] | None = None,
    crop: int | None = None,
    ensemble: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` (a shipped name, a ``.safetensors`` path or ``bicubic``) on files.

    ``crop`` first takes a central ``crop``×``crop`` region of each image (a quicker,
    reproducible subset for large images); the protocol then applies unchanged.
    ``ensemble`` runs the network as a geometric self-ensemble (see :mod:`pixelmill.sr.infer`).

    Returns ``{"scale", "model", "images": [{"image", "psnr", "ssim"}...], "mean": {...}}``.
    """
    if not files:  # a mean of nothing is not a score (and NaN is not JSON)
        raise NoInputError("sr eval: no images to evaluate (an empty --split?)")
    check_crop(crop, scale)
    net = None if model == "bicubic" else load_model(model, scale, device)
    rows = []
    for f in files:
        hr = read_rgb(f)
        if crop:
            top, left = max(0, (hr.shape[0] - crop) // 2), max(0, (hr.shape[1] - crop) // 2)
            hr = hr[top : top + crop, left : left + crop]
        try:
            scores = evaluate_arrays(hr, scale, lambda lr: upscale_image(lr, net, scale,
                                                                       ensemble=ensemble))
        except InvalidParameterError as e:  # e.g. too small to score: name the file
            raise InvalidParameterError(f"{f}: {e}", field=e.field) from e
        row = {"image": Path(f).name, **scores}
        rows.append(row)
        if on_image is not None:
            on_image(row)
    mean = {
        "psnr": float(np.mean([r["psnr"] for r in rows])) if rows else float("nan"),
        "ssim": float(np.mean([r["ssim"] for r in rows])) if rows else float("nan"),
    }
    return {"scale": scale, "model": model, "ensemble": ensemble, "crop": crop, "images": rows,
            "mean": mean}
