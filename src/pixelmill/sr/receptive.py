"""Receptive fields of the SR architectures, in input pixels (torch-free, for the op registry)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_PARAMS", "receptive_field"]

#: architecture -> default hyper-parameters (the shipped models use these)
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "espcn": {"channels": 64},
    "fsrcnn": {"d": 56, "s": 12, "m": 4},
    "edsr": {"channels": 32, "blocks": 4, "res_scale": 1.0},
}


def receptive_field(arch: str, scale: int, params: Mapping[str, Any] | None = None) -> int:
    """Input pixels of context an output pixel depends on, on each side (an upper bound).

    Colour images also need 2 pixels for the bicubic Cb/Cr; every architecture here needs more.
    """
    p = {**DEFAULT_PARAMS[arch], **dict(params or {})}
    if arch == "espcn":
        return 2 + 1 + 1  # 5×5, 3×3, 3×3
    if arch == "fsrcnn":
        # 5×5 conv, m 3×3 convs, then the 9×9 deconvolution at stride S: an output pixel
        # reads inputs within ceil(4 / S) + 1 positions of its own.
        return 2 + int(p["m"]) + math.ceil(4 / scale) + 1
    if arch == "edsr":
        # head, 2 per residual block, body tail, tail (the bicubic skip needs only 2)
        return 1 + 2 * int(p["blocks"]) + 1 + 1
    raise KeyError(arch)
