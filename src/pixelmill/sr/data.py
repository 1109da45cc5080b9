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
import io
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pixelmill.errors import DecodeError, InvalidParameterError, NoInputError
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

#: folder names that hold low-resolution or bicubic images in the benchmark layouts
#: (EDSR's ``LR_bicubic/X2``, BasicSR's ``LRbicx2``, DIV2K's ``*_LR_bicubic``, ``LR/``).
_LR_FOLDER = re.compile(
    r"^(lr|lrbicx\d+|lrx\d+|bicubic)$|_lr$|(^|_)lr_(bicubic|unknown|mild|difficult|wild|x\d+)",
    re.I)
_SRF_FOLDER = re.compile(r"image_srf_(\d+)$", re.I)
_SCALE_FOLDER = re.compile(r"x(\d+)$", re.I)


def _low_resolution_parts(root: Path, files: Sequence[Path]) -> list[str]:
    """The folders that hold low-resolution inputs: ``root``, the parent of a ``root``
    named like ``X2`` (``LR_bicubic/X2``), or a folder below ``root``."""
    found: list[str] = []
    here = root.resolve()
    parts = [here.parent.name] if _SCALE_FOLDER.match(here.name) else []
    parts.append(here.name)
    parts += [q for p in files for q in p.relative_to(root).parts[:-1]]
    for part in parts:
        if _LR_FOLDER.search(part) and part not in found:
            found.append(part)
    return found


def benchmark_images(root: str | Path, scale: int) -> tuple[list[Path], str]:
    """The ground-truth images of an evaluation folder, in the common benchmark layouts.

    Benchmark sets are distributed with their low-resolution and bicubic images beside the
    ground truth, and evaluating those as ground truth would give meaningless means. Recognised:

    * ``<set>/HR/`` (beside ``LR_bicubic/X2`` …; EDSR's *benchmark* folders), and likewise a
      ``GTmod12/``, ``GT/`` or ``original/`` subfolder (BasicSR's layout, beside ``LRbicx2`` …):
      only that subfolder;
    * ``*_HR.<ext>`` files (``image_SRF_2/img_001_SRF_2_HR.png`` beside ``…_LR.png``,
      ``…_bicubic.png``; the SelfExSR layout): only those, from ``image_SRF_<scale>/`` when
      that folder exists (an error when the ``*_HR`` files lie in several ``image_SRF_*``
      folders and none is for ``scale``: each picture would be scored once per folder);
    * ``x2/``, ``x3/``, ``x4/`` subfolders (one copy of the ground truth per scale, as in
      RCAN's ``HR/<set>/x<S>/``): only ``x<scale>/`` (an error when it is missing, even when
      the set has a single such folder);
    * anything else: every image under ``root``, unless low-resolution folders
      (``LR_bicubic``, ``LRbicx2`` …) are among them or ``root`` is one or lies in one: an
      error that says to point at the ground truth.

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
        # ground truth prepared per scale (cropped to a multiple of it) in folders below root;
        # pointing at one of them (root itself) takes it as it is
        folders = sorted({p.parent.name for p in tagged
                          if _SRF_FOLDER.match(p.parent.name) and p.parent != root},
                         key=lambda n: int(_SRF_FOLDER.match(n).group(1)))
        if folders:
            raise InvalidParameterError(
                f"data: {root} holds *_HR files in {', '.join(f + '/' for f in folders)} but "
                f"no image_SRF_{scale}/ for --scale {scale}; evaluate "
                f"{'one of those scales' if len(folders) > 1 else 'that scale'} or point at "
                "one folder to score its images at any scale", field="data")
        return tagged, "*_HR files"
    if not root.is_dir():
        return files, "all images"
    low = _low_resolution_parts(root, files)
    if low:
        raise InvalidParameterError(
            f"data: {root} holds low-resolution images ({', '.join(low)}) and no ground-truth "
            "folder (HR/, GTmod12/, GT/, original/) or *_HR files; point at the set's "
            "ground-truth folder or at a set that holds one", field="data")
    # one copy of the ground truth per scale (RCAN's HR/<set>/x2/, x3/, x4/): that scale's
    by_scale = {int(m.group(1)): p.parent for p in files
                if p.parent.parent == root and (m := _SCALE_FOLDER.match(p.parent.name))}
    if scale in by_scale:
        return list_images(by_scale[scale]), f"ground truth from {by_scale[scale].name}/"
    if by_scale:
        raise InvalidParameterError(
            f"data: {root} holds one copy of its images per scale "
            f"({', '.join(sorted((d.name + '/' for d in by_scale.values()), key=str.lower))}) "
            f"but none for --scale {scale}; point at one folder to score its images at any "
            "scale", field="data")
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


def train_val_split(root: str | Path) -> tuple[list[Path], list[Path], bool]:
    """Training and validation images of a training folder, and whether validation is held out.

    A folder so small that one part of the CRC-32 split is empty validates on its last
    training image (``False``): figures from it are not held-out figures, and say so.
    """
    files = list_images(root)
    train, val = split_files(files, root, "train"), split_files(files, root, "val")
    if train and val:
        return train, val, True
    train = train or val
    return train, train[-1:], False


def _stored_gray(data: np.ndarray) -> bool:
    """Whether the file's colour model is gray though OpenCV expands it to BGR(A): gray + alpha
    (PNG colour type 4, TIFF ``LA``) or a palette whose entries are all gray."""
    from PIL import Image

    head = data[:26].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[25] in (0, 4):
        return True  # PNG colour type 0 (gray) or 4 (gray + alpha): PIL calls 16-bit LA "RGBA"
    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            if im.mode in ("LA", "La", "L", "I", "I;16", "I;16B", "I;16L", "1"):
                return True
            if im.mode in ("P", "PA"):
                palette = np.asarray(im.getpalette() or [], np.uint8)
                # the entries the pixels use: unused slots of a padded palette do not count
                used = np.unique(np.asarray(im if im.mode == "P" else im.getchannel(0)))
                rgb = palette[: palette.size // 3 * 3].reshape(-1, 3)
                rgb = rgb[used[used < len(rgb)]]
                return bool(len(rgb)) and bool(np.all(rgb == rgb[:, :1]))
    except Exception:  # PIL cannot say: keep what OpenCV decoded
        return False
    return False


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB (H×W×3) or gray (H×W); alpha is dropped, 16-bit scaled.

    Channels stay as stored, as MATLAB's ``imread`` / ``size(im, 3)`` see them: a gray file
    (one channel, gray + alpha, or a palette of grays) is H×W and is scored on its values; a
    gray picture saved with three equal channels is RGB to the protocol (scored on
    Y = 16 + 219/255 v). The stored pixel grid is kept (EXIF orientation is not applied, as
    MATLAB's ``imread`` and OpenCV's ``IMREAD_UNCHANGED`` do not). An empty or undecodable
    file is a :class:`~pixelmill.errors.DecodeError` naming ``path``.
    """
    data = np.fromfile(str(path), np.uint8)
    if not data.size:  # OpenCV asserts on an empty buffer rather than returning None
        raise DecodeError(f"{path}: empty file (0 bytes)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # a decoder's assertion on a damaged file
        raise DecodeError(f"{path}: cannot decode image ({e.err})") from e
    if image is None:
        raise DecodeError(f"{path}: cannot decode image")
    if image.dtype == np.uint16:
        image = np.floor(image / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DecodeError(f"{path}: {image.dtype} samples; the protocol scores 8-bit images "
                          "(16-bit ones are scaled to 8 bits)")
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[..., 0]
        elif image.shape[2] in (3, 4) and _stored_gray(data):
            image = np.ascontiguousarray(image[..., 0])  # B = G = R = the gray value
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
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


def _degradation_fingerprint(scale: int) -> bytes:
    """The degradation of a fixed probe image, for the pair cache's key: pairs cached by an
    earlier ``imresize`` (one that clamped border taps, say) are not reused by a later one."""
    probe = (np.arange(13 * 11 * 3, dtype=np.int64).reshape(13, 11, 3) * 97 % 256).astype(np.uint8)
    return degrade(probe, scale).tobytes() + degrade(probe[..., 0], scale).tobytes()


#: bumped when :func:`read_rgb` reads some file differently (16-bit gray + alpha PNGs were
#: read as RGB), so that pairs cached from the earlier reading are not reused
_PAIRS_VERSION = 2


def _content_key(files: Sequence[Path], scale: int, max_side: int | None) -> str:
    """The pair cache's key: a SHA-256 of every file's bytes (with its name, which the cached
    pairs carry), ``scale``, ``max_side`` and :func:`_degradation_fingerprint`."""
    digest = hashlib.sha256(repr((_PAIRS_VERSION, scale, max_side)).encode()
                            + _degradation_fingerprint(scale))
    for f in files:
        with open(f, "rb") as stream:
            content = hashlib.file_digest(stream, "sha256").hexdigest()
        digest.update(repr((Path(f).name, content)).encode())
    return digest.hexdigest()[:24]


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
    quick per-epoch validation). Images whose (cropped) sides are under ``4 * scale`` pixels
    are skipped. The cache is keyed on what the pairs are made of: each file's name and a
    hash of its bytes (see :func:`_content_key`), the scale, the crop and the degradation; a
    file edited in place, or another folder with files of the same names and sizes, never
    reuses pixels cached for other contents.
    """
    key = _content_key(files, scale, max_side)
    cached = cache_dir / f"pairs-x{scale}-{key}.npz" if cache_dir else None
    if cached is not None and cached.exists():
        try:
            with np.load(cached) as z:
                n = int(z["n"])
                return PairSet(
                    scale,
                    [z[f"lr{i}"] for i in range(n)],
                    [z[f"hr{i}"] for i in range(n)],
                    [str(s) for s in z["names"]],
                )
        except Exception:  # a damaged cache entry is only a miss: the pairs are made again
            pass
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
        _store_pairs(cached, lrs, hrs, names)
    return pairs


def _store_pairs(cached: Path, lrs: list, hrs: list, names: list[str]) -> None:
    """Write the pair cache entry ``cached`` through a temporary file of this process's own (two
    runs preparing the same pairs at once each rename a whole file; a shared temporary name
    let one rename the other's away, or interleave their bytes). The cache only saves time: a
    folder that cannot be written is left alone."""
    import os
    import tempfile

    arrays = {f"lr{i}": a for i, a in enumerate(lrs)} | {f"hr{i}": a for i, a in enumerate(hrs)}
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=cached.stem + ".", suffix=".tmp.npz",
                                   dir=cached.parent)
        with os.fdopen(fd, "wb") as stream:
            np.savez(stream, n=len(lrs), names=np.array(names), **arrays)
        from pixelmill.storage import ordinary_file_mode

        ordinary_file_mode(tmp)  # mkstemp's 0600: a cache shared by a group stays readable
        os.replace(tmp, cached)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


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
