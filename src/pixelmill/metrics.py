"""Image quality metrics with the super-resolution literature's conventions.

Every metric takes an explicit ``data_range`` (the value span of a white-minus-black image:
255 for uint8, 65535 for uint16, usually 1.0 for floats) — nothing is guessed from pixel
values. ``crop_border`` shaves that many pixels from every side before measuring (the SR
protocol shaves the scale factor), and ``y_channel=True`` measures RGB images on the
ITU-R BT.601 luma of MATLAB's ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)``
for R, G, B in [0, 1], expressed here in units of ``data_range``.

SSIM is Wang et al.'s (2004): an 11×11 gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03,
population (not sample) covariances, averaged over the pixels whose window fits inside the
image — scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pixelmill.errors import InvalidParameterError

__all__ = ["psnr", "rgb_to_y", "ssim"]

#: BT.601 (MATLAB rgb2ycbcr) luma weights for R, G, B in [0, 1], giving Y in [16, 235] / 255.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(image: np.ndarray, data_range: float) -> np.ndarray:
    """BT.601 luma of an RGB image, float64, in the same units as the input (no rounding).

    ``Y = (16 + 65.481 r + 128.553 g + 24.966 b) / 255 · data_range`` with ``r = R / data_range``.
    """
    rgb = np.asarray(image, np.float64)[..., :3]
    return rgb @ _Y_WEIGHTS + 16.0 / 255.0 * data_range


def _prepare(
    a: np.ndarray, b: np.ndarray, data_range: float, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise InvalidParameterError(f"images differ in shape: {a.shape} vs {b.shape}")
    if not data_range or data_range <= 0:
        raise InvalidParameterError(
            f"data_range: expected a number > 0, got {data_range!r}", field="data_range"
        )
    if crop_border < 0:
        raise InvalidParameterError("crop_border: expected an integer >= 0", field="crop_border")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if y_channel and a.ndim == 3 and a.shape[2] >= 3:
        a = rgb_to_y(a, data_range)
        b = rgb_to_y(b, data_range)
    elif a.ndim == 3 and a.shape[2] == 1:
        a, b = a[..., 0], b[..., 0]
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
        if a.size == 0:
            raise InvalidParameterError("crop_border removes the whole image", field="crop_border")
    return a, b


def psnr(
    reference: np.ndarray,
    test: np.ndarray,
    *,
    data_range: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / MSE)`` (inf when equal).

    Examples
    --------
    >>> import numpy as np
    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1), data_range=1.0), 6)
    20.0
    """
    a, b = _prepare(reference, test, data_range, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _ssim_plane(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    radius = 5  # int(3.5 * 1.5 + 0.5): an 11×11 window

    def blur(x: np.ndarray) -> np.ndarray:
        out = ndimage.gaussian_filter(x, sigma=1.5, truncate=3.5, mode="reflect")
        return out[radius:-radius, radius:-radius]

    if min(a.shape) < 2 * radius + 1:
        raise InvalidParameterError(
            f"ssim needs images of at least 11×11 pixels after cropping, got {a.shape}"
        )
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(
    reference: np.ndarray,
    test: np.ndarray,
    *,
    data_range: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Structural similarity (Wang et al. 2004), the mean over channels for colour images.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(256, dtype=float).reshape(16, 16)
    >>> ssim(x, x, data_range=255.0)
    1.0
    """
    a, b = _prepare(reference, test, data_range, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b, data_range)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
