"""Storage on fsspec URLs: listing with glob filters and labels, reading, atomic writes.

Any fsspec URL works: local paths, ``file://``, ``memory://``, ``s3://`` (s3fs), ``hdfs://`` /
``webhdfs://`` when a client is installed. ``storage_options`` (the CLI's
``--storage-option KEY=VALUE``) reach the filesystem constructor unchanged.

Workers receive URIs (plain strings) plus storage options and open files themselves; no open
handle ever crosses a process boundary.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pixelmill.errors import (
    InvalidParameterError,
    MissingDependencyError,
    StorageError,
    UsageError,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "FileEntry",
    "exists",
    "get_fs",
    "human_size",
    "is_local",
    "join",
    "label_from_path",
    "list_files",
    "parse_storage_options",
    "protocol",
    "read_bytes",
    "write_atomic",
]

#: extensions considered images when listing (case-insensitive)
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".bmp", ".dib", ".webp",
    ".gif", ".ppm", ".pgm", ".pbm", ".pnm",
)

_PROTOCOL_EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"),
                    "hdfs": ("pyarrow (with libhdfs)", "hdfs"), "webhdfs": ("requests", "hdfs")}


@dataclass(frozen=True)
class FileEntry:
    """One listed file: its full URI, size in bytes and path relative to the listed root.

    A folder that could not be listed (``list_files(..., unlisted=[])``) is an entry too, with
    its ``reason`` (``cannot list folder: Permission denied``): its files are unknown."""

    uri: str
    size: int
    relpath: str
    reason: str | None = None


def parse_storage_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """Turn ``["key=value", ...]`` into a dict (values parsed as JSON scalars when they are)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option: expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def check_writable(uri: str, storage_options: Mapping[str, Any] | None = None, *,
                   field: str = "OUTPUT") -> None:
    """Say before any work when nothing can be written under ``uri``: a local folder whose
    nearest existing parent is not a writable folder, or a bucket that does not exist."""
    fs, path = get_fs(uri, storage_options)
    try:
        if is_local(fs):
            parent = os.path.abspath(path)
            if os.path.isfile(parent):  # a file an earlier run wrote: its folder takes the new
                parent = os.path.dirname(parent)
            while not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
                raise StorageError(f"{field}: {uri}: cannot write under {parent}")
        elif protocol(fs) not in ("memory",):
            bucket = path.strip("/").split("/", 1)[0]
            if bucket and not fs.exists(bucket):
                # s3fs also answers False for a bucket it could not ask (a --storage-option the
                # client does not take, no endpoint): a listing says why, or that it is missing
                with contextlib.suppress(FileNotFoundError):
                    fs.ls(bucket, detail=False)
                raise StorageError(f"{field}: {uri}: the bucket {bucket!r} does not exist")
    except StorageError:
        raise
    except Exception as e:  # unreachable endpoint, refused credentials, a wrong option ...
        raise remote_error(uri, e, "cannot reach", field=field) from e


def exists(uri: str, storage_options: Mapping[str, Any] | None = None, *,
           field: str | None = None) -> bool:
    """Whether ``uri`` exists; a store that cannot be asked (unreachable endpoint, refused
    credentials) is a :class:`StorageError` naming ``uri``, not the client's own exception."""
    fs, path = get_fs(uri, storage_options)
    try:
        return bool(fs.exists(path))
    except Exception as e:
        raise remote_error(uri, e, "cannot reach", field=field) from e


def absolute(uri: str) -> str:
    """A local path made absolute (URLs are returned as they are): workers of a cluster run in
    other folders, so a relative path would name another place there. A local ``file://``
    (or ``local://``) URL becomes the plain absolute path it names, so that both spellings of
    one folder are the same output (``--resume`` compares the output paths)."""
    uri = os.fspath(uri)
    if uri.startswith(("file://", "local://")):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem._strip_protocol(uri)  # the path fsspec itself would open
    return uri if "://" in uri else os.path.abspath(uri)


def remote_error(uri: str, e: BaseException, what: str = "cannot read", *,
                 field: str | None = None) -> Exception:
    """The error to raise for ``e``, raised by a remote filesystem's client on ``uri``: a
    ``--storage-option`` the client does not take is a usage error naming it (exit 2), the
    rest a :class:`StorageError` (exit 1) in one line (starting with ``field``, the argument
    that named ``uri``, when given). Every storage entry point maps its client's errors here,
    so the same bad option gives the same message wherever the URL is (INPUT, OUTPUT,
    ``--manifest``)."""
    import re

    bad = re.search(r"unexpected keyword argument '([^']+)'", str(e))
    if isinstance(e, TypeError) and bad:
        return InvalidParameterError(
            f"--storage-option: {bad.group(1)!r} is not an option of the filesystem of {uri}",
            field="storage_option")
    where = f"{field}: " if field else ""
    return StorageError(f"{where}{uri}: {what}: {type(e).__name__}: {e}")


def _raise_if_bad_option(uri: str, e: Exception) -> None:
    """Raise the usage error of :func:`remote_error` when ``e`` is a ``--storage-option`` the
    client does not take; other errors are left to the caller (a worker makes a row of them)."""
    err = remote_error(uri, e)
    if isinstance(err, InvalidParameterError):
        raise err from e


def printable(text: str) -> str:
    """``text`` for a terminal line: control characters (newline, escape, ...) written as
    escapes, so a file name cannot forge or recolour lines of a summary."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def human_size(n: float) -> str:
    """Bytes for a message: ``1.5 GiB``, ``312 MiB``, ``4.2 MiB``, ``12 KiB``, ``900 bytes``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 or unit == "GiB" else f"{value:.0f} {unit}"
    return f"{int(n)} bytes"


def same_location(a: str, b: str) -> bool:
    """Whether two URIs name the same file or folder: local paths (plain or ``file://``)
    compared after resolving links and ``..``, URLs as written (less a trailing ``/``)."""
    a, b = absolute(a), absolute(b)
    if "://" not in a and "://" not in b:
        return os.path.realpath(a) == os.path.realpath(b)
    return a.rstrip("/") == b.rstrip("/")


def within(uri: str, folder: str) -> bool:
    """Whether ``uri`` is ``folder`` or lies inside it: local paths compared after resolving
    links and ``..``, URLs as written."""
    a, b = absolute(uri), absolute(folder)
    if "://" not in a and "://" not in b:
        a, b = os.path.realpath(a), os.path.realpath(b)
    b = b.rstrip("/") or "/"
    return a.rstrip("/") == b or a.startswith(b.rstrip("/") + "/")


def get_fs(url: str, storage_options: Mapping[str, Any] | None = None):
    """``(filesystem, path)`` for a URL; unknown protocols and missing clients fail clearly."""
    from fsspec.core import url_to_fs  # imported here: workers reading local files skip it

    url = os.fspath(url)
    try:
        if "::" in url and not _is_chained(url):
            return _single_fs(url, storage_options)
        return url_to_fs(url, **dict(storage_options or {}))
    except ValueError as e:
        if "Protocol not known" in str(e) or "not known" in str(e):
            import fsspec

            proto = url.split("://", 1)[0]
            known = ", ".join(sorted(p for p in fsspec.available_protocols() if len(p) > 1)[:30])
            raise UsageError(f"{url}: unknown storage protocol {proto!r} (known: {known}, ...)") from e
        raise StorageError(f"{url}: {e}") from e
    except ImportError as e:
        proto = url.split("://", 1)[0]
        pkg, extra = _PROTOCOL_EXTRAS.get(proto, (str(e.name or proto), proto))
        raise MissingDependencyError(pkg, extra, f"{proto}:// URLs") from e


def _is_chained(url: str) -> bool:
    """Whether ``::`` in ``url`` joins an fsspec chain (``simplecache::s3://b/k``,
    ``zip://a.jpg::s3://b/z.zip``: the first part a wrapping filesystem) rather than being
    part of a file name (``s3://b/a::b.jpg``, ``/data/12::30.jpg``), which fsspec would cut
    there and read another file (``/data/12``) or fail on."""
    first = url.split("::", 1)[0]
    if "://" not in first:
        from fsspec.registry import available_protocols

        return first in available_protocols()
    from fsspec.registry import get_filesystem_class

    try:
        cls = get_filesystem_class(first.split("://", 1)[0])
    except Exception:  # unknown protocol, client missing: fsspec's own error says which
        return True
    try:
        from fsspec.implementations.chained import ChainedFileSystem

        if issubclass(cls, ChainedFileSystem):  # the caches, dir://
            return True
    except ImportError:  # an fsspec without it: the signature says
        pass
    import inspect

    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return True
    return "fo" in params or "target_protocol" in params  # archives, reference, dir ...


def _single_fs(url: str, storage_options: Mapping[str, Any] | None):
    """``(filesystem, path)`` for a URL of one filesystem, as ``url_to_fs`` makes them for a
    URL without ``::``."""
    import fsspec
    from fsspec.core import split_protocol
    from fsspec.registry import get_filesystem_class

    proto = split_protocol(url)[0] or "file"
    cls = get_filesystem_class(proto)
    options = {**cls._get_kwargs_from_urls(url), **dict(storage_options or {})}
    path = cls._strip_protocol(url)
    if proto == "memory" and not path.startswith("/"):  # its strip keeps a "::" path relative
        path = "/" + path
    return fsspec.filesystem(proto, **options), path


def protocol(fs) -> str:
    """The main protocol name of a filesystem (``file``, ``s3``, ``memory``, ...)."""
    proto = fs.protocol
    return proto[0] if isinstance(proto, tuple | list) else proto


def is_local(fs) -> bool:
    """Whether ``fs`` is the local filesystem (plain paths, ``os`` calls work)."""
    return protocol(fs) in ("file", "local")


_is_local = is_local  # older name, used by other modules
_protocol = protocol


def _unstrip(fs, path: str, original_url: str) -> str:
    """A full URI for a path returned by ``fs`` (local paths stay plain paths)."""
    if _is_local(fs):
        return path
    if protocol(fs) == "memory":  # keep the form users write: memory://folder/file
        return "memory://" + path.lstrip("/")
    return fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    """Join URL path segments with ``/`` (local paths with the OS separator)."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def _matches(relpath: str, patterns: Sequence[str]) -> bool:
    name = posixpath.basename(relpath)
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relpath, p) for p in patterns)


def _could_include_under(folder: str, patterns: Sequence[str]) -> bool:
    """Whether a file somewhere under ``folder`` (relative path) could match an include pattern.

    A pattern without ``/`` may match any file's name; one with ``/`` matches only the relative
    path, so it can match under ``folder`` only if its literal start (up to the first wildcard)
    and ``folder/`` agree as far as both go (`cats/*` never matches under `dogs/`).
    """
    under = folder.rstrip("/") + "/"
    for p in patterns:
        if "/" not in p:
            return True
        cut = min((i for i in (p.find(c) for c in "*?[") if i >= 0), default=len(p))
        literal = p[:cut]
        if under.startswith(literal) or literal.startswith(under):
            return True
    return False


#: how the ``reason`` of a sub-folder that could not be listed begins (its failed row's)
UNLISTED_REASON = "cannot list folder"


#: the reason of an input whose name is not UTF-8 (manifests store names as UTF-8 text)
NOT_UTF8_REASON = "file name is not valid UTF-8 (\\x escapes show its bytes): rename it"


def is_utf8(text: str) -> bool:
    """Whether a path from the OS can be stored as UTF-8 text (its undecodable bytes come back
    as lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_name(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (lone surrogates, as ``os`` returns
    them) written as ``\\xNN`` escapes, so that Arrow can store it."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _walk_local(root: str, recursive: bool,
                unlisted: dict[str, str] | None = None) -> dict[str, int]:
    """``{path: size}`` of the files under a local folder (os.scandir: one stat each).

    Links to folders are followed, as ``find -L`` does (``data/cats -> /mnt/disk2/cats`` is
    part of the collection), except a link back to a folder the walk is already inside (a
    loop); files under a link keep the link's path. Links that cannot be resolved (dangling,
    loops) are listed with size 0 so that reading them reports why. A sub-folder that cannot
    be listed is added to ``unlisted`` (path -> reason): its files must not vanish unseen.
    """
    items: dict[str, int] = {}

    def identity(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    stack: list[tuple[str, frozenset]] = [(root, frozenset({identity(root)}))]
    while stack:
        folder, inside = stack.pop()
        try:
            scanner = os.scandir(folder)
        except OSError as e:
            if folder == root:
                raise
            if unlisted is not None:
                unlisted[folder] = f"{UNLISTED_REASON}: {e.strerror or e}"
            continue
        with scanner:
            for entry in scanner:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not recursive:
                        continue
                    if entry.is_symlink():
                        key = identity(entry.path)
                        if key is None or key in inside:  # a loop: not followed
                            continue
                    else:
                        st = entry.stat(follow_symlinks=False)
                        key = (st.st_dev, st.st_ino)
                    stack.append((entry.path, inside | {key}))
                    continue
                try:
                    size = entry.stat().st_size
                except OSError:
                    size = 0
                items[entry.path] = size
    return items


def _sizes(listing: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]]
           ) -> dict[str, int]:
    """``{path: size}`` of the files of an fsspec ``detail=True`` listing (a dict, or the list
    ``ls`` gives). Folders are left out, and so are object-store folder markers (keys ending in
    ``/``, which consoles and tools make for "folders"; no file is named so): ``x.jpg/`` is
    not a second ``x.jpg``. From a list, a folder never hides a file of the same name (an
    object ``x.jpg`` and a folder ``x.jpg/``)."""
    infos = listing.values() if isinstance(listing, Mapping) else listing
    return {d["name"]: int(d.get("size") or 0) for d in infos
            if d.get("type") != "directory" and not d["name"].endswith("/")}


def _find_remote(fs, root: str, recursive: bool = True) -> dict[str, int]:
    """``{path: size}`` of every object under a remote folder (directly in it, without
    ``recursive``).

    On S3 the listing is read a page (1,000 keys) at a time and only names and sizes are
    kept: ``fs.find`` holds every object's full description at once (~2 KB each, 2 GB for a
    bucket of a million photos) and leaves them in the client's listings cache for the life of
    the process. Other stores go through ``fs.find``; :func:`_forget_listings` then drops what
    it cached.
    """
    iterdir = getattr(fs, "_iterdir", None)
    if protocol(fs) in ("s3", "s3a") and iterdir is not None and not getattr(
            fs, "version_aware", True):
        from fsspec.asyn import sync

        bucket, key, _ = fs.split_path(root)
        prefix = key.strip("/") + "/" if key.strip("/") else ""

        async def pages() -> dict[str, int]:
            found: dict[str, int] = {}
            async for info in iterdir(bucket, delimiter="" if recursive else "/",
                                      prefix=prefix):
                if info.get("type") != "directory" and not info["name"].endswith("/"):
                    found[info["name"]] = int(info.get("size") or 0)  # not a folder marker
            return found

        return sync(fs.loop, pages)
    if not recursive:
        return _sizes(fs.ls(root, detail=True))
    return _sizes(fs.find(root, detail=True, withdirs=False))


def _glob_remote(fs, pattern: str, base: str) -> dict[str, int]:
    """``{path: size}`` of the objects matching a glob ``pattern`` (fsspec's glob syntax:
    ``*`` within one folder, ``**`` across folders) under the folder ``base``: one flat
    listing of ``base`` (:func:`_find_remote`; recursive only for a pattern that reaches
    below it), matched here. ``fs.glob`` keys its answer by
    name, so a folder ``x.jpg/`` hid the object ``x.jpg``, and folder markers were files."""
    import re

    from fsspec.utils import glob_translate

    regex = re.compile(glob_translate(pattern))
    # a pattern within one folder (`set/*.jpg`) lists that folder alone: a recursive listing
    # of `s3://bucket/*.jpg` would read every key of the bucket to find a few at its top
    rest = pattern[len(base):].lstrip("/")
    try:
        items = _find_remote(fs, base, recursive="/" in rest or "**" in rest)
    except FileNotFoundError:
        items = {}
    return {p: n for p, n in items.items() if regex.match(p)}


def _forget_listings(fs, base: str) -> None:
    """Drop the listings ``fs`` cached under ``base`` (fsspec keeps them while the process
    lives: one description per object listed, gigabytes for millions of objects)."""
    cache = getattr(fs, "dircache", None)
    if cache is None or is_local(fs):
        return
    with contextlib.suppress(Exception):
        base = base.rstrip("/")
        for key in [k for k in list(cache) if k == base or k.startswith(base + "/")]:
            cache.pop(key, None)


def _also_folder(fs, root: str) -> bool:
    """Whether the object ``root`` has a folder of the same name (``set`` and ``set/...``)."""
    try:
        return bool(fs.isdir(root))
    except Exception:
        return False


def list_files(
    url: str,
    *,
    recursive: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    images_only: bool = True,
    unlisted: list[FileEntry] | None = None,
) -> list[FileEntry]:
    """List files under ``url`` (a folder, a single file or a glob), sorted by URI.

    ``include``/``exclude`` are glob patterns matched against the file name and against the
    path relative to ``url`` (Spark's ``pathGlobFilter``); ``recursive`` descends into
    sub-folders (Spark's ``recursiveFileLookup``). Without ``include``, only files with an
    image extension are listed when ``images_only``.

    A local sub-folder that cannot be listed (permissions) is appended to ``unlisted`` as a
    :class:`FileEntry` with a ``reason``, so the caller can account for it (a failed row);
    without ``unlisted`` it is a warning on stderr.
    """
    folders: dict[str, str] = {}
    if "://" not in url:  # `../photos` and `/abs/photos` list the same URIs (resume keys)
        url = os.path.abspath(url)
    fs, root = get_fs(url, storage_options)
    base = root.rstrip("/")
    remote = not is_local(fs)
    try:
        # on an object store, `s3://b/set/` names the folder even beside an object `set`
        folder_first = remote and url.endswith("/")
        if fs.isfile(root) and not (folder_first and _also_folder(fs, root)):
            if remote and not folder_first and _also_folder(fs, root):
                print(f"warning: {printable(url)} is an object and a folder of the same name: "
                      f"the object is listed; write {printable(url)}/ for the folder",
                      file=sys.stderr)
            info = fs.info(root)
            return [FileEntry(_unstrip(fs, root, url), int(info.get("size") or 0),
                              posixpath.basename(root))]
        if not fs.isdir(root):
            if any(ch in root for ch in "*?["):
                first = min(i for i in (root.find(c) for c in "*?[") if i >= 0)
                base = root[:first].rsplit("/", 1)[0]
                if remote and base:
                    items = _glob_remote(fs, root, base)
                else:
                    found = fs.glob(root, detail=True)
                    items = _sizes(found)
                    del found
            elif is_local(fs) and os.path.lexists(root):
                # a pipe, a device, a broken or looping link: one input, whose row says what
                return [FileEntry(_unstrip(fs, root, url), 0, posixpath.basename(root))]
            else:
                raise StorageError(f"{url}: no such file or folder")
        elif is_local(fs):
            items = _walk_local(root, recursive, folders)
        else:
            items = _find_remote(fs, root, recursive)
    except StorageError:
        raise
    except (FileNotFoundError, NotADirectoryError) as e:
        raise StorageError(f"{url}: no such file or folder") from e
    except OSError as e:
        raise StorageError(f"{url}: cannot list: {e}") from e
    except Exception as e:  # object-store clients raise their own (botocore: no endpoint)
        if is_local(fs):
            raise
        raise remote_error(url, e, "cannot list") from e
    finally:
        _forget_listings(fs, base)
    entries = []
    for path, size in items.items():
        path = path.rstrip("/")
        rel = path[len(base):].lstrip("/") if path.startswith(base) else posixpath.basename(path)
        if include:
            if not _matches(rel, include):
                continue
        elif images_only and not rel.lower().endswith(IMAGE_EXTENSIONS):
            continue
        if exclude and _matches(rel, exclude):
            continue
        entries.append(FileEntry(_unstrip(fs, path, url), size, rel))
    del items
    entries.sort(key=lambda e: e.uri)
    for path, reason in sorted(folders.items()):
        rel = path[len(base):].lstrip("/" + os.sep)
        if exclude and _matches(f"{rel}/*", exclude):
            continue  # an exclude pattern covers any file under it (`secret/*`): none is lost
        if include and not _could_include_under(rel, include):
            continue  # no include pattern can match a file under it (`cats/*`, `dogs/`)
        if unlisted is not None:
            unlisted.append(FileEntry(_unstrip(fs, path, url), 0, rel, reason))
        else:
            print(f"warning: {path}: {reason}; its files are left out", file=sys.stderr)
    return entries


def label_from_path(relpath: str, mode: str | None) -> str | None:
    """A label for a file from its path: the parent folder's name, or ``key=value`` segments.

    ``mode="parent"``: ``cats/001.jpg`` -> ``cats``. ``mode="partition"``: the value of the
    last ``label=...`` segment, else of the last ``key=value`` segment (Spark's partition
    discovery): ``label=cats/day=1/001.jpg`` -> ``cats``.
    """
    if not mode:
        return None
    parts = relpath.split("/")[:-1]  # listings separate with "/"; "\\" is a name character
    if mode == "parent":
        return parts[-1] if parts else None
    if mode == "partition":
        pairs = [p.split("=", 1) for p in parts if "=" in p]
        for key, value in reversed(pairs):
            if key == "label":
                return value
        return pairs[-1][1] if pairs else None
    raise UsageError(f"--label-from: expected 'parent' or 'partition', got {mode!r}")


def check_regular(path: str, uri: str | None = None) -> None:
    """Refuse a local "file" that is a device, pipe or socket with a
    :class:`~pixelmill.errors.DecodeError`, before opening it (``x.jpg -> /dev/zero`` would be
    read until memory runs out; opening a named pipe waits for a writer forever)."""
    import stat

    from pixelmill.errors import DecodeError

    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing or unreadable: the open that follows says so
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a folder: open() says so
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device"
                if stat.S_ISBLK(mode) else "a named pipe" if stat.S_ISFIFO(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "an unknown kind")
        raise DecodeError(f"{uri + ': ' if uri else ''}not a regular file ({kind})")


def open_ranged(uri: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """A seekable binary file object over ``uri`` that reads only what is asked for (ranged
    requests of 64 KiB on object stores): a TIFF's IFDs without the pixels around them."""
    if "://" not in uri and not storage_options:
        check_regular(uri)
        return open(uri, "rb")
    fs, path = get_fs(uri, storage_options)
    if _is_local(fs):
        check_regular(path, uri)
        return open(path, "rb")
    return fs.open(path, "rb", block_size=1 << 16)


def read_bytes(uri: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole content of one file (a device, pipe or socket is a DecodeError)."""
    fs, path = get_fs(uri, storage_options)
    if _is_local(fs):
        check_regular(path, uri)
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e
    except PermissionError as e:
        raise StorageError(f"{uri}: permission denied") from e
    except IsADirectoryError as e:
        raise StorageError(f"{uri}: is a folder") from e
    except OSError as e:
        raise StorageError(f"{uri}: cannot read: {e}") from e
    except Exception as e:
        _raise_if_bad_option(uri, e)
        raise


def read_arrow_buffer(uri: str, storage_options: Mapping[str, Any] | None = None):
    """The file at ``uri`` as a ``pyarrow.BufferReader`` over memory Arrow owns (freed without
    the GIL on any thread; see :func:`read_parquet` for why that matters)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(read_bytes(uri, storage_options))
    return pa.BufferReader(sink.getvalue())


def read_parquet(uri: str, storage_options: Mapping[str, Any] | None = None, *,
                 schema_only: bool = False):
    """The Parquet file at ``uri`` (any URL) as a ``pyarrow.Table`` (or only its schema).

    The bytes are copied into memory that Arrow owns before pyarrow reads them: given Python
    memory (``io.BytesIO``, or ``bytes`` in a ``pa.BufferReader``), the reader's last
    reference may be dropped by one of pyarrow's threads after this call returns, and if that
    happens while the interpreter exits, the thread needs the GIL and aborts the process
    ("terminate called without an active exception", exit 134: with torch imported, 3 of 6
    ``pixelmill upscale --resume`` runs did, pyarrow 26). Decoded on the calling thread. A
    file that is not Parquet is a :class:`UsageError`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = read_arrow_buffer(uri, storage_options)
    try:
        if schema_only:
            return pq.read_schema(data)
        return pq.read_table(data, use_threads=False)
    except pa.ArrowException as e:
        raise UsageError(f"{uri}: not a Parquet file ({e})") from e


def ordinary_file_mode(path: str | os.PathLike) -> None:
    """Give a file made through a private temporary (``mkstemp``, safetensors: mode 0600) the
    mode an ordinary ``open(path, "w")`` would have: 0666 less the process's umask."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask can only set it)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: bytes of a file name that the temporary name of :func:`write_atomic` keeps: the dot before
#: it and ``.<32 hex>.tmp`` after it take 38 of the 255 bytes most local filesystems allow
_TMP_STEM_BYTES = 255 - 38


def _tmp_stem(name: str) -> str:
    """``name`` cut to fit a temporary name: a name of 218-255 bytes (an object key's long
    last segment) can be written, but ``.NAME.<hex>.tmp`` could not."""
    if len(name) * 4 <= _TMP_STEM_BYTES:  # short enough whatever its characters
        return name
    name = name[:_TMP_STEM_BYTES]  # a character is at least one byte
    while len(os.fsencode(name)) > _TMP_STEM_BYTES:
        name = name[:-1]
    return name


#: local folders this process has made (or found) for :func:`write_atomic`
_MADE_FOLDERS: set[str] = set()


def write_atomic(uri: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` so that readers see the old file, or the whole new one, never a part.

    Local files: a temporary name in the same folder, then ``os.replace`` (atomic against a
    killed process; not fsynced, so not against a power cut). Object stores (and other remote
    filesystems): one whole-object put, which they make visible atomically.
    """
    if "://" not in uri and not storage_options:  # a plain local path: no fsspec lookup
        fs, path = None, uri
    else:
        fs, path = get_fs(uri, storage_options)
    try:
        if fs is None or _is_local(fs):
            folder = os.path.dirname(path) or "."
            if folder not in _MADE_FOLDERS:  # one mkdir per folder and process, not per file
                os.makedirs(folder, exist_ok=True)
                _MADE_FOLDERS.add(folder)
            stem = _tmp_stem(os.path.basename(path))
            tmp = os.path.join(folder, f".{stem}.{uuid.uuid4().hex}.tmp")
            try:
                try:
                    f = open(tmp, "wb")  # noqa: SIM115 - closed by the with below
                except FileNotFoundError:  # the folder was removed since: make it again
                    os.makedirs(folder, exist_ok=True)
                    f = open(tmp, "wb")  # noqa: SIM115
                with f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        else:
            parent = posixpath.dirname(path)
            if parent and protocol(fs) == "memory":
                fs.makedirs(parent, exist_ok=True)
            fs.pipe_file(path, data)
    except OSError as e:
        raise StorageError(f"{uri}: cannot write: {e}") from e
    except Exception as e:
        _raise_if_bad_option(uri, e)
        raise
