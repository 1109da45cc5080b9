"""Training data for super-resolution: image listing, the held-out split, LR/HR pairs, patches.

Pairs follow the evaluation protocol exactly: the high-resolution image is cropped to a
multiple of the scale (*modcrop*), the low-resolution image is MATLAB's bicubic
``imresize(HR, 1/S)`` of the uint8 RGB image, and the network sees the BT.601 luma of each
(float, in [0, 1]). Grayscale images are used as they are.

The held-out split is a fixed function of each file's path relative to the data folder
(CRC-32, 10 %), so the same files are held out by training, ``pixelmill sr eval --split val``
and the benchmark, whoever lists them and whatever else is added to the folder.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pixelmill.errors import DecodeError, NoInputError
from pixelmill.metrics import rgb_to_y
from pixelmill.sr.resample import imresize

__all__ = [
    "IMAGE_SUFFIXES",
    "PairSet",
    "benchmark_images",
    "default_data_dir",
    "degrade",
    "list_images",
    "load_pairs",
    "modcrop",
    "read_rgb",
    "sample_patches",
    "split_files",
    "to_luma",
]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def default_data_dir() -> Path:
    """``<repository>/../shared/data/sr-train`` (where the project keeps its training images)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sr-train"


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted by path; hidden files and folders
    (``.DS_Store``, the ``__MACOSX/._baby.png`` resource forks that zipped benchmark sets
    often carry) are not images and are skipped."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise NoInputError(f"data: {root} is not a folder")
    files = sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") or part == "__MACOSX"
                    for part in p.relative_to(root).parts))
    if not files:
        raise NoInputError(f"data: no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


_GT_FOLDERS = ("hr", "gtmod12", "gt", "original")


def benchmark_images(root: str | Path, scale: int) -> tuple[list[Path], str]:
    """The ground-truth images of an evaluation folder, in the common benchmark layouts.

    Benchmark sets are distributed with their low-resolution and bicubic images beside the
    ground truth, and evaluating those as ground truth would give meaningless means. Recognised:

    * ``<set>/HR/`` (beside ``LR_bicubic/X2`` …; EDSR's *benchmark* folders), and likewise a
      ``GTmod12/``, ``GT/`` or ``original/`` subfolder (BasicSR's layout, beside ``LRbicx2`` …):
      only that subfolder;
    * ``*_HR.<ext>`` files (``image_SRF_2/img_001_SRF_2_HR.png`` beside ``…_LR.png``,
      ``…_bicubic.png``; the SelfExSR layout): only those, from ``image_SRF_<scale>/`` when
      that folder exists;
    * anything else: every image under ``root``.

    Returns the files and a short description of the layout found.
    """
    root = Path(root)
    if root.is_dir():
        subdirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
        for name in _GT_FOLDERS:
            if name in subdirs:
                return list_images(subdirs[name]), f"ground truth from {subdirs[name].name}/"
    files = list_images(root)
    tagged = [p for p in files if p.stem.lower().endswith("_hr")]
    if tagged:
        per_scale = [p for p in tagged if p.parent.name.lower() == f"image_srf_{scale}"]
        if per_scale:
            return per_scale, f"*_HR files from image_SRF_{scale}/"
        return tagged, "*_HR files"
    return files, "all images"


def split_files(
    files: Sequence[Path], root: str | Path, part: str, val_percent: int = 10
) -> list[Path]:
    """The ``train`` or ``val`` part of ``files`` (val = CRC-32 of the relative path % 100 < 10)."""
    root = Path(root)

    def is_val(p: Path) -> bool:
        rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
        return zlib.crc32(rel.encode()) % 100 < val_percent

    if part == "all":
        return list(files)
    if part not in ("train", "val"):
        raise ValueError(f"part must be train, val or all, not {part!r}")
    return [p for p in files if is_val(p) == (part == "val")]


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB (H×W×3) or gray (H×W, single-channel files only); alpha is
    dropped, 16-bit scaled."""
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DecodeError(f"{path}: cannot decode image")
    if image.dtype == np.uint16:
        image = np.floor(image / 257.0 + 0.5).astype(np.uint8)
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[..., 0]
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    # Channels stay as stored, as MATLAB's ``size(im, 3)`` sees them: a gray image saved with
    # three equal channels is RGB to the protocol (scored on Y = 16 + 219/255 v), one saved with
    # a single channel is scored on its values.
    return image


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale`` (MATLAB ``modcrop``)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The literature's degradation: MATLAB bicubic ``imresize(hr, 1/scale)``."""
    return imresize(hr, 1.0 / scale)


def to_luma(image: np.ndarray) -> np.ndarray:
    """uint8 RGB or gray -> float32 luma in [0, 1] (BT.601 Y for RGB, the gray value itself)."""
    if image.ndim == 3:
        return (rgb_to_y(image, 255.0) / 255.0).astype(np.float32)
    return (image.astype(np.float32) / 255.0).astype(np.float32)


@dataclass
class PairSet:
    """Luma pairs for one scale: ``lr[i]`` is h×w, ``hr[i]`` is (S·h)×(S·w), float32 in [0, 1]."""

    scale: int
    lr: list[np.ndarray]
    hr: list[np.ndarray]
    names: list[str]


def load_pairs(
    files: Sequence[Path],
    scale: int,
    *,
    cache_dir: Path | None = None,
    max_side: int | None = None,
) -> PairSet:
    """LR/HR luma pairs of ``files`` at ``scale``, cached as ``.npz`` in ``cache_dir`` if given.

    ``max_side`` takes a central crop of at most that many HR pixels per side first (used for
    quick per-epoch validation).
    """
    key = hashlib.sha1(
        repr((scale, max_side, [(str(f), f.stat().st_size) for f in files])).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"pairs-x{scale}-{key}.npz" if cache_dir else None
    if cached is not None and cached.exists():
        with np.load(cached) as z:
            n = int(z["n"])
            return PairSet(
                scale,
                [z[f"lr{i}"] for i in range(n)],
                [z[f"hr{i}"] for i in range(n)],
                [str(s) for s in z["names"]],
            )
    lrs, hrs, names = [], [], []
    for f in files:
        hr = read_rgb(f)
        if max_side:
            h, w = hr.shape[:2]
            top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
            hr = hr[top : top + max_side, left : left + max_side]
        hr = modcrop(hr, scale)
        if min(hr.shape[:2]) < 4 * scale:
            continue
        lrs.append(to_luma(degrade(hr, scale)))
        hrs.append(to_luma(hr))
        names.append(f.name)
    pairs = PairSet(scale, lrs, hrs, names)
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"lr{i}": a for i, a in enumerate(lrs)} | {f"hr{i}": a for i, a in enumerate(hrs)}
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, n=len(lrs), names=np.array(names), **arrays)
        tmp.replace(cached)
    return pairs


def sample_patches(
    pairs: PairSet, rng: np.random.Generator, batch: int, patch: int
) -> tuple[np.ndarray, np.ndarray]:
    """A random batch of aligned LR (``patch``²) / HR (``(S·patch)``²) patches, N×1×h×w.

    Images are drawn in proportion to their area; each patch gets a random flip and a random
    multiple-of-90° rotation (the 8 dihedral transforms).
    """
    s = pairs.scale
    sizes = np.array([max(0, a.shape[0] - patch + 1) * max(0, a.shape[1] - patch + 1)
                      for a in pairs.lr], np.float64)  # images smaller than a patch: never
    if sizes.sum() == 0:
        raise ValueError(f"no training image is at least {patch}×{patch} in low resolution")
    which = rng.choice(len(pairs.lr), size=batch, p=sizes / sizes.sum())
    lr_out = np.empty((batch, 1, patch, patch), np.float32)
    hr_out = np.empty((batch, 1, patch * s, patch * s), np.float32)
    for k, i in enumerate(which):
        lr, hr = pairs.lr[i], pairs.hr[i]
        y = int(rng.integers(0, lr.shape[0] - patch + 1))
        x = int(rng.integers(0, lr.shape[1] - patch + 1))
        a = lr[y : y + patch, x : x + patch]
        b = hr[y * s : (y + patch) * s, x * s : (x + patch) * s]
        t = int(rng.integers(0, 8))
        if t & 4:
            a, b = a[:, ::-1], b[:, ::-1]
        a, b = np.rot90(a, t & 3), np.rot90(b, t & 3)
        lr_out[k, 0] = a
        hr_out[k, 0] = b
    return lr_out, hr_out
