"""Super-resolution: MATLAB-exact bicubic, learned Y-channel networks, evaluation, fusion.

Public names are loaded lazily so that ``import pixelmill.sr`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "imresize": "pixelmill.sr.imresize",
    "resize_opencv_cubic": "pixelmill.sr.imresize",
    "load_model": "pixelmill.sr.weights",
    "available_models": "pixelmill.sr.weights",
    "upscale_image": "pixelmill.sr.infer",
    "evaluate_files": "pixelmill.sr.evaluate",
    "fuse_frames": "pixelmill.sr.fusion",
    "register_frames": "pixelmill.sr.fusion",
    "upscale_tiled": "pixelmill.sr.tiles",
    "demo": "pixelmill.sr.demo",
    "TrainConfig": "pixelmill.sr.train",
    "train": "pixelmill.sr.train",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'pixelmill.sr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
