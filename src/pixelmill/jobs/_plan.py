"""Planning a job: inputs (a URL listing or a scan manifest) to small picklable work units.

A :class:`WorkUnit` holds everything a worker needs to process one input — its URI, its path
relative to the listed root, where its output goes, its label — and nothing heavy. Output names
come from a naming template (:func:`render_name`) that keeps the input's relative folders.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pixelmill import storage
from pixelmill.errors import InvalidParameterError, NoInputError, UsageError

__all__ = [
    "DEFAULT_NAME_TEMPLATE",
    "OUTPUT_FORMATS",
    "QUALITY_FORMATS",
    "WorkUnit",
    "check_format",
    "output_format_for",
    "plan_units",
    "render_name",
]

#: default output naming template: the input's relative folder, its stem, the output extension
DEFAULT_NAME_TEMPLATE = "{parent}/{stem}.{ext}"

#: formats pixelmill can write, with their canonical extension
OUTPUT_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "tif": "tif", "tiff": "tif",
                  "webp": "webp"}

#: output formats that take a quality (lossy encoders); the others are written losslessly
QUALITY_FORMATS = ("jpg", "webp")

#: the reason of an input whose relative path has a ``..`` segment where it names the output
DOTDOT_REASON = ("its name has a '..' path segment, so its output would not lie below OUTPUT: "
                 "rename it, or name outputs without {parent} (--name)")

_TEMPLATE_FIELDS = ("parent", "stem", "ext", "name", "suffix", "label", "index")


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One input to process: small and picklable (engines move these, never pixels)."""

    index: int
    uri: str
    relpath: str
    size: int = 0
    output: str | None = None  #: output URI, None for a measure-only job
    format: str | None = None  #: output format (canonical extension)
    label: str | None = None
    error: str | None = None  #: an input that cannot be processed at all (an unlisted folder)

    @property
    def key(self) -> str:
        return self.uri

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickled as its fields (slots: the dataclass's __getstate__ builds a list per unit)
        return WorkUnit, (self.index, self.uri, self.relpath, self.size, self.output,
                          self.format, self.label, self.error)


def check_format(format: str | None, quality: int | None) -> str | None:
    """The canonical output format for ``--format`` (None keeps each input's), checked with quality."""
    fmt = None
    if format is not None:
        fmt = OUTPUT_FORMATS.get(str(format).lower().lstrip("."))
        if fmt is None:
            raise InvalidParameterError(
                f"--format: expected one of {', '.join(sorted(set(OUTPUT_FORMATS.values())))}, "
                f"got {format!r}", field="format")
    if quality is not None:
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise InvalidParameterError(
                f"--quality: expected an integer between 1 and 100, got {quality!r}",
                field="quality")
        if fmt is not None and fmt not in QUALITY_FORMATS:
            raise InvalidParameterError(
                f"--quality: applies to jpg and webp outputs, not {fmt}", field="quality")
    return fmt


def quality_for(format: str | None, quality: int | None) -> int | None:
    """The quality one output is encoded with: ``quality`` for a format that takes one, None
    for a lossless output (``--quality`` without ``--format`` over PNG and JPEG inputs applies
    to the JPEG outputs; the PNG ones are written as usual)."""
    return quality if (format or "png") in QUALITY_FORMATS else None


def check_quality_applies(units: Sequence[WorkUnit], quality: int | None) -> None:
    """Refuse, before any work, a quality that no output of the plan takes."""
    if quality is None:
        return
    formats = sorted({u.format for u in units if u.format is not None})
    if any(f in QUALITY_FORMATS for f in formats):
        return
    what = (f"every output of this job is {'/'.join(formats)} (each input's format)"
            if formats else "this job writes no images")
    raise InvalidParameterError(
        f"--quality: applies to jpg and webp outputs, and {what}; drop --quality, or set "
        "--format jpg or --format webp", field="quality")


def output_format_for(relpath: str, format: str | None) -> str:
    """The output format of one input: ``format`` if given, else the input's (png when unwritable)."""
    if format:
        return format
    suffix = posixpath.splitext(relpath)[1].lower().lstrip(".")
    return OUTPUT_FORMATS.get(suffix, "png")


def render_name(template: str, relpath: str, ext: str, *, label: str | None = None,
                index: int = 0) -> str:
    """The output path (relative to the output root) of one input.

    Fields: ``{parent}`` (the input's folder relative to the listed root, empty at the top),
    ``{stem}``, ``{ext}`` (the output extension), ``{name}`` (input file name), ``{suffix}``
    (input extension without the dot), ``{label}`` and ``{index}``.

    >>> render_name("{parent}/{stem}.{ext}", "cats/a.png", "jpg")
    'cats/a.jpg'
    >>> render_name("{parent}/{stem}.{ext}", "a.png", "jpg")
    'a.jpg'
    """
    # relpaths are listings' "/"-separated paths; a backslash is a character of a POSIX file
    # name (``a\\b.jpg`` is one file, not ``b.jpg`` in folder ``a``)
    parent, name = posixpath.split(relpath)
    stem, suffix = posixpath.splitext(name)
    values = {"parent": parent, "stem": stem, "ext": ext, "name": name,
              "suffix": suffix.lstrip("."), "label": label or "", "index": index}
    try:
        out = template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidParameterError(
            f"--name: bad naming template {template!r} ({e}); fields: "
            + ", ".join("{" + f + "}" for f in _TEMPLATE_FIELDS), field="name") from None
    parts = [p for p in out.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidParameterError(
            f"--name: template {template!r} gives {out!r} for {relpath!r}; an output name must "
            "be a non-empty path below the output folder", field="name")
    return "/".join(parts)


def _entries_from_manifest(uri: str, storage_options: Mapping[str, Any] | None
                           ) -> list[tuple[str, int, str, str | None]]:
    from pixelmill.manifest import is_tile_row, read_manifest_table, select_rows

    rows = [r for r in select_rows(read_manifest_table(uri, storage_options),
                                   ("key", "uri", "relpath", "size", "bytes", "label"))
            if (r.get("uri") or r.get("key")) and not is_tile_row(r)]
    sources = [str(r.get("uri") or r.get("key")) for r in rows]
    # rows without relpath (scans before it was a column, hand-made tables): folders are kept
    # relative to the inputs' common folder
    base = _common_folder([s for s, r in zip(sources, rows, strict=True) if not r.get("relpath")])
    out = []
    for src, row in zip(sources, rows, strict=True):
        rel = row.get("relpath") or src[len(base):].lstrip("/")
        label = row.get("label")  # a label is text (a table's may be numbers: 0..9 digits)
        out.append((src, int(row.get("size") or row.get("bytes") or 0), str(rel),
                    None if label is None else str(label)))
    out.sort()
    return out


def _common_folder(uris: Sequence[str]) -> str:
    """The longest folder prefix (ending in ``/``) that every URI lies under; for one URI
    its own folder, so the relative path is its name."""
    if not uris:
        return ""
    parts = [u.replace(os.sep, "/").split("/")[:-1] for u in uris]
    common = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    return "/".join(common) + "/"


def _inside(uri: str, folder: str | None) -> bool:
    """Whether ``uri`` lies under ``folder`` (an output folder inside the input folder)."""
    return _inside_test(folder)(uri)


def _inside_test(folder: str | None) -> Callable[[str], bool]:
    """:func:`_inside` for one ``folder`` and many URIs: the folder is made absolute once,
    not once per listed file."""
    if folder is None:
        return lambda uri: False
    folder = str(folder)
    remote = folder.rstrip("/") + "/"
    if "://" in folder:
        return lambda uri: uri.startswith(remote)
    local = os.path.abspath(folder).rstrip(os.sep) + os.sep

    def inside(uri: str) -> bool:
        if "://" in uri:
            return uri.startswith(remote)
        return os.path.abspath(uri).startswith(local)

    return inside


def plan_units(
    input: str,
    output: str | None,
    *,
    format: str | None = None,
    name_template: str = DEFAULT_NAME_TEMPLATE,
    recursive: bool = True,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    label_from: str | None = None,
    limit: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[WorkUnit]:
    """List the inputs and build one :class:`WorkUnit` per input, in URI order.

    ``input`` is a folder/file/glob URL, or a ``.parquet`` manifest written by ``pixelmill
    scan`` (its ``uri``, ``relpath`` and ``label`` columns are used). Files under ``output``
    (an output folder inside the input folder) are never inputs. A sub-folder that cannot be
    listed is a unit with an ``error`` (and no output), after the files; so is a file whose name
    is not UTF-8 (a manifest cannot store it), in its place. Two inputs that would be
    written to the same output name are a usage error, raised here, before any work.
    """
    if label_from not in (None, "parent", "partition"):
        raise InvalidParameterError(
            f"--label-from: expected 'parent' or 'partition', got {label_from!r}",
            field="label_from")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidParameterError(f"--limit: expected an integer >= 1, got {limit!r}",
                                    field="limit")
    unlisted: list[storage.FileEntry] = []  # sub-folders that could not be listed
    if str(input).lower().endswith(".parquet"):
        found = _entries_from_manifest(str(input), storage_options)
        entries = [(u, s, r, lab if lab is not None else storage.label_from_path(r, label_from))
                   for u, s, r, lab in found]
    else:
        listed = storage.list_files(str(input), recursive=recursive, include=include,
                                    exclude=exclude, storage_options=storage_options,
                                    unlisted=unlisted)
        inside = _inside_test(output)
        entries = [(e.uri, e.size, e.relpath, storage.label_from_path(e.relpath, label_from))
                   for e in listed if not inside(e.uri)]
        unlisted = [e for e in unlisted if not inside(e.uri)]
    if not entries and not unlisted:
        raise NoInputError(f"{input}: no image files found"
                           + ("" if recursive else " (sub-folders not searched: --recursive)"))
    if limit is not None:
        entries = entries[:limit]
    units, seen = [], {}
    for i, (uri, size, rel, label) in enumerate(entries):
        if not all(storage.is_utf8(t) for t in (uri, rel, label or "")):
            # the manifest cannot hold its name: a failed row naming it escaped, no output
            units.append(WorkUnit(i, storage.utf8_name(uri), storage.utf8_name(rel), size,
                                  label=None if label is None else storage.utf8_name(label),
                                  error=storage.NOT_UTF8_REASON))
            continue
        out_uri = fmt = None
        if output is not None:
            fmt = output_format_for(rel, format)
            try:
                name = render_name(name_template, rel, fmt, label=label, index=i)
            except InvalidParameterError:
                if ".." not in rel.split("/") and ".." not in (label or "").split("/"):
                    raise  # the template's fault: a usage error before any work
                # an object key with a `..` segment (`set/../a.jpg`, legal on S3): its output
                # would land outside OUTPUT, so this input fails, not the whole job
                units.append(WorkUnit(i, uri, rel, size, label=label, error=DOTDOT_REASON))
                continue
            out_uri = storage.join(str(output), *name.split("/"))
            if out_uri in seen:
                raise UsageError(
                    f"--name: inputs {seen[out_uri]!r} and {uri!r} would both be written to "
                    f"{out_uri!r}; use a naming template with {{suffix}} or {{index}}")
            seen[out_uri] = uri
        units.append(WorkUnit(i, uri, rel, size, out_uri, fmt, label))
    if output is not None and ("://" not in str(output)
                               or str(output).startswith(("file://", "local://"))):
        units = _fail_files_named_as_folders(units, str(output))  # a local folder, as URL too
    # a folder whose files could not be listed is an input of its own, failed at once: its
    # images must not vanish from the manifest unseen (the job ends PARTIAL); --limit N
    # counts these rows too, after the files (a job asked for N inputs has N rows at most)
    if limit is not None:
        unlisted = unlisted[:max(0, limit - len(units))]
    for folder in unlisted:
        units.append(WorkUnit(len(units), folder.uri, folder.relpath, error=folder.reason))
    return units


def _fail_files_named_as_folders(units: list[WorkUnit], output: str) -> list[WorkUnit]:
    """Fail, in the plan, each input whose local output would be the folder of other outputs:
    an object store holds ``x.jpg`` and ``x.jpg/y.jpg``, a local folder cannot, and which of
    them was written depended on which worker came first (a resumed run could differ from an
    uninterrupted one). The file's input fails; the inputs under the folder are written."""
    root = output.rstrip("/" + os.sep)
    folders: set[str] = set()  # every folder an output lies in, below OUTPUT
    for parent in {os.path.dirname(u.output) for u in units if u.output is not None}:
        while len(parent) > len(root) and parent.startswith(root) and parent not in folders:
            folders.add(parent)
            parent = os.path.dirname(parent)
    clashing = {u.output for u in units if u.output in folders}
    if not clashing:
        return units
    out = []
    for u in units:
        if u.output in clashing:
            inner = next(v.output for v in units
                         if v.output and v.output.startswith(u.output + os.sep))
            u = WorkUnit(u.index, u.uri, u.relpath, u.size, label=u.label, error=(
                f"its output {u.output} would also be the folder of other outputs ({inner}): "
                "a local folder cannot hold a file and a folder of one name; write to an "
                "object store, or name outputs with {index} (--name)"))
        out.append(u)
    return out
