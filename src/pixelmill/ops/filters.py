"""Filtering and noise ops: gaussian, box, median, bilateral, unsharp mask, NL-means, Laplacian."""

from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np

from pixelmill.ops._common import CV2_BORDER, BorderMode, check_image
from pixelmill.ops._registry import Range, op


def gaussian_radius(sigma: float, truncate: float) -> int:
    """Kernel radius used for a gaussian of ``sigma`` truncated at ``truncate`` sigmas (SciPy's)."""
    return int(truncate * float(sigma) + 0.5)


@op(family="filter", halo=lambda p: gaussian_radius(p["sigma"], p["truncate"]))
def gaussian(
    image: np.ndarray,
    *,
    sigma: Annotated[float, Range(ge=0.0, le=200.0)] = 1.0,
    truncate: Annotated[float, Range(gt=0.0, le=10.0)] = 4.0,
    mode: BorderMode = "reflect",
) -> np.ndarray:
    """Gaussian blur with a separable kernel of radius ``int(truncate * sigma + 0.5)``.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    sigma : float
        Standard deviation of the kernel, in pixels (0 returns the image unchanged).
    truncate : float
        Kernel radius in standard deviations, as in ``scipy.ndimage.gaussian_filter``.
    mode : str
        How the image is extended beyond its border.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian(np.zeros((8, 8), np.uint8), sigma=1.0).shape
    (8, 8)
    """
    check_image(image, "gaussian")
    if sigma == 0:
        return image.copy()
    radius = gaussian_radius(sigma, truncate)
    ksize = 2 * radius + 1
    return cv2.GaussianBlur(
        image, (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=CV2_BORDER[mode]
    ).reshape(image.shape)
