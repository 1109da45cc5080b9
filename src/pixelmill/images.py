"""Read and write images at storage URLs (the I/O half; decoding lives in :mod:`pixelmill.codecs`).

Examples
--------
>>> import numpy as np
>>> write_image("memory://doc/gray.png", np.arange(12, dtype=np.uint8).reshape(3, 4))
>>> read_image("memory://doc/gray.png").shape
(3, 4)
>>> [item.uri for item in iter_images("memory://doc")]
['memory://doc/gray.png']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from pixelmill import codecs, storage
from pixelmill.errors import DecodeError, InvalidParameterError, StorageError

__all__ = ["LoadedImage", "check_output", "iter_images", "read_image", "write_image"]


class LoadedImage(NamedTuple):
    """One image from :func:`iter_images`: where it came from, its pixels, its label."""

    uri: str
    image: np.ndarray
    label: str | None = None


def read_image(
    uri: str | bytes | IO[bytes], *, storage_options: Mapping[str, Any] | None = None,
    **decode_kw: Any
) -> np.ndarray:
    """Read and decode the image at ``uri`` (any fsspec URL or local path; also the encoded
    file itself as ``bytes``, or an open binary file object).

    ``decode_kw`` are :func:`pixelmill.codecs.decode`'s options: ``page``, ``apply_exif``,
    ``max_pixels``, ``reduce``. Raises :class:`~pixelmill.errors.StorageError` when the file
    cannot be read, :class:`~pixelmill.errors.DecodeError` when it is not a readable image,
    :class:`~pixelmill.errors.InvalidParameterError` when it has no such ``page`` (these three
    messages start with the URI) or an option is out of range.
    """
    if isinstance(uri, bytes | bytearray | memoryview):
        data, uri = bytes(uri), "<bytes>"
    elif hasattr(uri, "read"):
        data, uri = uri.read(), str(getattr(uri, "name", "<file object>"))
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidParameterError(f"{uri}: open the file in binary mode ('rb')",
                                        field="uri")
        data = bytes(data)
    else:
        data = storage.read_bytes(uri, storage_options)
    try:
        return codecs.decode(data, **decode_kw)
    except DecodeError as e:
        raise type(e)(f"{uri}: {e}") from e
    except InvalidParameterError as e:
        if e.field != "page":  # a bad option, whatever the file
            raise
        raise InvalidParameterError(f"{uri}: {e}", field=e.field) from e


def check_output(
    uri: str,
    shape: tuple[int, ...] | None = None,
    dtype: Any = None,
    *,
    format: str | None = None,
    quality: int | None = None,
) -> str:
    """Check, before computing it, that an image can be written to ``uri``: the format its
    extension names (or ``format``) is writable and, given ``shape`` and ``dtype``, can hold
    such an array. Raises :class:`~pixelmill.errors.InvalidParameterError`; returns the format.
    """
    fmt = format or codecs.format_from_name(uri)
    fmt = {"jpeg": "jpg", "tiff": "tif"}.get(fmt.lower().lstrip("."), fmt.lower().lstrip("."))
    if fmt not in codecs.ENCODE_FORMATS:
        raise InvalidParameterError(
            f"format: cannot write {format or fmt} (writable: "
            f"{', '.join(codecs.ENCODE_FORMATS)})", field="format")
    if shape is not None:
        fmt = codecs.check_encodable(tuple(shape), dtype, fmt, quality=quality)
    return fmt


def write_image(
    uri: str,
    image: np.ndarray,
    *,
    format: str | None = None,
    quality: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    icc_profile: bytes | None = None,
) -> None:
    """Encode ``image`` and write it atomically to ``uri``.

    ``format`` defaults to the one ``uri``'s extension names (jpg, png, tif, webp).
    ``icc_profile``: the colour profile the values are in, embedded in the file (e.g.
    ``pixelmill.codecs.icc_profile(data)`` of the file they came from).
    """
    fmt = check_output(uri, format=format)
    storage.write_atomic(uri, codecs.encode(image, fmt, quality=quality, icc_profile=icc_profile),
                         storage_options)


def iter_images(
    url: str,
    *,
    recursive: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    label_from: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    on_error: str = "skip",
    **decode_kw: Any,
) -> Iterator[LoadedImage]:
    """Decode every image under ``url``, one at a time, in URI order.

    Parameters
    ----------
    url : str
        A folder, a single file or a glob, on any fsspec storage.
    recursive, include, exclude, label_from, storage_options
        As for :func:`pixelmill.scan`.
    on_error : {"skip", "raise"}
        What to do with a file that cannot be read or decoded, or has no such ``page``
        (``pixelmill.scan`` lists them with their reasons).
    **decode_kw
        Passed to :func:`pixelmill.codecs.decode`.
    """
    if on_error not in ("skip", "raise"):
        raise InvalidParameterError(f"on_error: expected 'skip' or 'raise', got {on_error!r}",
                                    field="on_error")
    storage.label_from_path("", label_from)  # validate before listing
    try:  # an option wrong for every file fails here, not as a skip of each file
        codecs.check_decode_options(**decode_kw)
    except TypeError as e:  # an option decode does not have
        raise InvalidParameterError(f"decode options: {e}", field="options") from None
    for entry in storage.list_files(url, recursive=recursive, include=include, exclude=exclude,
                                    storage_options=storage_options):
        try:
            image = read_image(entry.uri, storage_options=storage_options, **decode_kw)
        except (DecodeError, StorageError, InvalidParameterError) as e:
            if on_error == "raise" or (isinstance(e, InvalidParameterError)
                                       and e.field != "page"):  # a bad option: every file's
                raise
            continue
        yield LoadedImage(entry.uri, image, storage.label_from_path(entry.relpath, label_from))
