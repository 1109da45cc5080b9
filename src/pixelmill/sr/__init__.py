"""Super-resolution: MATLAB-exact bicubic, learned Y-channel networks, evaluation, fusion.

Public names are loaded lazily so that ``import pixelmill.sr`` does not import torch.
"""

from __future__ import annotations

from pixelmill._lazy import lazy_exports

_API = {
    "imresize": "pixelmill.sr.resample",
    "resize_opencv_cubic": "pixelmill.sr.resample",
    "load_model": "pixelmill.sr.weights",
    "available_models": "pixelmill.sr.weights",
    "upscale_image": "pixelmill.sr.infer",
    "evaluate_files": "pixelmill.sr.evaluate",
    "fuse_frames": "pixelmill.sr.fusion",
    "register_frames": "pixelmill.sr.fusion",
    "upscale_tiled": "pixelmill.sr.tiles",
    "demo": "pixelmill.sr.showcase",
    "TrainConfig": "pixelmill.sr.training",
    "train": "pixelmill.sr.training",
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
