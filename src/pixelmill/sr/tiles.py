"""Tiled upscaling of an in-memory image with batched network passes.

The tile geometry is the tiling layer's (:func:`pixelmill.tiling.grid`): each core is read
with the network's receptive field as halo (clamped at the image border), upscaled, and its
core is cut out at S times its input position. Tiles of equal halo shape — all interior tiles
of a grid — go through the network together, ``batch`` at a time, which keeps a CPU or GPU
busy without holding the whole image's activations. The result equals whole-image inference
up to float rounding (tested).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from pixelmill.sr.infer import upscale_batch
from pixelmill.sr.receptive import receptive_field
from pixelmill.sr.weights import LoadedModel, load_model
from pixelmill.tiling import crop_box, grid, scale_box, scaled_shape

__all__ = ["upscale_tiled"]


def upscale_tiled(
    image: np.ndarray,
    model: str | LoadedModel | None,
    scale: int,
    *,
    tile: int = 512,
    batch: int = 4,
    device: str = "cpu",
    ensemble: bool = False,
) -> np.ndarray:
    """Upscale ``image`` by ``scale`` tile by tile (``model=None`` or ``"bicubic"``: bicubic).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    model : str or LoadedModel or None
        A shipped model name, a ``.safetensors`` path, a loaded model, or None for bicubic.
    scale : int
        2, 3 or 4.
    tile : int
        Core size in input pixels.
    batch : int
        Tiles of one shape per network pass.
    device : str
        Where the network runs (``cpu``, ``cuda``).
    ensemble : bool
        Geometric self-ensemble (8 passes per tile; see :mod:`pixelmill.sr.infer`).

    Returns
    -------
    ndarray
        (S·H)×(S·W)[×C], same dtype.
    """
    if model == "bicubic":
        model = None
    net = load_model(model, scale, device) if isinstance(model, str) else model
    halo = 2 if net is None else max(2, receptive_field(net.arch, scale, net.card.get("params")))
    h, w = image.shape[:2]
    windows = grid(h, w, tile, halo, scale)
    out = np.empty((*scaled_shape(h, w, scale), *image.shape[2:]), image.dtype)
    by_shape = defaultdict(list)
    for win in windows:
        by_shape[win.halo_shape].append(win)
    for group in by_shape.values():
        for start in range(0, len(group), batch):
            chunk = group[start : start + batch]
            tiles = [np.ascontiguousarray(image[win.slices("halo")]) for win in chunk]
            for win, up in zip(chunk, upscale_batch(tiles, net, scale, ensemble=ensemble), strict=True):
                y0, y1, x0, x1 = crop_box(win, scale, (h, w))
                oy0, oy1, ox0, ox1 = scale_box(win.core, scale, (h, w))
                out[oy0:oy1, ox0:ox1] = up[y0:y1, x0:x1]
    return out
