"""The pixel computations behind the feature ops (:mod:`pixelmill.ops.features`).

Plain functions on arrays, one per descriptor, each describing one region; the ops add
parameter validation, region pooling and the registry declaration. Values are read relative
to the dtype's white (uint8 / 255, uint16 / 65535, float32 as is).
"""

from __future__ import annotations

import cv2
import numpy as np

from pixelmill.errors import UnsuitableImageError, UsageError
from pixelmill.ops._common import dtype_max

__all__ = [
    "SPACE_RANGES",
    "NonFiniteImageError",
    "check_finite",
    "color_histogram_of",
    "color_moments_of",
    "glcm_of",
    "gradient_stats_of",
    "hog_of",
    "lbp_bins",
    "lbp_histogram_of",
    "quantize",
    "to_color_space",
    "to_float",
    "to_gray",
    "to_rgb",
]


#: value range of each channel of each colour space (as produced by :func:`to_color_space`)
SPACE_RANGES = {
    "rgb": ((0.0, 1.0),) * 3,
    "hsv": ((0.0, 1.0),) * 3,
    "lab": ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0)),
}


class NonFiniteImageError(UnsuitableImageError, UsageError):
    """A float image with NaN or infinite pixels: a job records its row as ``invalid``; a
    usage error (exit 2) for one image on the command line (``index query``)."""


def check_finite(image: np.ndarray) -> None:
    """Refuse a float image holding NaN or infinite pixels (a TIFF's no-data, say).

    Every descriptor would turn them into NaN features, or — the histograms, LBP and GLCM
    cast to integer bins — into finite garbage that nothing downstream could tell from a real
    vector; one such image would also turn a CNN's training mean, and so its loss, into NaN.

    Raises
    ------
    NonFiniteImageError
        A property of the image: its job row is ``invalid`` with this reason.
    """
    if np.dtype(image.dtype).kind == "f" and not np.isfinite(image).all():
        bad = int(np.count_nonzero(~np.isfinite(image)))
        raise NonFiniteImageError(
            f"{bad} of {image.size} pixel values are NaN or infinite (no-data pixels?); "
            "features need finite values: fill or crop them first")


def to_float(image: np.ndarray) -> np.ndarray:
    """Pixel values as float32 relative to the dtype's nominal white (1.0).

    Raises
    ------
    NonFiniteImageError
        A float image with NaN or infinite pixels (see :func:`check_finite`).
    """
    check_finite(image)
    scale = dtype_max(image.dtype)
    out = image.astype(np.float32, copy=image.dtype != np.float32)
    return out / np.float32(scale) if scale != 1.0 else out


def to_rgb(image: np.ndarray) -> np.ndarray:
    """H×W×3 float32 in [0, 1]: gray is repeated, alpha dropped."""
    img = to_float(image)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] in (1, 2):  # gray or gray + alpha
        return np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def to_gray(image: np.ndarray) -> np.ndarray:
    """H×W float32 luminance in [0, 1] (ITU-R BT.601 weights, as OpenCV and Pillow)."""
    img = to_float(image)
    if img.ndim == 2:
        return img
    if img.shape[2] in (1, 2):
        return np.ascontiguousarray(img[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2GRAY)


def to_color_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """Convert float RGB in [0, 1]: hsv -> all channels in [0, 1]; lab -> CIE L*a*b* (D65)."""
    if space == "rgb":
        return rgb
    if space == "hsv":
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] /= 360.0
        return hsv
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def quantize(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    idx = np.floor((values - lo) * (bins / (hi - lo))).astype(np.int64)
    return np.clip(idx, 0, bins - 1)


def color_histogram_of(rgb: np.ndarray, bins: int, space: str, joint: bool) -> np.ndarray:
    img = to_color_space(rgb, space).reshape(-1, 3)
    ranges = SPACE_RANGES[space]
    idx = [quantize(img[:, c], *ranges[c], bins) for c in range(3)]
    n = max(img.shape[0], 1)
    if joint:
        flat = (idx[0] * bins + idx[1]) * bins + idx[2]
        return np.bincount(flat, minlength=bins**3) / n
    return np.concatenate([np.bincount(i, minlength=bins) / n for i in idx])


def color_moments_of(rgb: np.ndarray, space: str) -> np.ndarray:
    img = to_color_space(rgb, space)
    out = np.empty((3, 3), np.float64)
    for c in range(3):  # float32 with NumPy's pairwise sums: accurate and ~3x faster than float64
        x = img[:, :, c]
        mean = x.mean(dtype=np.float64)
        centred = x - np.float32(mean)
        sq = centred * centred
        var = float(sq.mean(dtype=np.float64))
        third = float((sq * centred).mean(dtype=np.float64))
        out[c] = (mean, np.sqrt(var), third / var**1.5 if var > 1e-12 else 0.0)
    return out.ravel()


def hog_of(gray: np.ndarray, size, orientations, pixels_per_cell, cells_per_block, block_norm,
         transform_sqrt) -> np.ndarray:
    from skimage.feature import hog as sk_hog

    block = (pixels_per_cell[0] * cells_per_block[0], pixels_per_cell[1] * cells_per_block[1])
    if size is None and (gray.shape[0] < block[0] or gray.shape[1] < block[1]):
        raise UnsuitableImageError(
            f"hog: the image ({gray.shape[0]} rows × {gray.shape[1]} columns) is smaller than "
            f"one block ({block[0]} × {block[1]}); give size: [h, w] to resize it first")
    if size is not None and tuple(gray.shape) != tuple(size):
        shrink = size[0] < gray.shape[0] and size[1] < gray.shape[1]
        gray = cv2.resize(gray, (size[1], size[0]),
                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return sk_hog(gray, orientations=orientations, pixels_per_cell=pixels_per_cell,
                  cells_per_block=cells_per_block, block_norm=block_norm,
                  transform_sqrt=transform_sqrt, feature_vector=True)


def lbp_bins(P: int, method: str) -> int:
    """Number of distinct codes of ``skimage.feature.local_binary_pattern``."""
    return {"uniform": P + 2, "nri_uniform": P * (P - 1) + 3}.get(method, 2**P)


def lbp_histogram_of(gray8: np.ndarray, P: int, R: float, method: str) -> np.ndarray:
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(gray8, P, R, method=method).astype(np.int64)
    n = lbp_bins(P, method)
    return np.bincount(codes.ravel(), minlength=n)[:n] / max(codes.size, 1)


def glcm_of(gray: np.ndarray, distances, angles, levels, props, average_angles) -> np.ndarray:
    from skimage.feature import graycomatrix, graycoprops

    q = np.clip(np.floor(gray * levels), 0, levels - 1).astype(np.uint8 if levels <= 256 else
                                                                 np.uint16)
    matrix = graycomatrix(q, distances=list(distances), angles=np.deg2rad(angles).tolist(),
                          levels=levels, symmetric=True, normed=True)
    values = np.stack([graycoprops(matrix, prop) for prop in props])  # props × dist × angles
    if average_angles:
        values = values.mean(axis=2)
    return np.nan_to_num(values, nan=0.0).ravel()


def gradient_stats_of(gray: np.ndarray, bins: int, threshold: float) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    magnitude = np.hypot(gx, gy).ravel()
    angle = (np.degrees(np.arctan2(gy, gx)).ravel()) % 180.0
    idx = np.minimum((angle * (bins / 180.0)).astype(np.int64), bins - 1)
    hist = np.bincount(idx, weights=magnitude, minlength=bins)
    total = hist.sum()
    hist = hist / total if total > 0 else hist
    p50, p90, p99 = np.percentile(magnitude, [50, 90, 99])
    stats = [magnitude.mean(), magnitude.std(), p50, p90, p99, (magnitude > threshold).mean()]
    return np.concatenate([stats, hist])
