"""Running a super-resolution network on whole images and on batches of tiles.

Colour images are converted to BT.601 YCbCr: the network upscales Y, Cb and Cr are upscaled
with MATLAB's bicubic, and the result is converted back. Gray images go through the network
directly. uint8/uint16 images are scaled by their nominal white (255/65535) and rounded back;
float32 images are taken as nominal [0, 1] and returned unclipped, as float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pixelmill.sr.color import rgb_to_ycbcr, ycbcr_to_rgb
from pixelmill.sr.imresize import imresize
from pixelmill.sr.weights import LoadedModel

__all__ = ["upscale_image", "upscale_luma", "upscale_luma_batch"]


def _white(dtype: np.dtype) -> float:
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def upscale_luma_batch(model: LoadedModel, planes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Upscale equally-sized float planes (h×w, [0, 1]) in one forward pass."""
    device = next(model.net.parameters()).device
    x = torch.from_numpy(np.stack([np.asarray(p, np.float32) for p in planes])[:, None])
    with torch.inference_mode():
        y = model.net(x.to(device)).float().cpu().numpy()
    return [y[i, 0] for i in range(y.shape[0])]


def upscale_luma(model: LoadedModel, plane: np.ndarray) -> np.ndarray:
    """Upscale one float plane (h×w, values in [0, 1]) -> float32 (S·h)×(S·w)."""
    return upscale_luma_batch(model, [plane])[0]


def _to_output(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        white = _white(dtype)
        return np.floor(np.clip(values * white, 0, white) + 0.5).astype(dtype)
    return values.astype(dtype)


def upscale_image(
    image: np.ndarray, model: LoadedModel | None, scale: int
) -> np.ndarray:
    """Upscale an H×W, H×W×1, H×W×3 or H×W×4 image by ``scale``; ``model=None`` is bicubic.

    Alpha (a 4th channel) is upscaled with MATLAB's bicubic. Output has the input's dtype.
    """
    white = _white(image.dtype)
    if model is None:
        return imresize(image, scale)
    x = image.astype(np.float64) / white
    squeeze = image.ndim == 3 and image.shape[2] == 1
    if image.ndim == 2 or squeeze:
        plane = x if image.ndim == 2 else x[..., 0]
        out = upscale_luma(model, plane)
        return _to_output(out[..., None] if squeeze else out, image.dtype)
    ycc = rgb_to_ycbcr(x[..., :3])
    up = imresize(ycc, scale)  # float64: Cb/Cr (and a Y we replace) by MATLAB's bicubic
    up[..., 0] = upscale_luma(model, ycc[..., 0])
    rgb = ycbcr_to_rgb(up)
    if image.shape[2] > 3:
        extra = imresize(x[..., 3:], scale)
        rgb = np.concatenate([rgb, extra], axis=2)
    return _to_output(rgb, image.dtype)
