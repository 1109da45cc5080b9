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
        x = self.conv1(_channels_last(x)).tanh_()
        x = self.conv2(x).tanh_()
        return F.pixel_shuffle(self.conv3(x).contiguous(), self.scale)


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
        # the deconvolution run as the convolution it equals on the low-resolution grid (one
        # output channel per sub-pixel phase) and a pixel shuffle: the same sums, 2-3x faster
        # on a CPU than ConvTranspose2d; its weights stay the deconvolution's (what is stored)
        weight, bias, pad = self._subpixel()
        feat = self.body(_channels_last(x))
        return F.pixel_shuffle(F.conv2d(feat, weight, bias, padding=pad).contiguous(), self.scale)

    def _subpixel(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The deconvolution's weights as a (S², d, K, K) convolution (and its bias, padding).

        Output pixel ``S·i + r`` of ``ConvTranspose2d(stride=S, padding=p)`` sums tap
        ``t = r + p - S·o`` of the kernel times input pixel ``i + o``: phase ``r`` is a plain
        convolution over the offsets ``o`` whose tap lies in the kernel (a gather, so gradients
        reach the deconvolution's weights as before)."""
        w = self.deconv.weight  # (d, 1, k, k)
        d, k = w.shape[0], w.shape[-1]
        key = (k, self.scale, self.deconv.padding[0], w.device)
        if getattr(self, "_subpixel_key", None) != key:
            # a normal tensor even when first built under torch.inference_mode() (a
            # validation pass): an inference tensor cannot be saved for a later backward
            with torch.inference_mode(False):
                index, pad = _subpixel_index(k, self.scale, self.deconv.padding[0])
                self._subpixel_taps = index.to(w.device)
            self._subpixel_pad = pad
            self._subpixel_key = key
        taps = torch.cat([w.reshape(d, k * k), w.new_zeros(d, 1)], dim=1)[:, self._subpixel_taps]
        weight = taps.transpose(0, 1).contiguous(memory_format=torch.channels_last)
        bias = self.deconv.bias.expand(self.scale * self.scale)
        return weight, bias, self._subpixel_pad


def _subpixel_index(k: int, s: int, p: int) -> tuple[torch.Tensor, int]:
    """(S², K, K) indices into a k×k kernel flattened (``k·k``: a zero tap) and the padding
    K = 2·pad + 1 of the convolution that equals ``ConvTranspose2d(k, stride=s, padding=p)``."""
    offsets = [(r + p - t) // s for r in range(s) for t in range(k) if (r + p - t) % s == 0]
    pad = max(abs(o) for o in offsets)
    size = 2 * pad + 1
    index = torch.full((s * s, size, size), k * k, dtype=torch.long)
    for ry in range(s):
        for rx in range(s):
            for oy in range(-pad, pad + 1):
                ty = ry + p - s * oy
                for ox in range(-pad, pad + 1):
                    tx = rx + p - s * ox
                    if 0 <= ty < k and 0 <= tx < k:
                        index[ry * s + rx, oy + pad, ox + pad] = ty * k + tx
    return index, pad


class _ResBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the block's own temporaries (autograd needs none of them): a pass and an
        # allocation fewer per operation
        r = self.conv2(F.relu(self.conv1(x), inplace=True))
        if self.res_scale != 1.0:
            r = r.mul_(self.res_scale)
        return r.add_(x)


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
        feat = self.head(_channels_last(x))
        feat = self.body_tail(self.body(feat)).add_(feat)
        return F.pixel_shuffle(self.tail(feat).contiguous(), self.scale).add_(base)


#: architecture name -> (class, default hyper-parameters)
ARCHITECTURES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {  # defaults: receptive.py
    "espcn": (ESPCN, {"channels": 64}),
    "fsrcnn": (FSRCNN, {"d": 56, "s": 12, "m": 4}),
    "edsr": (EDSR, {"channels": 32, "blocks": 4, "res_scale": 1.0}),
}


def build_model(arch: str, scale: int, params: Mapping[str, Any] | None = None) -> nn.Module:
    """A fresh network of architecture ``arch`` for integer ``scale`` (2, 3 or 4).

    Its convolution weights are in channels-last order, as the networks feed their feature
    maps: oneDNN's convolutions run 1.6-2.5x faster so on large images (stored weights are
    made contiguous when saved; loading copies values whatever the order)."""
    cls, defaults = ARCHITECTURES[arch]
    return cls(scale, **{**defaults, **dict(params or {})}).to(memory_format=torch.channels_last)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)
