"""Decoding: the pixel limit first, then the fastest decoder for each format.

libjpeg-turbo through simplejpeg for 8-bit gray and YCbCr JPEGs (it reports the damage libjpeg
only warns about: data cut short, then patched with an end-of-image marker, decodes "fine" to a
gray lower part everywhere else), OpenCV for other JPEGs and PNG, tifffile for TIFF, Pillow for
BMP, WebP, GIF (first frame), PNM.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

from pixelmill.codecs._imports import lazy_modules
from pixelmill.codecs._info import DEFAULT_MAX_PIXELS, MODES, ImageInfo
from pixelmill.codecs._probe import probe
from pixelmill.errors import DecodeError, InvalidParameterError, PixelLimitError

__all__ = ["apply_orientation", "check_decode_options", "check_pixel_limit", "decode",
           "decoder_threads", "verify"]

cv2, np, Image = lazy_modules(globals())

_REDUCE = (1, 2, 4, 8)


def _jpeg_flags(gray: bool, reduce: int) -> tuple[int, bool]:
    """OpenCV imread flags for a JPEG (colour or gray, DCT-domain reduce, raw orientation), and
    whether colour comes out as RGB already (OpenCV >= 4.10 lets libjpeg write RGB: no swap)."""
    name = ("GRAYSCALE" if gray else "COLOR") if reduce == 1 else (
        f"REDUCED_GRAYSCALE_{reduce}" if gray else f"REDUCED_COLOR_{reduce}")
    flags = getattr(cv2, "IMREAD_" + name) | cv2.IMREAD_IGNORE_ORIENTATION
    rgb = not gray and hasattr(cv2, "IMREAD_COLOR_RGB")
    if rgb:
        flags = (flags & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB
    return flags, rgb


#: libjpeg warnings that mean image data is missing or unreadable: the file is invalid. The
#: others ("N extraneous bytes before marker", "invalid SOS parameters", ...) come with
#: cameras' and editors' files that every viewer shows, and are tolerated as libjpeg does.
_JPEG_DATA_LOST = ("premature end", "bad huffman code", "instead of rst")


def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a dependency; OpenCV decodes the same pixels
        return None
    return simplejpeg


def _decode_jpeg(data: bytes, info: ImageInfo, reduce: int) -> Any:
    """An 8-bit gray or YCbCr JPEG through libjpeg-turbo with its warnings heard (None for the
    other kinds, which OpenCV decodes). Same pixels as OpenCV's libjpeg-turbo, every scale."""
    sj = _simplejpeg()
    if sj is None or info.bit_depth != 8 or info.stored_mode not in ("L", "RGB"):
        return None
    kw: dict[str, int] = {}
    if reduce > 1:  # exactly 1/reduce in the DCT domain, sizes rounded up as libjpeg does
        kw = {"min_factor": reduce, "min_height": -(-info.height // reduce),
              "min_width": -(-info.width // reduce)}
    space = "GRAY" if info.channels == 1 else "RGB"
    try:
        arr = sj.decode_jpeg(data, space, **kw)
    except ValueError as e:
        msg = str(e).strip()
        if any(k in msg.lower() for k in _JPEG_DATA_LOST):
            what = msg.split(": ", 1)[-1]  # "Corrupt JPEG data: premature end of data segment"
            what = what[0].lower() + what[1:]
            kind = "truncated" if "premature end" in what else "corrupt"
            raise DecodeError(f"{kind} JPEG data (libjpeg: {what})") from None
        try:  # a warning libjpeg recovers from as every viewer does
            arr = sj.decode_jpeg(data, space, strict=False, **kw)
        except ValueError:  # not one this build reads (arithmetic, lossless...): OpenCV's turn
            return None
    return arr[..., 0] if info.channels == 1 else arr


def apply_orientation(image: Any, orientation: int) -> Any:
    """Turn a stored pixel grid upright for an EXIF ``orientation`` (1–8)."""
    if orientation in (None, 0, 1):
        return image
    a = image
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = a.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        a = a[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        a = a.swapaxes(0, 1)[::-1]
    return np.ascontiguousarray(a)


def _bgr_to_rgb(arr: Any) -> Any:
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def _decode_cv2(data: bytes, info: ImageInfo, reduce: int) -> Any:
    if info.format == "jpg":
        arr = _decode_jpeg(data, info, reduce)
        if arr is not None:
            return arr
    buf = np.frombuffer(data, np.uint8)
    rgb = False
    if info.format == "jpg":
        flags, rgb = _jpeg_flags(info.channels == 1, reduce)
    else:
        flags = cv2.IMREAD_UNCHANGED
    arr = cv2.imdecode(buf, flags)
    if arr is None:
        raise DecodeError(f"corrupt or truncated {info.format.upper()} data")
    if info.format == "png" and info.channels == 2 and arr.ndim == 3:  # gray+alpha came as BGRA
        return np.ascontiguousarray(arr[..., [0, 3]])
    if info.format == "png" and info.channels == 2 and arr.ndim == 2:  # gray with a key colour
        return _gray_key_alpha(arr, data, info.bit_depth)
    if info.channels == 1 and arr.ndim == 3:
        arr = arr[..., 0]
    return arr if rgb else _bgr_to_rgb(arr)


def _decode_tiff(data: bytes, info: ImageInfo, page: int) -> Any:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not 0 <= page < len(tif.pages):
            raise InvalidParameterError(
                f"page: expected 0..{len(tif.pages) - 1}, got {page}", field="page")
        p = tif.pages[page]
        arr = p.asarray()
        if int(p.planarconfig) == 2 and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        photometric = TIFF_PHOTOMETRIC.get(int(p.photometric), "")
        arr = tiff_samples(arr, photometric, p.colormap if photometric == "palette" else None,
                           strict=False)
        if arr.ndim == 3:
            check_channels(arr.shape[2])  # another page than the probed first one
    if arr.dtype not in _TIFF_KEPT:
        raise DecodeError(f"unsupported TIFF sample type {arr.dtype}")
    return np.ascontiguousarray(arr)


#: TIFF photometric interpretations converted on reading (others are read as stored)
TIFF_PHOTOMETRIC = {0: "miniswhite", 3: "palette", 5: "cmyk"}

_TIFF_KEPT = (np.uint8, np.uint16, np.float32)
_TIFF_WIDENED = (np.float64, np.float16)


def tiff_samples(arr: np.ndarray, photometric: str = "", colormap: Any = None, *,
                 strict: bool = True) -> np.ndarray:
    """Stored TIFF samples (H×W or H×W×C, any window of them) as :func:`decode` returns them.

    Expands a ``palette`` (16-bit ``colormap`` entries) to RGB, turns ``cmyk`` into RGB (an
    extra sample stays alpha), inverts ``miniswhite`` integers, widens 1-bit samples to 0/255
    uint8 and reads float64/float16 as float32. Every rule is per pixel, so the region reader
    applies the same function window by window. ``strict`` refuses the remaining sample types
    (int16, int32, ...) as :func:`decode` does; arrays that are not TIFF pages keep them.
    """
    if photometric == "palette":
        arr = (np.asarray(colormap)[:, arr].transpose(1, 2, 0) >> 8).astype(np.uint8)
    elif photometric == "cmyk":
        cmyk = arr[..., :4].astype(np.float32)
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind == "u" else 1.0
        rgb = (top - cmyk[..., :3]) * (top - cmyk[..., 3:4]) / top
        rgb = np.rint(rgb).astype(arr.dtype) if arr.dtype.kind == "u" else rgb
        arr = np.concatenate([rgb, arr[..., 4:5]], axis=-1) if arr.shape[-1] > 4 else rgb
    elif photometric == "miniswhite" and arr.dtype.kind in "ub":
        arr = ~arr
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in _TIFF_KEPT:
        if arr.dtype in _TIFF_WIDENED:
            arr = arr.astype(np.float32)
        elif strict:
            raise DecodeError(f"unsupported TIFF sample type {arr.dtype}")
    return arr


def _decode_pil(data: bytes, info: ImageInfo, page: int) -> Any:
    with Image.open(io.BytesIO(data)) as im:
        if page:
            try:
                im.seek(page)
            except EOFError as e:
                raise InvalidParameterError(
                    f"page: expected 0..{info.pages - 1}, got {page}", field="page") from e
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            arr = np.asarray(im).astype(np.uint16)
            if info.format == "png" and info.channels == 2:  # gray with a key colour
                return _gray_key_alpha(arr, data, 16)
            return arr
        if mode == "F":
            return np.asarray(im, dtype=np.float32)
        if mode == "I":  # 32-bit integers: no pixelmill dtype holds them without rescaling
            raise DecodeError("unsupported 32-bit integer pixels")
        target = MODES[info.channels]
        if mode != target:
            im = im.convert(target)
        return np.asarray(im)


def _gray_key_alpha(gray: Any, data: bytes, depth: int) -> Any:
    """Gray + alpha from a gray PNG whose ``tRNS`` names one transparent level (libpng, and so
    OpenCV, leave it out; Pillow applies it): that level alpha 0, every other opaque."""
    from pixelmill.codecs._probe import png_gray_key

    key = png_gray_key(data)
    top = np.iinfo(gray.dtype).max
    if key is not None and depth < 8:  # 1/2/4-bit gray was scaled up to 8 bits
        key *= 255 // ((1 << depth) - 1)
    alpha = np.full_like(gray, top) if key is None else np.where(gray == key, 0, top)
    return np.dstack([gray, alpha.astype(gray.dtype)])


def check_channels(channels: int) -> None:
    """Refuse more channels than pixelmill's layouts (ops and encoders take 1 to 4)."""
    if channels > 4:
        raise DecodeError(f"{channels} channels: pixelmill reads images with 1 to 4 channels "
                          "(gray, gray+alpha, RGB, RGBA)")


def check_pixel_limit(info: ImageInfo, max_pixels: int | None) -> None:
    if max_pixels is not None and info.pixels > max_pixels:
        raise PixelLimitError(
            f"exceeds the pixel limit ({info.width}x{info.height} = {info.pixels:,} pixels > "
            f"{max_pixels:,}; raise max_pixels (--max-pixels) to read it)")


def _decode_info(data: bytes, info: ImageInfo, page: int, reduce: int) -> Any:
    try:
        if info.format in ("jpg", "png") and info.pixels < (1 << 30) and not page:
            return _decode_cv2(data, info, reduce)
        if info.format == "pnm" and info.bit_depth == 16:  # Pillow would keep 8 of the 16 bits
            return _decode_cv2(data, info, reduce)
        if info.format == "tif":
            return _decode_tiff(data, info, page)
        return _decode_pil(data, info, page)
    except (DecodeError, InvalidParameterError):
        raise
    except Exception as e:
        raise DecodeError(f"cannot decode {info.format.upper()}: {e}") from e


def check_decode_options(*, page: Any = 0, max_pixels: Any = None, reduce: Any = 1,
                         apply_exif: Any = True) -> None:
    """Refuse :func:`decode` options that are wrong whatever the file (an
    :class:`~pixelmill.errors.InvalidParameterError` naming the option); a ``page`` a file
    does not have is that file's error, raised by :func:`decode`."""
    if isinstance(page, bool) or not isinstance(page, int | np.integer) or page < 0:
        raise InvalidParameterError(f"page: expected an integer >= 0, got {page!r}",
                                    field="options")
    if max_pixels is not None and (isinstance(max_pixels, bool)
                                   or not isinstance(max_pixels, int | np.integer)):
        raise InvalidParameterError(f"max_pixels: expected an integer or None, got "
                                    f"{max_pixels!r}", field="max_pixels")
    if reduce not in _REDUCE:
        raise InvalidParameterError(f"reduce: expected 1, 2, 4 or 8, got {reduce!r}",
                                    field="reduce")


def decode(
    data: bytes,
    *,
    page: int = 0,
    apply_exif: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    reduce: int = 1,
    info: ImageInfo | None = None,
) -> Any:
    """Decode an image to an array (see the module docstring for layouts and dtypes).

    Parameters
    ----------
    data : bytes
        The encoded file.
    page : int
        TIFF page / GIF frame to read (0 = the first).
    apply_exif : bool
        Turn the image upright according to its EXIF orientation (``False`` keeps the raw grid).
    max_pixels : int or None
        Refuse images whose header claims more than this many pixels (``None``: no limit).
        Checked before any pixel is decoded: raises :class:`~pixelmill.errors.PixelLimitError`.
    reduce : {1, 2, 4, 8}
        JPEG only: decode at 1/reduce size in the DCT domain (much faster than decoding then
        resizing); other formats ignore it, so read the returned shape.
    info : ImageInfo, optional
        What :func:`probe` with ``whole=True`` returned for these same bytes: their header is
        then not read again (a job probes each file before deciding how to decode it).

    Raises
    ------
    DecodeError
        The data is not a readable image (truncated, corrupt, unknown format, a JPEG whose
        data is too short for its size, more than 4 channels); checked from the header first.
    """
    check_decode_options(page=page, max_pixels=max_pixels, reduce=reduce)
    if info is None:
        info = probe(data, whole=True)
    check_pixel_limit(info, max_pixels)
    if not page:  # the header describes the first page (others are checked as decoded)
        check_channels(info.channels)
    arr = _decode_info(data, info, page, reduce)
    if apply_exif and info.orientation != 1:
        arr = apply_orientation(arr, info.orientation)
    return arr


def verify(
    data: bytes, info: ImageInfo | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageInfo:
    """Decode every pixel of the first page to prove the file whole; return its header info.

    Cheaper than :func:`decode` (no colour-order conversion, no orientation); raises
    :class:`~pixelmill.errors.DecodeError` for truncated or corrupt data.
    """
    if info is None or info.format == "jpg":  # the whole file: a JPEG's data size is judged
        info = probe(data, whole=True)
    check_pixel_limit(info, max_pixels)
    check_channels(info.channels)
    if info.format == "jpg" and _decode_jpeg(data, info, 8) is not None:
        pass  # every coefficient was read (at 1/8 scale: the Huffman decoding is all of it)
    elif info.format in ("jpg", "png") and info.pixels < (1 << 30):
        flags = cv2.IMREAD_UNCHANGED
        if info.format == "jpg":
            flags = _jpeg_flags(info.channels == 1, 1)[0]
        if cv2.imdecode(np.frombuffer(data, np.uint8), flags) is None:
            raise DecodeError(f"corrupt or truncated {info.format.upper()} data")
    else:
        _decode_info(data, info, 0, 1)
    return info


@contextlib.contextmanager
def decoder_threads(n: int = 1) -> Iterator[None]:
    """Limit OpenCV's decoder threads inside the block (restored after).

    In a pool with one worker process per core, OpenCV's own threads only add contention:
    on 2 cores, JPEG decoding costs ~1.6x more CPU time with its default thread pool.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)
