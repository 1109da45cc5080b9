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
  ``apply_exif=False``; ``reduce`` shrinks JPEGs in the DCT domain while decoding. Refused from
  the header, before any pixel is decoded: a sequential JPEG whose image data is too short for
  the size it claims (at least 2 bits per 8×8 block), and more than 4 channels (a TIFF's extra
  samples).
- :func:`decode_planes` gives a 4:2:0 JPEG's own Y/Cb/Cr planes (no colour conversion) and
  :func:`encode_planes` writes them back (a C extension over libjpeg-turbo, built at install
  where a compiler is; :func:`planes_available` says whether it was).
- :func:`encode` writes jpg, png, tif and webp, with an ICC colour profile when given one;
  :func:`icc_profile` reads the profile an encoded image carries.
"""

from __future__ import annotations

from pixelmill.codecs._decode import (
    apply_orientation,
    check_channels,
    check_decode_options,
    check_pixel_limit,
    decode,
    decoder_threads,
    verify,
)
from pixelmill.codecs._encode import check_encodable, encode
from pixelmill.codecs._icc import icc_fits, icc_profile
from pixelmill.codecs._info import (
    DEFAULT_MAX_PIXELS,
    ENCODE_FORMATS,
    ImageInfo,
    format_from_name,
)
from pixelmill.codecs._planes import decode_planes, encode_planes, planes_available
from pixelmill.codecs._probe import exif_orientation, probe

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ENCODE_FORMATS",
    "ImageInfo",
    "apply_orientation",
    "check_channels",
    "check_decode_options",
    "check_encodable",
    "check_pixel_limit",
    "decode",
    "decode_planes",
    "decoder_threads",
    "encode",
    "encode_planes",
    "exif_orientation",
    "format_from_name",
    "icc_fits",
    "icc_profile",
    "planes_available",
    "probe",
    "verify",
]
