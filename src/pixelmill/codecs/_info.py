"""What a header says about an image (:class:`ImageInfo`), formats and shared constants."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from pixelmill.errors import InvalidParameterError

__all__ = ["DEFAULT_MAX_PIXELS", "ENCODE_FORMATS", "MODES", "ImageInfo", "format_from_name"]

#: default pixel limit (width × height) checked before decoding: 500 megapixels
DEFAULT_MAX_PIXELS = 500_000_000

#: formats :func:`pixelmill.codecs.encode` writes
ENCODE_FORMATS = ("jpg", "png", "tif", "webp")

#: decoded layout name by channel count
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}

_EXT_FORMATS = {
    ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".jfif": "jpg", ".png": "png",
    ".tif": "tif", ".tiff": "tif", ".bmp": "bmp", ".dib": "bmp", ".webp": "webp", ".gif": "gif",
    ".ppm": "pnm", ".pgm": "pnm", ".pbm": "pnm", ".pnm": "pnm",
}


@dataclass(frozen=True)
class ImageInfo:
    """What a header says about an image, without decoding it.

    ``width``/``height`` are the stored pixel grid (before EXIF orientation: see
    :meth:`shape`). ``channels``/``mode``/``bit_depth`` describe what :func:`decode` returns
    (``mode`` is ``L``, ``LA``, ``RGB`` or ``RGBA``; a CMYK JPEG is ``RGB``; a TIFF with more
    than 4 channels, which :func:`decode` refuses, has its true ``channels`` and an empty
    ``mode``); ``stored_mode`` names the colour model as stored (``CMYK``, ``P`` for a palette,
    ``L+4`` for gray and 4 extra samples, ...). ``pages`` counts TIFF pages and GIF frames.
    ``orientation`` is the EXIF orientation (1 = none).
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


