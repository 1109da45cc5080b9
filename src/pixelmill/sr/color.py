"""BT.601 YCbCr as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` define it (studio range).

For R, G, B in [0, 1]: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (in [16, 235]),
``Cb = 128 − 37.797 R − 74.203 G + 112 B``, ``Cr = 128 + 112 R − 93.786 G − 18.214 B``
(in [16, 240]). Here all three planes are returned divided by 255, so an RGB image in [0, 1]
maps to YCbCr in [16/255, 240/255]; no rounding is applied.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb"]

_M = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
) / 255.0
_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0
_M_INV = np.linalg.inv(_M)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 RGB in [0, 1] (float) -> H×W×3 YCbCr in [0, 1] units, float64."""
    return np.asarray(rgb, np.float64)[..., :3] @ _M.T + _OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (float64, not clipped)."""
    return (np.asarray(ycbcr, np.float64) - _OFFSET) @ _M_INV.T
