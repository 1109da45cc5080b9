"""Decode and encode images; probe headers without decoding; refuse decompression bombs.

Arrays are H×W (gray) or H×W×C with channels last in RGB(A) order — ``L`` (1 channel), ``LA``
(2), ``RGB`` (3), ``RGBA`` (4) — with the dtype the file stores: uint8, uint16 (16-bit PNG and
TIFF) or float32 (float TIFF). Bit depth is read from the header, never guessed from values.

- :func:`probe` reads only the header: format, size, channels, bit depth, pages, EXIF
  orientation. PNG and JPEG headers are parsed here directly (the hot path of ``scan``);
  TIFF through tifffile (BigTIFF included); the rest through Pillow's lazy open.
- :func:`decode` checks the pixel limit from that header *before* any pixel is decoded, then
  decodes with OpenCV (JPEG, PNG: the fastest decoders available), tifffile (TIFF) or Pillow
  (BMP, WebP, GIF first frame, PNM). CMYK JPEG becomes RGB; EXIF orientation is applied unless
  ``apply_exif=False``; ``reduce`` shrinks JPEGs in the DCT domain while decoding.
- :func:`encode` writes jpg, png, tif and webp.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import posixpath
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pixelmill.errors import DecodeError, InvalidParameterError, PixelLimitError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ENCODE_FORMATS",
    "ImageInfo",
    "apply_orientation",
    "decode",
    "decoder_threads",
    "encode",
    "format_from_name",
    "probe",
    "verify",
]

#: default pixel limit (width × height) checked before decoding: 500 megapixels
DEFAULT_MAX_PIXELS = 500_000_000

#: formats :func:`encode` writes
ENCODE_FORMATS = ("jpg", "png", "tif", "webp")



class _LazyModule:
    """A module imported on first use, so that header-only work (``scan``) starts fast.

    On first attribute access the real module replaces this placeholder in the globals.
    """

    def __init__(self, alias: str, name: str, setup: Any = None) -> None:
        self._alias, self._name, self._setup = alias, name, setup

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        if self._setup is not None:
            self._setup(module)
        globals()[self._alias] = module
        return getattr(module, attr)


def _no_pillow_limit(module: Any) -> None:
    # pixelmill enforces its own limit (``max_pixels``) before Pillow decodes anything.
    module.MAX_IMAGE_PIXELS = None


cv2: Any = _LazyModule("cv2", "cv2")
np: Any = _LazyModule("np", "numpy")
Image: Any = _LazyModule("Image", "PIL.Image", _no_pillow_limit)

_EXT_FORMATS = {
    ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".jfif": "jpg", ".png": "png",
    ".tif": "tif", ".tiff": "tif", ".bmp": "bmp", ".dib": "bmp", ".webp": "webp", ".gif": "gif",
    ".ppm": "pnm", ".pgm": "pnm", ".pbm": "pnm", ".pnm": "pnm",
}
_PIL_FORMATS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "BMP": "bmp", "DIB": "bmp",
                "WEBP": "webp", "GIF": "gif", "PPM": "pnm"}
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_REDUCE = (1, 2, 4, 8)


def _jpeg_flags(gray: bool, reduce: int) -> int:
    """OpenCV imread flags for a JPEG: colour or gray, DCT-domain reduce, raw orientation."""
    name = ("GRAYSCALE" if gray else "COLOR") if reduce == 1 else (
        f"REDUCED_GRAYSCALE_{reduce}" if gray else f"REDUCED_COLOR_{reduce}")
    return getattr(cv2, "IMREAD_" + name) | cv2.IMREAD_IGNORE_ORIENTATION


@dataclass(frozen=True)
class ImageInfo:
    """What a header says about an image, without decoding it.

    ``width``/``height`` are the stored pixel grid (before EXIF orientation: see
    :meth:`shape`). ``channels``/``mode``/``bit_depth`` describe what :func:`decode` returns
    (``mode`` is ``L``, ``LA``, ``RGB`` or ``RGBA``; a CMYK JPEG is ``RGB``); ``stored_mode``
    names the colour model as stored (``CMYK``, ``P`` for a palette, ...). ``pages`` counts TIFF
    pages and GIF frames. ``orientation`` is the EXIF orientation (1 = none).
    """

    format: str
    width: int
    height: int
    channels: int
    bit_depth: int
    mode: str
    pages: int = 1
    orientation: int = 1
    stored_mode: str = ""

    @property
    def pixels(self) -> int:
        """``width × height``."""
        return self.width * self.height

    def shape(self, apply_exif: bool = True, reduce: int = 1) -> tuple[int, ...]:
        """The shape :func:`decode` returns with these options."""
        h, w = self.height, self.width
        if reduce > 1 and self.format == "jpg":
            h, w = -(-h // reduce), -(-w // reduce)
        if apply_exif and self.orientation in (5, 6, 7, 8):
            h, w = w, h
        return (h, w) if self.channels == 1 else (h, w, self.channels)


def format_from_name(path: str) -> str:
    """The format an extension names (``photo.JPEG`` -> ``jpg``); unknown ones raise."""
    ext = posixpath.splitext(str(path).lower())[1]
    if ext.lstrip(".") in ENCODE_FORMATS:
        return ext.lstrip(".")
    fmt = _EXT_FORMATS.get(ext)
    if fmt is None:
        raise InvalidParameterError(
            f"format: cannot tell the image format of {path!r} from its extension "
            f"(known: {', '.join(sorted(_EXT_FORMATS))})", field="format")
    return fmt


# -- probing ---------------------------------------------------------------------------------
def _exif_orientation(exif: bytes) -> int:
    """Orientation (tag 0x0112) from a TIFF-structured EXIF block; 1 when absent or unreadable."""
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(end + "I", exif, 4)
        (count,) = struct.unpack_from(end + "H", exif, ifd)
        for i in range(count):
            tag, typ, _, value = struct.unpack_from(end + "HHI4s", exif, ifd + 2 + 12 * i)
            if tag == 0x0112:
                v = struct.unpack_from(end + "H", value)[0] if typ == 3 else value[0]
                return v if 1 <= v <= 8 else 1
    except struct.error:
        return 1
    return 1


def _probe_png(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeError("truncated PNG header")
    import zlib

    (length,) = struct.unpack_from(">I", data, 8)
    if length != 13 or zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        raise DecodeError("corrupt PNG header (bad IHDR CRC)")
    width, height, depth, ctype, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if width == 0 or height == 0 or ctype not in _PNG_CHANNELS or interlace > 1:
        raise DecodeError(f"invalid PNG header ({width}x{height}, color type {ctype})")
    channels, orientation, trns, pos = _PNG_CHANNELS[ctype], 1, False, 33
    while pos + 8 <= len(data):  # walk chunk headers up to the pixel data
        n, cid = struct.unpack_from(">I4s", data, pos)
        if cid == b"IDAT":
            break
        if cid == b"tRNS":
            trns = True
        elif cid == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + n])
        pos += 12 + n
    if trns and ctype in (2, 3):
        channels = 4
    stored = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[ctype]
    return ImageInfo("png", width, height, channels, depth, _MODES[channels], 1, orientation,
                     stored)


def _probe_jpeg(data: bytes) -> ImageInfo:
    pos, n, orientation, adobe = 2, len(data), 1, False
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise DecodeError("corrupt JPEG: marker expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[pos + 10 : pos + 2 + length])
        elif marker == 0xEE and data[pos + 4 : pos + 9] == b"Adobe":
            adobe = True
        elif marker in _JPEG_SOF:
            if pos + 10 > n:
                break
            precision, height, width, comps = struct.unpack_from(">BHHB", data, pos + 4)
            if width == 0 or height == 0 or comps not in (1, 3, 4):
                raise DecodeError(f"invalid JPEG frame header ({width}x{height}, {comps} components)")
            stored = {1: "L", 3: "RGB", 4: "CMYK"}[comps]
            if comps == 3 and adobe:
                stored = "RGB"
            channels = 1 if comps == 1 else 3
            return ImageInfo("jpg", width, height, channels, precision, _MODES[channels], 1,
                             orientation, stored)
        elif marker == 0xDA:
            break
        pos += 2 + length
    raise DecodeError("truncated JPEG header (no frame header found)")


def _probe_tiff(data: bytes) -> ImageInfo:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            pages = len(tif.pages)
            channels, stored = _tiff_layout(page)
            tags = page.tags
            orientation = int(tags["Orientation"].value) if "Orientation" in tags else 1
            depth = int(page.bitspersample)
            return ImageInfo("tif", int(page.imagewidth), int(page.imagelength), channels,
                             depth, _MODES[channels], pages, orientation if 1 <= orientation <= 8
                             else 1, stored)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"not a readable TIFF: {e}") from e


def _tiff_layout(page) -> tuple[int, str]:
    """(decoded channels, stored mode) of a TIFF page."""
    photometric = int(page.photometric)
    spp = int(page.samplesperpixel)
    if photometric == 3:  # palette
        return 3, "P"
    if photometric == 5:  # separated (CMYK)
        return (4 if spp > 4 else 3), "CMYK"
    if photometric in (0, 1):  # min-is-white / min-is-black
        return min(spp, 2), "L" if spp == 1 else "LA"
    if spp in (3, 4):
        return spp, _MODES[spp]
    if spp > 4:
        return 4, f"{spp} samples"
    raise DecodeError(f"unsupported TIFF layout (photometric {photometric}, {spp} samples)")


def _pil_layout(im: Any) -> tuple[int, int]:
    """(decoded channels, bit depth) for a Pillow image opened lazily."""
    mode = im.mode
    if mode in ("1", "L", "I;16", "I;16L", "I;16B", "I;16N", "F", "I"):
        return 1, {"1": 1, "L": 8, "F": 32, "I": 32}.get(mode, 16)
    if mode in ("LA", "La"):
        return 2, 8
    if mode in ("P", "PA"):
        return (4 if mode == "PA" or "transparency" in im.info else 3), 8
    if mode in ("RGBA", "RGBa"):
        return 4, 8
    return 3, 8  # RGB, RGBX, CMYK, YCbCr, LAB, HSV


def probe(data: bytes) -> ImageInfo:
    """Read an image's header (no pixel is decoded).

    Raises :class:`~pixelmill.errors.DecodeError` when the bytes are not an image this module
    can read, with the reason in the message.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    head = bytes(data[:8])
    if head == _PNG_SIG:
        return _probe_png(data)
    if head[:3] == b"\xff\xd8\xff":
        return _probe_jpeg(data)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _probe_tiff(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = _PIL_FORMATS.get(im.format or "", (im.format or "unknown").lower())
            channels, depth = _pil_layout(im)
            orientation = 1
            if fmt == "webp" and "exif" in im.info:
                orientation = _exif_orientation(im.info["exif"])
            pages = int(getattr(im, "n_frames", 1) or 1)
            return ImageInfo(fmt, im.width, im.height, channels, depth, _MODES[channels], pages,
                             orientation, im.mode)
    except DecodeError:
        raise
    except Exception as e:
        kind = "not an image" if isinstance(e, Image.UnidentifiedImageError) else "unreadable"
        raise DecodeError(f"{kind}: {e}" if kind == "unreadable" else
                          "not a recognised image format") from e


# -- decoding --------------------------------------------------------------------------------
def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
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


def _bgr_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def _decode_cv2(data: bytes, info: ImageInfo, reduce: int) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    if info.format == "jpg":
        flags = _jpeg_flags(info.channels == 1, reduce)
    else:
        flags = cv2.IMREAD_UNCHANGED
    arr = cv2.imdecode(buf, flags)
    if arr is None:
        raise DecodeError(f"corrupt or truncated {info.format.upper()} data")
    if info.format == "png" and info.channels == 2 and arr.ndim == 3:  # gray+alpha came as BGRA
        return np.ascontiguousarray(arr[..., [0, 3]])
    if info.channels == 1 and arr.ndim == 3:
        arr = arr[..., 0]
    return _bgr_to_rgb(arr)


def _decode_tiff(data: bytes, info: ImageInfo, page: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not 0 <= page < len(tif.pages):
            raise InvalidParameterError(
                f"page: expected 0..{len(tif.pages) - 1}, got {page}", field="page")
        p = tif.pages[page]
        arr = p.asarray()
        if int(p.planarconfig) == 2 and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        photometric = int(p.photometric)
        if photometric == 3:
            cmap = p.colormap  # 3×2^bits, 16-bit entries
            arr = (cmap[:, arr].transpose(1, 2, 0) >> 8).astype(np.uint8)
        elif photometric == 5:
            cmyk = arr[..., :4].astype(np.float32)
            top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind == "u" else 1.0
            rgb = (top - cmyk[..., :3]) * (top - cmyk[..., 3:4]) / top
            rgb = np.rint(rgb).astype(arr.dtype) if arr.dtype.kind == "u" else rgb
            arr = np.concatenate([rgb, arr[..., 4:5]], axis=-1) if arr.shape[-1] > 4 else rgb
        elif photometric == 0 and arr.dtype.kind in "ub":  # min-is-white
            arr = ~arr
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 3 and arr.shape[2] > 4:
            arr = arr[..., :4]
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        if arr.dtype == np.float64 or arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        else:
            raise DecodeError(f"unsupported TIFF sample type {arr.dtype}")
    return np.ascontiguousarray(arr)


def _decode_pil(data: bytes, info: ImageInfo, page: int) -> np.ndarray:
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
            return np.asarray(im).astype(np.uint16)
        if mode == "F":
            return np.asarray(im, dtype=np.float32)
        target = _MODES[info.channels]
        if mode != target:
            im = im.convert(target)
        return np.asarray(im)


def _check_limit(info: ImageInfo, max_pixels: int | None) -> None:
    if max_pixels is not None and info.pixels > max_pixels:
        raise PixelLimitError(
            f"exceeds the pixel limit ({info.width}x{info.height} = {info.pixels:,} pixels > "
            f"{max_pixels:,}; raise max_pixels to read it)")


def _decode_info(data: bytes, info: ImageInfo, page: int, reduce: int) -> np.ndarray:
    try:
        if info.format in ("jpg", "png") and info.pixels < (1 << 30) and not page:
            return _decode_cv2(data, info, reduce)
        if info.format == "tif":
            return _decode_tiff(data, info, page)
        return _decode_pil(data, info, page)
    except (DecodeError, InvalidParameterError):
        raise
    except Exception as e:
        raise DecodeError(f"cannot decode {info.format.upper()}: {e}") from e


def decode(
    data: bytes,
    *,
    page: int = 0,
    apply_exif: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    reduce: int = 1,
) -> np.ndarray:
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

    Raises
    ------
    DecodeError
        The data is not a readable image (truncated, corrupt, unknown format).
    """
    if reduce not in _REDUCE:
        raise InvalidParameterError(f"reduce: expected 1, 2, 4 or 8, got {reduce!r}",
                                    field="reduce")
    info = probe(data)
    _check_limit(info, max_pixels)
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
    info = info or probe(data)
    _check_limit(info, max_pixels)
    if info.format in ("jpg", "png") and info.pixels < (1 << 30):
        flags = cv2.IMREAD_UNCHANGED
        if info.format == "jpg":
            flags = _jpeg_flags(info.channels == 1, 1)
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


# -- encoding --------------------------------------------------------------------------------
def _check_quality(quality: int | None, fmt: str) -> None:
    if quality is not None and not (isinstance(quality, int | np.integer) and 1 <= quality <= 100):
        raise InvalidParameterError(f"quality: expected an integer 1..100, got {quality!r}",
                                    field="quality")
    if quality is not None and fmt not in ("jpg", "webp"):
        raise InvalidParameterError(f"quality: {fmt} is lossless and takes no quality",
                                    field="quality")


def encode(image: np.ndarray, format: str = "png", *, quality: int | None = None) -> bytes:
    """Encode an array as ``jpg``, ``png``, ``tif`` or ``webp``.

    ``quality`` (1–100) applies to jpg (default 95) and webp (default lossless). jpg and webp
    hold 8-bit L/RGB(A) only (jpg: no alpha); png holds 8/16-bit; tif also float32. Values
    are never rescaled: an array a format cannot hold raises
    :class:`~pixelmill.errors.InvalidParameterError`.
    """
    fmt = {"jpeg": "jpg", "tiff": "tif"}.get(format.lower().lstrip("."), format.lower().lstrip("."))
    if fmt not in ENCODE_FORMATS:
        raise InvalidParameterError(
            f"format: expected one of {', '.join(ENCODE_FORMATS)}, got {format!r}", field="format")
    _check_quality(quality, fmt)
    arr = np.asarray(image)
    channels = 1 if arr.ndim == 2 else arr.shape[2] if arr.ndim == 3 else 0
    if channels not in (1, 2, 3, 4):
        raise InvalidParameterError(f"image: expected H×W or H×W×C (C ≤ 4), got shape {arr.shape}",
                                    field="image")
    if arr.ndim == 3 and channels == 1:
        arr = arr[..., 0]
    allowed = {"jpg": ("uint8",), "webp": ("uint8",), "png": ("uint8", "uint16"),
               "tif": ("uint8", "uint16", "float32")}[fmt]
    if arr.dtype.name not in allowed:
        raise InvalidParameterError(
            f"image: {fmt} cannot hold {arr.dtype} pixels (allowed: {', '.join(allowed)}); "
            "convert explicitly", field="image")
    if fmt == "jpg" and channels in (2, 4):
        raise InvalidParameterError("image: jpg cannot hold an alpha channel; drop it or use png",
                                    field="image")
    if fmt == "tif":
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, np.ascontiguousarray(arr),
                         photometric="minisblack" if channels <= 2 else "rgb",
                         extrasamples=("unassalpha",) if channels in (2, 4) else None,
                         compression="zlib")
        return buf.getvalue()
    if channels == 2:  # gray+alpha: OpenCV cannot write it
        if fmt == "png":
            import imagecodecs

            return bytes(imagecodecs.png_encode(np.ascontiguousarray(arr)))
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr), "LA").save(
            out, "WEBP", lossless=quality is None, quality=quality or 100)
        return out.getvalue()
    params: list[int] = []
    if fmt == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality or 95)]
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality) if quality else 101]
    bgr = arr
    if channels == 3:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode("." + fmt, bgr, params)
    if not ok:  # pragma: no cover - OpenCV refuses only what was checked above
        raise DecodeError(f"OpenCV could not encode a {arr.dtype} {arr.shape} image as {fmt}")
    return buf.tobytes()

