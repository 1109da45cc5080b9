"""Feature-vector ops: colour, texture, shape and learned descriptors (``output="vector"``).

Each op returns a 1-D float32 vector; a pipeline stores it as the manifest column
``vec_<op name>``. Pixel values are read relative to their dtype's nominal white (uint8 / 255,
uint16 / 65535, float32 as is), so the same picture gives the same vector in any dtype. Gray
images are read as RGB with equal channels, so colour vectors keep one length per collection.

Every extractor takes the region-pooling parameters ``grid`` (rows, cols of regions),
``overlap`` (sliding windows sharing that fraction) and ``pool`` (``concat`` keeps the layout,
``mean``/``max`` pool region vectors element-wise) — see :mod:`pixelmill.learn.regions`.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import numpy as np

from pixelmill.learn.descriptors import (
    color_histogram_of,
    color_moments_of,
    glcm_of,
    gradient_stats_of,
    hog_of,
    lbp_histogram_of,
    to_gray,
    to_rgb,
)
from pixelmill.learn.regions import pool_regions
from pixelmill.ops._common import check_image
from pixelmill.ops._registry import GLOBAL, Range, op
from pixelmill.ops.sr import TORCH_WORKER_BYTES

__all__ = [
    "classify",
    "cnn_embedding",
    "color_histogram",
    "color_moments",
    "glcm",
    "gradient_stats",
    "hog",
    "lbp_histogram",
]

GridSize = Annotated[int, Range(ge=1, le=64)]
Overlap = Annotated[float, Range(ge=0.0, le=0.9)]
Pooling = Literal["concat", "mean", "max"]
ColorSpace = Literal["rgb", "hsv", "lab"]
GLCMProp = Literal["contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM",
                   "mean", "variance", "std", "entropy"]


@op(family="features", halo=GLOBAL, output="vector",
    check=lambda p: f"bins: joint=true allows at most 16, got {p['bins']}"
    if p["joint"] and p["bins"] > 16 else None)
def color_histogram(
    image: np.ndarray,
    *,
    bins: Annotated[int, Range(ge=2, le=256)] = 8,
    space: ColorSpace = "hsv",
    joint: bool = False,
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Colour histogram, each channel's (or the joint one) normalised to sum 1.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (gray is read as RGB).
    bins : int
        Bins per channel, equal width over the channel's range.
    space : str
        Colour space: rgb, hsv (hue scaled to [0, 1]) or lab (L in [0, 100], a and b in [-128, 128]).
    joint : bool
        One joint histogram of ``bins**3`` cells instead of three of ``bins``.
    grid : tuple of int
        Regions (rows, cols) to describe separately.
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 vector of ``3*bins`` (or ``bins**3``) values per region.

    Examples
    --------
    >>> import numpy as np
    >>> color_histogram(np.zeros((4, 4, 3), np.uint8), bins=4, space="rgb")[:4].tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    check_image(image, "color_histogram")
    return pool_regions(to_rgb(image), partial(color_histogram_of, bins=bins, space=space,
                                               joint=joint), grid=grid, overlap=overlap, pool=pool)


@op(family="features", halo=GLOBAL, output="vector")
def color_moments(
    image: np.ndarray,
    *,
    space: ColorSpace = "hsv",
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Colour moments: mean, standard deviation and skewness of each channel.

    Skewness is the standardised third moment (``scipy.stats.skew`` with ``bias=True``); a
    constant channel has skewness 0.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (gray is read as RGB).
    space : str
        Colour space: rgb, hsv (hue scaled to [0, 1]) or lab.
    grid : tuple of int
        Regions (rows, cols) to describe separately.
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 ``[mean0, std0, skew0, mean1, ...]``, 9 values per region.
    """
    check_image(image, "color_moments")
    return pool_regions(to_rgb(image), partial(color_moments_of, space=space),
                        grid=grid, overlap=overlap, pool=pool)


def _hog_check(p) -> str | None:
    size, ppc, cpb = p["size"], p["pixels_per_cell"], p["cells_per_block"]
    if size is not None and (size[0] < ppc[0] * cpb[0] or size[1] < ppc[1] * cpb[1]):
        return (f"size: {list(size)} is smaller than one block "
                f"({ppc[0] * cpb[0]}×{ppc[1] * cpb[1]} pixels)")
    if size is None and tuple(p["grid"]) != (1, 1):
        return "grid: regions need size=[h, w] so every region gives one vector length"
    return None


@op(family="features", halo=GLOBAL, output="vector", check=_hog_check)
def hog(
    image: np.ndarray,
    *,
    orientations: Annotated[int, Range(ge=2, le=36)] = 9,
    pixels_per_cell: tuple[Annotated[int, Range(ge=2)], Annotated[int, Range(ge=2)]] = (8, 8),
    cells_per_block: tuple[Annotated[int, Range(ge=1)], Annotated[int, Range(ge=1)]] = (3, 3),
    block_norm: Literal["L1", "L1-sqrt", "L2", "L2-Hys"] = "L2-Hys",
    transform_sqrt: bool = False,
    size: tuple[Annotated[int, Range(ge=2, le=8192)],
                Annotated[int, Range(ge=2, le=8192)]] | None = None,
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Histogram of oriented gradients of the luminance (``skimage.feature.hog``).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    orientations : int
        Orientation bins.
    pixels_per_cell : tuple of int
        Cell size (rows, cols) in pixels.
    cells_per_block : tuple of int
        Cells per normalisation block (rows, cols).
    block_norm : str
        Block normalisation, as in scikit-image.
    transform_sqrt : bool
        Power-law (gamma) compression before the gradients.
    size : tuple of int or None
        Resize (each region) to (rows, cols) first, so every image gives one vector length.
    grid : tuple of int
        Regions (rows, cols) to describe separately (needs size).
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 HOG descriptor (its length follows from the image or ``size``).
    """
    check_image(image, "hog")
    fn = partial(hog_of, size=size, orientations=orientations, pixels_per_cell=pixels_per_cell,
                 cells_per_block=cells_per_block, block_norm=block_norm,
                 transform_sqrt=transform_sqrt)
    return pool_regions(to_gray(image), fn, grid=grid, overlap=overlap, pool=pool)


@op(family="features", halo=GLOBAL, output="vector",
    check=lambda p: f"P: methods default and ror allow at most 16, got {p['P']}"
    if p["method"] in ("default", "ror") and p["P"] > 16 else None)
def lbp_histogram(
    image: np.ndarray,
    *,
    P: Annotated[int, Range(ge=4, le=24)] = 8,
    R: Annotated[float, Range(gt=0.0, le=32.0)] = 1.0,
    method: Literal["uniform", "nri_uniform", "ror", "default"] = "uniform",
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Histogram of local binary patterns of the luminance (``skimage.feature.local_binary_pattern``).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (luminance quantised to 8 bits).
    P : int
        Circularly symmetric neighbours.
    R : float
        Radius of the circle, in pixels.
    method : str
        Pattern coding: uniform (rotation invariant, P+2 codes), nri_uniform, ror or default.
    grid : tuple of int
        Regions (rows, cols) to describe separately.
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 histogram of code frequencies (sums to 1 per region).
    """
    check_image(image, "lbp_histogram")
    gray8 = np.clip(np.rint(to_gray(image) * 255.0), 0, 255).astype(np.uint8)
    return pool_regions(gray8, partial(lbp_histogram_of, P=P, R=R, method=method),
                        grid=grid, overlap=overlap, pool=pool)


@op(family="features", halo=GLOBAL, output="vector")
def glcm(
    image: np.ndarray,
    *,
    distances: tuple[Annotated[int, Range(ge=1, le=64)], ...] = (1, 2),
    angles: tuple[Annotated[float, Range(ge=0.0, lt=360.0)], ...] = (0.0, 45.0, 90.0, 135.0),
    levels: Annotated[int, Range(ge=2, le=256)] = 32,
    props: tuple[GLCMProp, ...] = ("contrast", "dissimilarity", "homogeneity", "energy",
                                   "correlation", "ASM"),
    average_angles: bool = True,
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Haralick texture properties of the gray-level co-occurrence matrix (scikit-image).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32 (luminance quantised to ``levels``).
    distances : tuple of int
        Pixel pair offsets.
    angles : tuple of float
        Pixel pair directions in degrees.
    levels : int
        Gray levels of the quantised luminance.
    props : tuple of str
        Properties computed by ``skimage.feature.graycoprops``.
    average_angles : bool
        Average each property over the angles (rotation tolerant).
    grid : tuple of int
        Regions (rows, cols) to describe separately.
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 ``props × distances`` (× angles unless averaged) per region, props outermost.
    """
    check_image(image, "glcm")
    fn = partial(glcm_of, distances=distances, angles=angles, levels=levels, props=props,
                 average_angles=average_angles)
    return pool_regions(to_gray(image), fn, grid=grid, overlap=overlap, pool=pool)


@op(family="features", halo=GLOBAL, output="vector")
def gradient_stats(
    image: np.ndarray,
    *,
    bins: Annotated[int, Range(ge=2, le=72)] = 8,
    threshold: Annotated[float, Range(ge=0.0)] = 0.05,
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Gradient and edge statistics of the luminance (3×3 Sobel, reflected border).

    The gradient is in luminance units per pixel (a ramp of slope ``s`` has magnitude ``s``).

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    bins : int
        Bins of the magnitude-weighted orientation histogram over [0°, 180°).
    threshold : float
        Magnitude above which a pixel counts as an edge pixel.
    grid : tuple of int
        Regions (rows, cols) to describe separately.
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 ``[mean, std, p50, p90, p99, edge_density, hist_0 .. hist_{bins-1}]`` per region.
    """
    check_image(image, "gradient_stats")
    return pool_regions(to_gray(image), partial(gradient_stats_of, bins=bins, threshold=threshold),
                        grid=grid, overlap=overlap, pool=pool)


@op(family="features", halo=GLOBAL, output="vector", worker_bytes=TORCH_WORKER_BYTES)
def cnn_embedding(
    image: np.ndarray,
    *,
    model: str = "textures",
    layer: Literal["embedding", "probabilities"] = "embedding",
    grid: tuple[GridSize, GridSize] = (1, 1),
    overlap: Overlap = 0.0,
    pool: Pooling = "concat",
) -> np.ndarray:
    """Embedding from a CNN trained by pixelmill (``pixelmill learn train --model cnn``).

    The network is loaded once per process; the image (or each region) is resized to the
    network's input size.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    model : str
        A bundled network (``textures``: colour/texture classes) or a model directory / URL.
    layer : str
        embedding (the pooled features before the classifier) or probabilities (softmax).
    grid : tuple of int
        Regions (rows, cols) to describe separately.
    overlap : float
        Fraction of a region shared with its neighbour (sliding windows).
    pool : str
        concat keeps every region's vector; mean or max pools them into one.

    Returns
    -------
    ndarray
        float32 embedding per region.
    """
    check_image(image, "cnn_embedding")
    from pixelmill.errors import InvalidParameterError
    from pixelmill.learn.models import load_model

    trained = load_model(model)
    if trained.kind != "cnn":
        raise InvalidParameterError(f"cnn_embedding.model: {model!r} is a {trained.kind} "
                                    "model, not a CNN", field="model")
    net = trained.cnn
    return pool_regions(image, partial(net.embed, layer=layer), grid=grid, overlap=overlap,
                        pool=pool)


@op(family="features", halo=GLOBAL, output="measures", worker_bytes=TORCH_WORKER_BYTES)
def classify(image: np.ndarray, *, model: str) -> dict:
    """Classify the image with a model trained by ``pixelmill learn train``.

    The model's own feature pipeline runs first (or its CNN, for CNN models); the model is
    loaded once per process.

    Parameters
    ----------
    image : ndarray
        H×W or H×W×C, uint8, uint16 or float32.
    model : str
        The model directory or URL.

    Returns
    -------
    dict
        ``predicted`` (class label), ``confidence`` and ``prob_<class>`` for every class.
    """
    check_image(image, "classify")
    from pixelmill.learn.models import load_model

    return load_model(model).classify_image(image)
