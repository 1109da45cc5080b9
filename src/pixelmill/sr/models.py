"""Super-resolution networks on the luma (Y) channel: ESPCN, FSRCNN and a small EDSR.

Every network maps an N×1×h×w low-resolution Y batch (values in [0, 1]) to N×1×(S·h)×(S·w).
Each architecture states its *receptive field* in input pixels (:func:`receptive_field`): an
output pixel depends on input pixels at most that far away on each side, so a tile processed
with that many pixels of halo and cropped at multiples of S equals whole-image inference.

* ``espcn`` — Shi et al. 2016: 5×5/64 → 3×3/32 (tanh) → 3×3/S² and a pixel shuffle.
* ``fsrcnn`` — Dong et al. 2016: FSRCNN(d=56, s=12, m=4) with PReLUs and a 9×9 deconvolution.
* ``edsr`` — a small EDSR-style residual network (Lim et al. 2017): 3×3 head, residual
  blocks without batch norm, a pixel-shuffle tail, plus a bicubic global skip so that the
  network learns only the missing detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pixelmill.sr.receptive import receptive_field

__all__ = ["ARCHITECTURES", "EDSR", "ESPCN", "FSRCNN", "build_model", "receptive_field"]


class ESPCN(nn.Module):
    """Efficient sub-pixel convolutional network (Shi et al., CVPR 2016)."""

    def __init__(self, scale: int, channels: int = 64) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Conv2d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv2d(channels, channels // 2, 3, padding=1)
        self.conv3 = nn.Conv2d(channels // 2, scale * scale, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return F.pixel_shuffle(self.conv3(x), self.scale)


class FSRCNN(nn.Module):
    """Fast SR CNN (Dong, Loy, Tang, ECCV 2016), FSRCNN(d, s, m)."""

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(
            d, 1, 9, stride=scale, padding=4, output_padding=scale - 1
        )
        nn.init.normal_(self.deconv.weight, std=0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))


class _ResBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class EDSR(nn.Module):
    """A small EDSR-style network with a bicubic global skip connection."""

    def __init__(self, scale: int, channels: int = 32, blocks: int = 4, res_scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels, res_scale) for _ in range(blocks)])
        self.body_tail = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, scale * scale, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        return base + F.pixel_shuffle(self.tail(feat), self.scale)


#: architecture name -> (class, default hyper-parameters)
ARCHITECTURES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {  # defaults: receptive.py
    "espcn": (ESPCN, {"channels": 64}),
    "fsrcnn": (FSRCNN, {"d": 56, "s": 12, "m": 4}),
    "edsr": (EDSR, {"channels": 32, "blocks": 4, "res_scale": 1.0}),
}


def build_model(arch: str, scale: int, params: Mapping[str, Any] | None = None) -> nn.Module:
    """A fresh network of architecture ``arch`` for integer ``scale`` (2, 3 or 4)."""
    cls, defaults = ARCHITECTURES[arch]
    return cls(scale, **{**defaults, **dict(params or {})})
