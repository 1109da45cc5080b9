"""Inventory of an image collection: ``pixelmill.scan`` (and the ``pixelmill scan`` command).

The listing happens on the driver; the files are split into small work units (batches of
file entries) that the engine maps over. A worker reads each file itself (only the first
64 KiB for a JPEG or PNG header-only scan), probes the header, and — with ``verify`` — decodes
every pixel to catch truncation a header cannot show. A bad file never stops the scan: it is a
row with ``valid = False`` and a ``reason``.

Examples
--------
>>> import numpy as np
>>> from pixelmill.images import write_image
>>> write_image("memory://scan-doc/a.png", np.zeros((4, 6, 3), np.uint8))
>>> table = scan("memory://scan-doc")  # memory:// is scanned in-process
>>> table.select(["format", "width", "height", "channels", "valid"]).to_pylist()
[{'format': 'png', 'width': 6, 'height': 4, 'channels': 3, 'valid': True}]
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pixelmill import codecs, storage
from pixelmill.engines import InlineEngine, UnitFailure, get_engine, parse_engine_spec
from pixelmill.errors import (
    DecodeError,
    InvalidParameterError,
    NoInputError,
    PixelmillError,
    StorageError,
)
from pixelmill.progress import Progress

__all__ = ["SCAN_COLUMNS", "ScanOptions", "scan", "scan_file", "scan_schema",
           "summarize"]

#: bytes read for a header-only probe of a JPEG or PNG (the rest is read only when needed)
HEAD_BYTES = 64 * 1024

#: columns of the scan manifest and their Arrow types (``sha256`` only when asked for)
SCAN_COLUMNS = (
    ("uri", "string"), ("relpath", "string"), ("bytes", "int64"), ("format", "string"), ("width", "int32"),
    ("height", "int32"), ("channels", "int32"), ("bit_depth", "int32"), ("mode", "string"),
    ("pages", "int32"), ("orientation", "int32"), ("label", "string"), ("valid", "bool"),
    ("reason", "string"), ("sha256", "string"),
)


def scan_schema(sha256: bool = True) -> Any:
    """The Arrow schema of a scan table (pyarrow is imported only on the driver)."""
    import pyarrow as pa

    return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in SCAN_COLUMNS
                      if sha256 or name != "sha256"])


def __getattr__(name: str) -> Any:
    if name == "SCAN_SCHEMA":
        return scan_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: megapixel buckets of the summary: (upper bound in pixels, name)
SIZE_BUCKETS = ((250_000, "< 0.25 MP"), (1_000_000, "0.25-1 MP"), (4_000_000, "1-4 MP"),
                (16_000_000, "4-16 MP"), (64_000_000, "16-64 MP"), (float("inf"), ">= 64 MP"))


@dataclass(frozen=True)
class ScanOptions:
    """What a worker does with each file (small and picklable)."""

    verify: bool = False
    sha256: bool = False
    max_pixels: int | None = codecs.DEFAULT_MAX_PIXELS
    label_from: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)


def _read(fs: Any, local: bool, uri: str, whole: bool, size: int | None = None
          ) -> tuple[bytes, bool]:
    """(bytes, complete): the whole file, or its head when ``whole`` is false and it is
    JPEG/PNG/TIFF.

    Remote files are read with ranged requests (one for the head), never a read-ahead block;
    an empty one (``size`` 0 in the listing, or a ranged read refused because it is empty
    now) is read whole, since object stores refuse any range of an empty object (S3: "The
    requested range is not satisfiable").
    """
    if local:
        local_path = fs._strip_protocol(uri) if "://" in uri else uri
        storage.check_regular(local_path)
        with open(local_path, "rb") as f:
            if whole:
                return f.read(), True
            head = f.read(HEAD_BYTES)
            if len(head) < HEAD_BYTES or _has_probe_signature(head):
                return head, len(head) < HEAD_BYTES
            return head + f.read(), True
    path = fs._strip_protocol(uri)
    if whole or size == 0:
        return fs.cat_file(path), True
    try:
        head = fs.cat_file(path, start=0, end=HEAD_BYTES)
    except OSError as e:
        try:
            emptied = fs.size(path) == 0  # since it was listed
        except Exception:
            raise e from None
        if not emptied:
            raise
        return fs.cat_file(path), True
    if len(head) < HEAD_BYTES or _has_probe_signature(head):
        return head, len(head) < HEAD_BYTES
    return head + fs.cat_file(path, start=HEAD_BYTES), True


def _has_probe_signature(head: bytes) -> bool:
    """JPEG and PNG headers are parsed from the first bytes alone; a TIFF's IFDs are read
    where they lie (:func:`_probe_tiff_at`), never the whole file."""
    return (head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n"
            or _is_tiff(head))


def _is_tiff(head: bytes) -> bool:
    from pixelmill.codecs._probe import TIFF_MAGIC

    return head[:4] in TIFF_MAGIC


def _probe_tiff_at(uri: str, storage_options: Mapping[str, Any]) -> Any:
    """The header of the TIFF at ``uri``, read through a file object: a header-only scan of a
    10 GB BigTIFF reads its IFDs, not 10 GB into a worker's memory."""
    from pixelmill.codecs._probe import probe_tiff_file

    with storage.open_ranged(uri, storage_options) as f:
        return probe_tiff_file(f)


def _png_chunks_cut(head: bytes) -> bool:
    """Whether the chunks before a PNG's image data go on past ``head`` (a big text or XMP
    chunk first): an ``eXIf`` (orientation) or ``tRNS`` (alpha) chunk may lie beyond it."""
    pos = 8
    while pos + 8 <= len(head):
        n, cid = struct.unpack_from(">I4s", head, pos)
        if cid == b"IDAT":
            return False
        pos += 12 + n
    return True


def _storage_reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a folder"
    if isinstance(e, FileNotFoundError):
        return "vanished or dangling link: no such file"
    return f"cannot read: {e.strerror or e}"


def scan_file(entry: storage.FileEntry, options: ScanOptions, fs: Any = None,
              local: bool | None = None) -> dict[str, Any]:
    """One manifest row for one file (never raises for a bad file)."""
    row: dict[str, Any] = {
        "uri": entry.uri, "relpath": entry.relpath, "bytes": entry.size, "format": None, "width": None, "height": None,
        "channels": None, "bit_depth": None, "mode": None, "pages": None, "orientation": None,
        "label": storage.label_from_path(entry.relpath, options.label_from), "valid": False,
        "reason": None, "sha256": None,
    }
    try:
        if local is None:
            local = "://" not in entry.uri  # listings give local files as plain paths
            if not local:
                fs, _ = storage.get_fs(entry.uri, options.storage_options)
                local = storage.is_local(fs)
        whole = options.verify or options.sha256
        data, complete = _read(fs, bool(local), entry.uri, whole, entry.size)
        row["bytes"] = len(data) if complete else entry.size
        if options.sha256:  # the file's bytes, image or not
            row["sha256"] = hashlib.sha256(data).hexdigest()
        try:
            if not complete and _is_tiff(data):
                complete = True  # what it says is final: no second, whole read
                info = _probe_tiff_at(entry.uri, options.storage_options)
            else:
                info = codecs.probe(data, whole=complete)
            if not complete and info.format == "png" and _png_chunks_cut(data):
                raise DecodeError("PNG chunks before the image data go on past the first read")
        except DecodeError:
            if complete:
                raise
            data = _read(fs, bool(local), entry.uri, True)[0]  # header beyond the first 64 KiB
            info = codecs.probe(data, whole=True)
        h, w = info.shape(apply_exif=True)[:2]
        row.update(format=info.format, width=w, height=h, channels=info.channels,
                   bit_depth=info.bit_depth, mode=info.mode, pages=info.pages,
                   orientation=info.orientation)
        codecs.check_channels(info.channels)  # more than 4: not readable, header or not
        if options.verify:
            codecs.verify(data, info, max_pixels=options.max_pixels)
        elif options.max_pixels is not None and info.pixels > options.max_pixels:
            codecs.check_pixel_limit(info, options.max_pixels)
        row["valid"] = True
    except DecodeError as e:
        row["reason"] = str(e)
    except StorageError as e:
        cause = e.__cause__
        row["reason"] = _storage_reason(cause) if isinstance(cause, OSError) else str(e)
    except OSError as e:
        row["reason"] = _storage_reason(e)
    except Exception as e:  # a decoder bug must not stop the scan: record it
        row["reason"] = f"unexpected error: {type(e).__name__}: {e}"
    return row


def _scan_unit(options: ScanOptions, entries: tuple[storage.FileEntry, ...]) -> list[dict]:
    """Work unit: scan a batch of files sharing one filesystem."""
    fs, local = None, None
    if "://" in entries[0].uri:
        try:
            fs, _ = storage.get_fs(entries[0].uri, options.storage_options)
            local = storage.is_local(fs)
        except PixelmillError:
            pass
    if not options.verify:  # header-only: OpenCV is never imported
        return [scan_file(e, options, fs, local) for e in entries]
    with codecs.decoder_threads(1):
        return [scan_file(e, options, fs, local) for e in entries]


def _failed_row(entry: storage.FileEntry, options: ScanOptions, failure: UnitFailure) -> dict:
    row = {name: None for name, _ in SCAN_COLUMNS}
    row.update(uri=entry.uri, relpath=entry.relpath, bytes=entry.size, valid=False,
               label=storage.label_from_path(entry.relpath, options.label_from),
               reason=f"{'timed out' if failure.kind == 'timeout' else 'worker crashed'}: "
                      f"{failure.reason}")
    return row


_InlineEngine = InlineEngine  # runs units in this process (memory:// stores)


def _units(entries: list[storage.FileEntry], workers: int) -> list[tuple[storage.FileEntry, ...]]:
    per_unit = max(1, min(256, len(entries) // max(1, workers * 8)))
    return [tuple(entries[i:i + per_unit]) for i in range(0, len(entries), per_unit)]


def _run_units(engine: Any, options: ScanOptions, units: list, progress: Progress) -> list[dict]:
    rows: list[dict] = []
    retry: list[storage.FileEntry] = []
    fn = functools.partial(_scan_unit, options)
    for index, result in engine.map(fn, units, batch_size=1):
        if isinstance(result, UnitFailure):
            if len(units[index]) > 1:  # find the culprit: rerun this batch one file per unit
                retry.extend(units[index])
                continue
            rows.append(_failed_row(units[index][0], options, result))
            progress.advance("failed")
            continue
        for row in result:
            progress.advance("ok" if row["valid"] else "invalid")
        rows.extend(result)
    if retry:
        rows.extend(_run_units(engine, options, [(e,) for e in retry], progress))
    return rows


def scan(
    url: str,
    *,
    recursive: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    label_from: str | None = None,
    verify: bool = False,
    sha256: bool = False,
    engine: Any = "local",
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    max_pixels: int | None = codecs.DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> Any:
    """Inventory the images under ``url``: one row per file, bad files included with a reason.

    Parameters
    ----------
    url : str
        A folder, a file or a glob on any fsspec storage (local, ``s3://``, ``memory://``, ...).
    recursive : bool
        Descend into sub-folders (Spark's ``recursiveFileLookup``).
    include, exclude : sequence of str
        Glob patterns on file names / relative paths (Spark's ``pathGlobFilter``). Without
        ``include`` only files with an image extension are listed.
    label_from : {"parent", "partition"} or None
        Fill the ``label`` column from the parent folder or from ``key=value`` path segments.
    verify : bool
        Decode every pixel (catches truncation and corrupt data a header cannot show).
    sha256 : bool
        Add a ``sha256`` column (hex digest of the file's bytes).
    engine : str or Engine
        ``"local"``, ``"dask[=addr]"``, ``"spark[=master]"``, or an open engine (left open).
        ``memory://`` URLs are scanned in this process (the store is not shared).
    workers : int or None
        Workers for an engine created here (default: CPU cores).
    storage_options : mapping
        Passed to the fsspec filesystem.
    max_pixels : int or None
        Files whose header claims more pixels are invalid (decompression-bomb guard).
    progress : bool
        Draw a progress bar on a terminal.

    Returns
    -------
    pyarrow.Table
        Columns of :data:`SCAN_COLUMNS` (``sha256`` only with ``sha256=True``), sorted by URI.
        ``width``/``height`` are as :func:`pixelmill.read_image` returns them (EXIF applied).

    Raises
    ------
    UsageError
        A bad argument or an unknown protocol (before any work).
    StorageError
        ``url`` does not exist or cannot be listed.
    NoInputError
        ``url`` holds no image files.
    """
    storage.label_from_path("", label_from)  # validate before any work
    if isinstance(engine, str):  # a bad --engine is a usage error (exit 2), before any listing
        parse_engine_spec(engine)
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        raise InvalidParameterError(f"max_pixels: expected an integer >= 1, got {max_pixels!r}",
                                    field="max_pixels")
    so = dict(storage_options or {})
    unlisted: list[storage.FileEntry] = []  # sub-folders that could not be listed
    entries = storage.list_files(url, recursive=recursive, include=include, exclude=exclude,
                                 storage_options=so, unlisted=unlisted)
    if not entries and not unlisted:
        others = len(storage.list_files(url, recursive=recursive, exclude=exclude,
                                        storage_options=so, images_only=False))
        deeper = 0 if others or recursive else len(storage.list_files(
            url, recursive=True, include=include, exclude=exclude, storage_options=so,
            unlisted=[]))
        hint = (f" ({others} other files; --glob selects other names)" if others
                else f" ({deeper} in sub-folders, not searched: --recursive)" if deeper
                else _empty_hint(url, so))
        raise NoInputError(f"{url}: no image files found{hint}")
    options = ScanOptions(verify, sha256, max_pixels, label_from, so)
    fs, _ = storage.get_fs(url, so)
    if storage.protocol(fs) == "memory":  # a process-local store: workers could not see it
        engine = _InlineEngine()
    own = isinstance(engine, str)
    eng = get_engine(engine, workers) if own else engine
    try:
        with Progress(len(entries), what="files", enabled=progress) as bar:
            rows = _run_units(eng, options, _units(entries, eng.workers), bar) if entries else []
    finally:
        if own:
            eng.close()
    for folder in unlisted:  # its files are unknown: one invalid row says so (exit 3)
        row = {name: None for name, _ in SCAN_COLUMNS}
        row.update(uri=folder.uri, relpath=folder.relpath, bytes=0, valid=False,
                   reason=folder.reason)
        rows.append(row)
    rows = [_utf8_row(row) for row in rows]
    rows.sort(key=lambda r: r["uri"])
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=scan_schema(sha256))


def _empty_hint(url: str, storage_options: Mapping[str, Any]) -> str:
    """Why nothing was found at ``url``: a glob that matches nothing is not an empty folder."""
    fs, root = storage.get_fs(url if "://" in url else os.path.abspath(url), storage_options)
    try:
        if fs.isdir(root):
            return " (the folder is empty)"
    except Exception:  # the listing that found nothing has already reached the store
        pass
    if any(ch in root for ch in "*?["):
        return " (nothing matches the pattern)"
    return ""


#: the reason of a file whose name is not UTF-8 (the manifest stores names as UTF-8)
NOT_UTF8_REASON = storage.NOT_UTF8_REASON


def _utf8_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row Arrow can store: a file whose name (or folder's name) is not UTF-8 made one
    ``valid = False`` row with the name escaped, instead of failing the whole scan."""
    bad = False
    for key, value in row.items():
        if isinstance(value, str) and not storage.is_utf8(value):
            row[key] = storage.utf8_name(value)
            bad = bad or key in ("uri", "relpath", "label")
    if bad:
        row.update(valid=False, reason=NOT_UTF8_REASON)
    return row


def _bucket(pixels: int | None) -> str:
    if pixels is None:
        return "unknown"
    return next(name for bound, name in SIZE_BUCKETS if pixels < bound)


def _reason_group(reason: str) -> str:
    return reason.split(" (")[0].split(": ")[0]


def summarize(table: Any, examples: int = 3) -> dict[str, Any]:
    """Counts of a scan table: by label, format, size bucket; invalid files grouped by reason."""
    rows = table.to_pylist()
    valid = [r for r in rows if r["valid"]]
    invalid = [r for r in rows if not r["valid"]]
    reasons: dict[str, dict[str, Any]] = {}
    for r in invalid:
        group = reasons.setdefault(_reason_group(r["reason"] or "unknown"),
                                   {"count": 0, "examples": []})
        group["count"] += 1
        if len(group["examples"]) < examples:
            group["examples"].append({"uri": r["uri"], "reason": r["reason"]})
    size_order = [name for _, name in SIZE_BUCKETS]
    by_size = Counter(_bucket(r["width"] * r["height"]) for r in valid)
    out: dict[str, Any] = {
        "files": len(rows), "valid": len(valid), "invalid": len(invalid),
        "bytes": sum(r["bytes"] or 0 for r in rows),
        "by_format": dict(Counter(r["format"] for r in valid).most_common()),
        "by_size": {k: by_size[k] for k in size_order if by_size[k]},
        "invalid_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1]["count"])),
    }
    if "label" in table.column_names and any(r["label"] is not None for r in rows):
        out["by_label"] = dict(sorted(Counter(r["label"] for r in valid).items(),
                                      key=lambda kv: (kv[0] is None, str(kv[0]))))
    return out
