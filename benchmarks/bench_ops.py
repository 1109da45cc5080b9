"""Per-op overhead: every registered op against the direct library call it matches.

    python benchmarks/bench_ops.py [--size 1920x1080] [--repeat 5] [--only gaussian,median]
                                   [--dtypes uint8,uint16,float32] [--full]

Each op runs the way a pipeline runs it (a one-step :class:`pixelmill.pipeline.Pipeline`:
validated parameters, the registry's function) on a photo-like RGB image built from
scikit-image's bundled photos (a 2×2 mosaic resized to ``--size``, light noise), and is timed
against the direct call of the library it wraps or is tested against (OpenCV, scikit-image,
SciPy, NumPy) on the same array. Both run single-threaded (OpenCV and BLAS at 1 thread).

Timings are medians over ``--repeat`` runs (at least one more warm-up run) of CPU time
(``time.process_time``, robust on a shared machine) and of wall time; the ratio is pixelmill
/ reference CPU time. Ratios under about 1.3 are noise on a busy 2-core machine. A few slow
ops (NL-means, SLIC, watershed) run on a quarter of the image unless ``--full``.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

#: ops that need a trained model (no library call to compare with)
SKIPPED = {"classify": "needs a trained model", "cnn_embedding": "a pixelmill-trained CNN",
           "super_resolve": "a network (bench_sr.py)"}


@dataclass
class Case:
    op: str
    setting: str
    params: dict[str, Any]
    ref_name: str
    ref: Callable[[np.ndarray], Any]
    dtypes: tuple[str, ...] = ("uint8",)
    source: str = "rgb"  #: rgb, gray or mask (the op's input)
    small: bool = False  #: a quarter of the image (half each side) unless --full
    extra: dict = field(default_factory=dict)


def photo(width: int, height: int) -> np.ndarray:
    """uint8 RGB: four bundled photos in a 2×2 mosaic, resized to width×height, light noise."""
    from skimage import data

    tiles = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    hw, hh = max(1, width // 2), max(1, height // 2)
    tiles = [cv2.resize(t, (hw, hh), interpolation=cv2.INTER_AREA) for t in tiles]
    mosaic = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    mosaic = cv2.resize(mosaic, (width, height), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(0)
    noisy = mosaic.astype(np.int16) + rng.integers(-6, 7, mosaic.shape, dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def as_dtype(img8: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return img8
    if dtype == "uint16":
        return img8.astype(np.uint16) * np.uint16(257)
    return img8.astype(np.float32) / np.float32(255)


def white(a: np.ndarray) -> float:
    return 1.0 if a.dtype.kind == "f" else float(np.iinfo(a.dtype).max)


# ---- reference calls ------------------------------------------------------------------------
def gray_cv(a: np.ndarray) -> np.ndarray:
    """BT.601 luma, the obvious way (float32 for floats, the dtype's own for integers)."""
    return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a


def gray64(a: np.ndarray) -> np.ndarray:
    return gray_cv(a.astype(np.float32)).astype(np.float64)


def cv_per_plane(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: cv2.merge([fn(p) for p in cv2.split(a)])


def morph_ref(how: int, size: int) -> Callable[[np.ndarray], np.ndarray]:
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    return lambda a: cv2.morphologyEx(a, how, se, borderType=cv2.BORDER_REFLECT)


def gaussian_ref(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    k = 2 * int(4 * sigma + 0.5) + 1
    return lambda a: cv2.GaussianBlur(a, (k, k), sigma, borderType=cv2.BORDER_REFLECT)


def sobel_mag(a: np.ndarray, scharr: bool = False) -> np.ndarray:
    f = a.astype(np.float32)
    if scharr:
        gx = cv2.Scharr(f, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Scharr(f, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REFLECT)
    else:
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    return cv2.magnitude(gx, gy)


def unsharp_ref(a: np.ndarray) -> np.ndarray:
    blurred = cv2.GaussianBlur(a, (9, 9), 1.0, borderType=cv2.BORDER_REFLECT)
    return cv2.addWeighted(a, 2.0, blurred, -1.0, 0.0)


def grayworld_ref(a: np.ndarray) -> np.ndarray:
    means = np.array(cv2.mean(a)[:3])
    gains = means.mean() / means
    return cv2.transform(a, np.diag(gains))


def canny_ref(a: np.ndarray) -> np.ndarray:
    from skimage.feature import canny

    w = white(a)
    return canny(gray64(a), sigma=1.0, low_threshold=0.1 * w, high_threshold=0.2 * w,
                 mode="reflect")


def harris_ref(a: np.ndarray) -> np.ndarray:
    return cv2.cornerHarris(gray_cv(a.astype(np.float32)), 3, 3, 0.04,
                            borderType=cv2.BORDER_REFLECT)


def otsu_ref(a: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    g = gray64(a)
    return g > threshold_otsu(g)


def adaptive_ref(method: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: cv2.adaptiveThreshold(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), 255, method,
                                           cv2.THRESH_BINARY, 35, 0)


def watershed_ref(a: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    from skimage.morphology import local_minima
    from skimage.segmentation import watershed

    g = gray64(a)
    fp = ndimage.generate_binary_structure(2, 2)
    markers, _ = ndimage.label(local_minima(g, footprint=fp), fp)
    return watershed(g, markers=markers, connectivity=2)


def watershed_dist_ref(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    from skimage.morphology import local_maxima
    from skimage.segmentation import watershed

    fg = mask != 0
    dist = ndimage.distance_transform_edt(fg)
    fp = ndimage.generate_binary_structure(2, 2)
    markers, _ = ndimage.label(local_maxima(dist, footprint=fp) & fg, fp)
    return watershed(-dist, markers=markers, connectivity=2, mask=fg)


def slic_ref(a: np.ndarray) -> np.ndarray:
    from skimage.segmentation import slic

    return slic(a, n_segments=100, compactness=10.0, start_label=1, channel_axis=-1)


def stats_ref(a: np.ndarray) -> tuple:
    flat = a.reshape(-1, 3)
    return flat.mean(axis=0), flat.std(axis=0)


def sharpness_ref(a: np.ndarray) -> float:
    g = (gray_cv(a.astype(np.float32)) * np.float32(255 / white(a))).astype(np.float64)
    return float(cv2.Laplacian(g, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT).var())


def brightness_ref(a: np.ndarray) -> tuple:
    g = gray_cv(a.astype(np.float32)) / np.float32(white(a))
    return float(g.mean(dtype=np.float64)), float(g.std(dtype=np.float64))


def phash_ref(a: np.ndarray) -> np.ndarray:
    from scipy.fft import dctn

    small = cv2.resize(gray_cv(a.astype(np.float32)), (32, 32), interpolation=cv2.INTER_AREA)
    c = dctn(small.astype(np.float64), type=2)[:8, :8]
    return c > np.median(c)


def hsv01(a: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(a.astype(np.float32) / np.float32(white(a)), cv2.COLOR_RGB2HSV)
    hsv[..., 0] /= 360.0
    return hsv


def color_hist_ref(a: np.ndarray) -> np.ndarray:
    hsv = hsv01(a)
    return np.concatenate([cv2.calcHist([hsv], [c], None, [8], [0, 1]).ravel()
                           for c in range(3)])


def color_moments_ref(a: np.ndarray) -> np.ndarray:
    from scipy.stats import skew

    flat = hsv01(a).reshape(-1, 3).astype(np.float64)
    return np.stack([flat.mean(0), flat.std(0), skew(flat, axis=0)], 1)


def hog_ref(a: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    return hog(gray64(a) / white(a), orientations=9, pixels_per_cell=(8, 8),
               cells_per_block=(3, 3), block_norm="L2-Hys")


def lbp_ref(a: np.ndarray) -> np.ndarray:
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), 8, 1.0, "uniform")
    return np.bincount(codes.astype(np.int64).ravel(), minlength=10)


def glcm_ref(a: np.ndarray) -> np.ndarray:
    from skimage.feature import graycomatrix, graycoprops

    q = (cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) // 8).astype(np.uint8)
    m = graycomatrix(q, [1, 2], np.radians([0, 45, 90, 135]), levels=32, symmetric=True,
                     normed=True)
    return np.stack([graycoprops(m, p) for p in ("contrast", "dissimilarity", "homogeneity",
                                                   "energy", "correlation", "ASM")])


def gradient_stats_ref(a: np.ndarray) -> np.ndarray:
    g = gray_cv(a.astype(np.float32)) / np.float32(white(a))
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    p = np.percentile(mag, [50, 90, 99])
    hist = np.histogram(ang % 180, bins=8, range=(0, 180), weights=mag)[0]
    return np.concatenate([[mag.mean(), mag.std()], p, [(mag > 0.05).mean()], hist])


def cases(w: int, h: int) -> list[Case]:
    from scipy import ndimage
    from skimage import exposure, morphology

    rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 30.0, 1.0)
    aff = np.array([[1.0, 0.2, 2.0], [0.1, 0.9, -1.0]])
    cw, ch = max(1, w * 2 // 3), max(1, h * 2 // 3)
    x0, y0 = (w - cw) // 2, (h - ch) // 2

    def resize_ref(interp, f=0.5):
        return lambda a: cv2.resize(a, None, fx=f, fy=f, interpolation=interp)

    def morph_cases(name, how):
        return [Case(name, f"size={s}", {"size": s}, "cv2.morphologyEx", morph_ref(how, s),
                     ("uint8", "float32") if s == 3 else ("uint8",)) for s in (3, 7)]

    ls = max(1, max(w, h) * 4 // 15)  # 1920 -> 512: a 15/4 area shrink
    lsize = (ls, max(1, round(h * ls / w))) if w >= h else (max(1, round(w * ls / h)), ls)
    out = [
        Case("resize", "factor=0.5 area", {"factor": 0.5}, "cv2.resize",
             resize_ref(cv2.INTER_AREA), ("uint8", "uint16", "float32")),
        Case("resize", f"long_side={ls} area", {"long_side": ls}, "cv2.resize",
             lambda a: cv2.resize(a, lsize, interpolation=cv2.INTER_AREA),
             ("uint8", "uint16", "float32")),
        Case("resize", "factor=0.5 nearest", {"factor": 0.5, "method": "nearest"},
             "cv2.resize", resize_ref(cv2.INTER_NEAREST_EXACT)),
        Case("resize", "factor=0.5 bilinear", {"factor": 0.5, "method": "bilinear"},
             "cv2.resize", resize_ref(cv2.INTER_LINEAR)),
        Case("resize", "factor=0.5 bicubic", {"factor": 0.5, "method": "bicubic"},
             "cv2.resize", resize_ref(cv2.INTER_CUBIC)),
        Case("resize", "factor=0.5 lanczos", {"factor": 0.5, "method": "lanczos"},
             "cv2.resize", resize_ref(cv2.INTER_LANCZOS4)),
        Case("resize", "factor=2 bilinear", {"factor": 2.0, "method": "bilinear"},
             "cv2.resize", resize_ref(cv2.INTER_LINEAR, 2.0)),
        Case("crop", "2/3 window", {"x": x0, "y": y0, "width": cw, "height": ch},
             "ndarray slice copy", lambda a: a[y0:y0 + ch, x0:x0 + cw].copy()),
        Case("center_crop", "2/3 window", {"width": cw, "height": ch}, "ndarray slice copy",
             lambda a: a[y0:y0 + ch, x0:x0 + cw].copy()),
        Case("pad", "16 reflect", {"top": 16, "bottom": 16, "left": 16, "right": 16,
                                   "mode": "reflect"}, "cv2.copyMakeBorder",
             lambda a: cv2.copyMakeBorder(a, 16, 16, 16, 16, cv2.BORDER_REFLECT)),
        Case("pad", "16 constant", {"top": 16, "bottom": 16, "left": 16, "right": 16},
             "cv2.copyMakeBorder",
             lambda a: cv2.copyMakeBorder(a, 16, 16, 16, 16, cv2.BORDER_CONSTANT)),
        Case("rotate", "angle=30", {"angle": 30.0}, "cv2.warpAffine",
             lambda a: cv2.warpAffine(a, rot, (w, h), flags=cv2.INTER_LINEAR)),
        Case("rotate", "angle=90", {"angle": 90.0}, "cv2.rotate",
             lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)),
        Case("flip", "horizontal", {}, "cv2.flip", lambda a: cv2.flip(a, 1)),
        Case("affine", "shear", {"matrix": aff.ravel().tolist()}, "cv2.warpAffine",
             lambda a: cv2.warpAffine(a, aff, (w, h), flags=cv2.INTER_LINEAR)),
        # colour
        Case("convert", "to=gray", {}, "cv2.cvtColor", gray_cv,
             ("uint8", "uint16", "float32")),
        Case("convert", "to=hsv", {"to": "hsv"}, "cv2.cvtColor float32",
             lambda a: cv2.cvtColor(a.astype(np.float32) / np.float32(white(a)),
                                    cv2.COLOR_RGB2HSV)),
        Case("convert", "to=lab", {"to": "lab"}, "cv2.cvtColor float32",
             lambda a: cv2.cvtColor(a.astype(np.float32) / np.float32(white(a)),
                                    cv2.COLOR_RGB2Lab)),
        Case("convert", "to=ycbcr", {"to": "ycbcr"}, "cv2.cvtColor YCrCb",
             lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2YCrCb)),
        Case("rescale_intensity", "image range", {}, "skimage rescale_intensity",
             lambda a: exposure.rescale_intensity(a, in_range="image", out_range="dtype"),
             ("uint8", "float32")),
        Case("gamma", "gamma=0.5", {"gamma": 0.5}, "skimage adjust_gamma",
             lambda a: exposure.adjust_gamma(a, 0.5), ("uint8", "float32")),
        Case("equalize_hist", "default", {}, "cv2.equalizeHist per channel",
             cv_per_plane(cv2.equalizeHist)),
        Case("clahe", "default", {}, "cv2 CLAHE per channel",
             cv_per_plane(cv2.createCLAHE(2.0, (8, 8)).apply)),
        Case("white_balance_grayworld", "default", {}, "cv2.mean + cv2.transform",
             grayworld_ref),
        # filters
        Case("gaussian", "sigma=1", {}, "cv2.GaussianBlur", gaussian_ref(1.0)),
        Case("gaussian", "sigma=1.5", {"sigma": 1.5}, "cv2.GaussianBlur", gaussian_ref(1.5),
             ("uint8", "uint16", "float32")),
        Case("gaussian", "sigma=5", {"sigma": 5.0}, "cv2.GaussianBlur", gaussian_ref(5.0)),
        Case("box", "size=3", {}, "cv2.blur",
             lambda a: cv2.blur(a, (3, 3), borderType=cv2.BORDER_REFLECT),
             ("uint8", "float32")),
        Case("median", "size=3", {}, "cv2.medianBlur", lambda a: cv2.medianBlur(a, 3),
             ("uint8", "uint16", "float32")),
        Case("median", "size=5", {"size": 5}, "cv2.medianBlur", lambda a: cv2.medianBlur(a, 5),
             ("uint8", "float32")),
        Case("median", "size=7", {"size": 7}, "scipy median_filter",
             lambda a: ndimage.median_filter(a, size=(7, 7, 1), mode="reflect"), ("uint16",),
             small=True),
        Case("bilateral", "d=5", {}, "cv2.bilateralFilter",
             lambda a: cv2.bilateralFilter(a, 5, 25.0 * white(a) / 255, 2.0,
                                           borderType=cv2.BORDER_REFLECT),
             ("uint8", "float32"), extra={"float32": {"sigma_color": 25 / 255}}),
        Case("unsharp_mask", "default", {}, "cv2 GaussianBlur + addWeighted", unsharp_ref,
             ("uint8", "float32")),
        Case("nl_means", "default", {}, "cv2.fastNlMeansDenoising",
             lambda a: cv2.fastNlMeansDenoising(a, h=[10.0], templateWindowSize=7,
                                                searchWindowSize=21), small=True),
        Case("laplacian", "ksize=1", {}, "cv2.Laplacian",
             lambda a: cv2.Laplacian(a.astype(np.float32), cv2.CV_32F, ksize=1,
                                     borderType=cv2.BORDER_REFLECT), ("uint8", "float32")),
        # edges
        Case("sobel", "magnitude", {}, "cv2.Sobel ×2 + magnitude", sobel_mag,
             ("uint8", "float32")),
        Case("scharr", "magnitude", {}, "cv2.Scharr ×2 + magnitude",
             lambda a: sobel_mag(a, True)),
        Case("canny", "sigma=1", {}, "skimage canny", canny_ref, ("uint8", "float32")),
        Case("harris", "default", {}, "cv2.cornerHarris", harris_ref),
        # morphology
        *morph_cases("erode", cv2.MORPH_ERODE),
        *morph_cases("dilate", cv2.MORPH_DILATE),
        *morph_cases("opening", cv2.MORPH_OPEN),
        *morph_cases("closing", cv2.MORPH_CLOSE),
        *morph_cases("gradient", cv2.MORPH_GRADIENT),
        *morph_cases("tophat", cv2.MORPH_TOPHAT),
        *morph_cases("blackhat", cv2.MORPH_BLACKHAT),
        Case("skeletonize", "otsu mask", {}, "skimage skeletonize",
             lambda m: morphology.skeletonize(m != 0), source="mask"),
        # segmentation
        Case("threshold", "otsu", {}, "luma + skimage threshold_otsu", otsu_ref,
             ("uint8", "float32")),
        Case("threshold", "otsu gray", {}, "skimage threshold_otsu",
             lambda g: g > __import__("skimage.filters").filters.threshold_otsu(g),
             source="gray"),
        Case("threshold", "adaptive_mean", {"method": "adaptive_mean"},
             "cv2.adaptiveThreshold", adaptive_ref(cv2.ADAPTIVE_THRESH_MEAN_C)),
        Case("threshold", "adaptive_gaussian", {"method": "adaptive_gaussian"},
             "cv2.adaptiveThreshold", adaptive_ref(cv2.ADAPTIVE_THRESH_GAUSSIAN_C)),
        Case("connected_components", "otsu mask", {}, "cv2.connectedComponents",
             lambda m: cv2.connectedComponents(m, connectivity=8, ltype=cv2.CV_32S)[1],
             source="mask"),
        Case("component_stats", "otsu mask", {}, "cv2.connectedComponentsWithStats",
             lambda m: cv2.connectedComponentsWithStats(m, connectivity=8,
                                                        ltype=cv2.CV_32S)[2], source="mask"),
        Case("watershed", "source=image", {}, "skimage local_minima + watershed",
             watershed_ref, small=True),
        Case("watershed", "source=distance", {"source": "distance"},
             "skimage edt + local_maxima + watershed", watershed_dist_ref, source="mask",
             small=True),
        Case("slic", "n_segments=100", {}, "skimage slic", slic_ref, small=True),
        # measurements
        Case("channel_stats", "default", {}, "ndarray mean + std", stats_ref,
             ("uint8", "float32")),
        Case("sharpness", "default", {}, "cv2.Laplacian + var", sharpness_ref,
             ("uint8", "float32")),
        Case("blur_flag", "default", {}, "cv2.Laplacian + var", sharpness_ref),
        Case("brightness_contrast", "default", {}, "luma mean + std", brightness_ref),
        Case("phash", "default", {}, "cv2.resize + scipy dctn", phash_ref),
        # feature vectors
        Case("color_histogram", "hsv bins=8", {}, "cv2 HSV + calcHist", color_hist_ref),
        Case("color_moments", "hsv", {}, "cv2 HSV + mean/std/skew", color_moments_ref),
        Case("hog", "default", {}, "skimage hog", hog_ref),
        Case("lbp_histogram", "uniform P=8", {}, "skimage local_binary_pattern + bincount",
             lbp_ref),
        Case("glcm", "default", {}, "skimage graycomatrix + graycoprops", glcm_ref),
        Case("gradient_stats", "default", {}, "cv2 Sobel + cartToPolar + stats",
             gradient_stats_ref),
    ]
    return out


def timed(fn: Callable[[], Any], repeat: int, budget: float) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) over ``repeat`` runs after one warm-up run; fewer runs
    (at least 2) when one run takes more than ``budget`` / ``repeat``."""
    t0 = time.process_time()
    fn()
    first = time.process_time() - t0
    n = repeat if first * repeat <= budget else max(2, min(repeat, int(budget / max(first,
                                                                                     1e-9))))
    cpu, wall = [], []
    for _ in range(n):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1920x1080", help="image WIDTHxHEIGHT")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per side (median)")
    ap.add_argument("--budget", type=float, default=1.5,
                    help="seconds of CPU per side and case before runs are cut (min 2 runs)")
    ap.add_argument("--only", default="", help="comma-separated op names")
    ap.add_argument("--dtypes", default="uint8,uint16,float32",
                    help="dtypes to run where a case lists them")
    ap.add_argument("--full", action="store_true", help="slow ops on the whole image too")
    args = ap.parse_args(argv)

    from pixelmill.ops import registry
    from pixelmill.ops._common import set_native_threads
    from pixelmill.pipeline import Pipeline

    set_native_threads(1)
    w, h = (int(v) for v in args.size.lower().split("x"))
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    dtypes = {s.strip() for s in args.dtypes.split(",") if s.strip()}
    img8 = photo(w, h)
    print(f"ops benchmark: {w}x{h} RGB photo mosaic, OpenCV/BLAS 1 thread, median of "
          f"{args.repeat} runs (CPU time; ratio = pixelmill / reference)")
    all_cases = cases(w, h)
    covered = {c.op for c in all_cases}
    missing = sorted(set(registry()) - covered - set(SKIPPED))
    header = (f"{'op':<24}{'setting':<28}{'dtype':<9}{'pixelmill ms':>13}{'ref ms':>10}"
              f"{'ratio':>7}{'wall ratio':>11}  reference")
    print(header)
    print("-" * len(header))
    masks: dict[tuple[int, int], np.ndarray] = {}
    flagged = []
    for case in all_cases:
        if only and case.op not in only:
            continue
        for dtype in case.dtypes:
            if dtype not in dtypes:
                continue
            base = img8
            if case.small and not args.full:
                base = img8[: max(1, h // 2), : max(1, w // 2)]
            if case.source == "mask":
                key = base.shape[:2]
                if key not in masks:
                    g = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)
                    masks[key] = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[1]
                image = masks[key]
            elif case.source == "gray":
                image = as_dtype(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), dtype)
            else:
                image = np.ascontiguousarray(as_dtype(base, dtype))
            params = {**case.params, **case.extra.get(dtype, {})}
            pipe = Pipeline.from_steps([(case.op, params)])
            pm_cpu, pm_wall = timed(lambda p=pipe, im=image: p.run(im), args.repeat, args.budget)
            ref_cpu, ref_wall = timed(lambda c=case, im=image: c.ref(im), args.repeat, args.budget)
            ratio = pm_cpu / max(ref_cpu, 1e-6)
            wall_ratio = pm_wall / max(ref_wall, 1e-6)
            setting = case.setting + (" (1/4 image)" if case.small and not args.full else "")
            mark = " <" if ratio > 1.5 and wall_ratio > 1.5 else ""
            print(f"{case.op:<24}{setting:<28}{dtype:<9}{pm_cpu * 1e3:>13.2f}"
                  f"{ref_cpu * 1e3:>10.2f}{ratio:>7.2f}{wall_ratio:>11.2f}  {case.ref_name}"
                  f"{mark}", flush=True)
            if mark:
                flagged.append(f"{case.op} {case.setting} {dtype}")
    if not only:
        for name, why in SKIPPED.items():
            print(f"{name:<24}skipped: {why}")
        if missing:
            print(f"ops without a case: {', '.join(missing)}")
    print(f"ratio > 1.5 (CPU and wall): {len(flagged)} case(s)"
          + (f": {'; '.join(flagged)}" if flagged else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
