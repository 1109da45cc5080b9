"""The HTML report of a job: one self-contained page read from the manifest.

Counts, throughput, per-stage timings, the invalid and failed files with their reasons, a grid
of before/after thumbnails for a sample of inputs, and histograms of the measurement columns
(matplotlib, Agg backend). Images are inlined as base64 PNG/JPEG, so the page can be mailed or
archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import os
import posixpath
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import StorageError, UsageError
from pixelmill.manifest import is_tile_row, read_manifest_metadata

__all__ = ["build_report", "check_manifest", "default_report_uri", "measurement_columns",
           "write_report"]

#: columns that describe the job, not the image: never histogrammed (a tiled job's image row,
#: from `pixelmill tile`/`upscale` or an input `run` routed to tiles, adds its own bookkeeping)
_NOT_MEASURES = frozenset({
    "bytes", "width", "height", "out_width", "out_height", "output_bytes", "decode_reduce",
    "decode_planes",
    "tiled", "tiles", "tile", "peak_rss", "level", "pyramid", "input_bytes", "tile_row",
    "tile_col", "y0", "x0",
})
_STAGES = ("t_read", "t_decode", "t_process", "t_encode", "t_write")
_THUMB = 160
_THUMB_MAX_PIXELS = 40_000_000
#: invalid and failed files listed on the page (the manifest has them all)
_MAX_BAD_ROWS = 1000


def check_manifest(manifest_uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """A :class:`UsageError` unless ``manifest_uri`` holds a job's manifest (a ``status``
    column: `pixelmill run`, `tile`, `upscale`, `learn extract`): a scan inventory or another
    Parquet table would give a page of zero counts."""
    fs, path = storage.get_fs(manifest_uri, storage_options)
    if not fs.exists(path):  # an interrupted run's journal alone: read_manifest reads it
        return
    file = _open_parquet(manifest_uri, storage_options or {})  # a local file: its footer only
    try:
        names = set(file.schema_arrow.names)
    finally:
        _close(file)
    if not names or "status" in names:  # no columns: a job without rows
        return
    if "valid" in names:
        raise UsageError(f"{manifest_uri}: a scan inventory (`pixelmill scan --out`), not a "
                         "job's manifest; report the manifest of `pixelmill run` on it")
    raise UsageError(f"{manifest_uri}: not a pixelmill job manifest (no status column)")


def default_report_uri(manifest_uri: str) -> str:
    """The report beside the manifest: ``report.html`` for a job's ``manifest.parquet``, else
    ``<manifest name>.report.html`` (``--manifest runs/may.parquet`` -> ``runs/may.report.html``),
    so that a manifest kept among other files never replaces a ``report.html`` found there."""
    import os

    sep = posixpath if "://" in manifest_uri else os.path
    folder, name = sep.split(manifest_uri)
    stem = name[: -len(".parquet")] if name.lower().endswith(".parquet") else name
    return sep.join(folder, "report.html" if stem == "manifest" else f"{stem}.report.html")


def measurement_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Numeric columns that hold measurements (not sizes, timings or bookkeeping)."""
    names: dict[str, None] = {}
    for row in rows:
        for k, v in row.items():
            if k in _NOT_MEASURES or k.startswith(("t_", "vec_", "_")):
                continue
            if isinstance(v, int | float):  # bools (flags) count too
                names.setdefault(k, None)
    return list(names)


#: rows read at a time from a manifest (a quarter of a row group of ManifestWriter's)
_BATCH = 16384

# what each row of a manifest is, one byte per row (the rest is read column by column)
_TILE, _OTHER, _OK, _INVALID, _FAILED = -1, 0, 1, 2, 3


def _open_parquet(uri: str, so: Mapping[str, Any]) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` over the manifest at ``uri``: only its footer is read
    here, its row groups later, a few columns at a time. A local file is read through Arrow's
    own file (no Python object that a reader thread could drop); a file on an object store is
    copied whole into Arrow's memory first, as :func:`storage.read_parquet` does (its
    compressed bytes, a fraction of the table). A file that is not Parquet is a
    :class:`UsageError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = storage.get_fs(uri, so)
    if storage.is_local(fs):
        storage.check_regular(path, uri)
        try:
            source = pa.OSFile(path)
        except FileNotFoundError as e:
            raise StorageError(f"{uri}: no such file") from e
        except PermissionError as e:
            raise StorageError(f"{uri}: permission denied") from e
        except OSError as e:
            if os.path.isdir(path):
                raise StorageError(f"{uri}: is a folder") from e
            raise StorageError(f"{uri}: cannot read: {e}") from e
    else:
        source = storage.read_arrow_buffer(uri, so)
    try:
        file = pq.ParquetFile(source, pre_buffer=False)
    except pa.ArrowException as e:
        source.close()
        raise UsageError(f"{uri}: not a Parquet file ({e})") from e
    file.source = source  # closed by _close
    return file


def _close(file: Any) -> None:
    """Close a file of :func:`_open_parquet` (a ParquetFile leaves the source it was given
    open)."""
    file.close()
    file.source.close()


class _Manifest:
    """The rows of a manifest, read a few columns at a time in batches of :data:`_BATCH` rows:
    a finished job's Parquet file row group by row group, never whole (a job of millions of
    inputs), or an interrupted run's rows (its Parquet file and journal, the last row per key)
    as one table, as :func:`read_manifest_table` gives them. Feature vectors (``vec_*``) are
    left out."""

    def __init__(self, uri: str, so: Mapping[str, Any]) -> None:
        import pyarrow as pa

        from pixelmill.manifest import journal_path, read_manifest_table, rows_to_table

        self.uri = uri
        self._file: Any = None
        self._table: Any = None
        fs, path = storage.get_fs(uri, so)
        if storage.is_local(fs) and os.path.exists(journal_path(path)):  # an interrupted run
            self._table = read_manifest_table(uri, so)
            self.meta = read_manifest_metadata(uri, so)
        elif fs.exists(path):
            self._file = _open_parquet(uri, so)
            self.meta = _file_metadata(self._file)
        else:
            self._table = rows_to_table([])
            self.meta = {}
        schema = self._file.schema_arrow if self._file is not None else self._table.schema
        self.schema = pa.schema([f for f in schema if not f.name.startswith("vec_")])
        self.names = self.schema.names
        self.num_rows = (self._file.metadata.num_rows if self._file is not None
                         else self._table.num_rows)

    def close(self) -> None:
        if self._file is not None:
            _close(self._file)

    def batches(self, columns: Sequence[str], at: Any = None) -> Any:
        """(position of its first row, a record batch of ``columns``) for every batch of rows,
        in order (of a Parquet file, only the row groups that hold one of the positions
        ``at``, when given); nothing when no column is asked for."""
        import pyarrow as pa

        columns = [c for c in dict.fromkeys(columns) if c in self.names]
        if not columns or not self.num_rows:
            return
        batch = batches = None
        try:
            if self._file is None:
                start = 0
                for batch in self._table.select(columns).to_batches(max_chunksize=_BATCH):
                    yield start, batch
                    start += batch.num_rows
                return
            start = 0
            meta = self._file.metadata
            for group in range(meta.num_row_groups):  # one reader per row group: its buffers
                size = meta.row_group(group).num_rows  # go with it
                if at is not None:
                    lo, hi = np.searchsorted(at, (start, start + size))
                    if lo == len(at):
                        return
                if size and (at is None or hi > lo):
                    batches = self._file.iter_batches(batch_size=_BATCH, row_groups=[group],
                                                      columns=columns, use_threads=False)
                    while True:
                        try:
                            batch = next(batches, None)
                        except pa.ArrowException as e:  # a footer, but pages cut or broken
                            raise UsageError(f"{self.uri}: not a Parquet file ({e})") from e
                        if batch is None:
                            break
                        yield start, batch
                        start += batch.num_rows
                    batches = None  # the row group's reader and buffers
                else:
                    start += size
        finally:  # Arrow's allocator keeps freed memory cached: back to the system, pass by pass
            batch = batches = None
            pa.default_memory_pool().release_unused()

    def taken(self, at: Any, columns: Sequence[str]) -> Any:
        """(the positions, a record batch of ``columns`` of the rows there) for each batch of
        rows holding some of the positions ``at`` (ascending)."""
        import pyarrow as pa

        at = np.asarray(at, np.int64)
        if not len(at):
            return
        for start, batch in self.batches(columns, at):
            lo, hi = np.searchsorted(at, (start, start + batch.num_rows))
            if hi > lo:
                yield at[lo:hi], batch.take(pa.array(at[lo:hi] - start))
            if hi == len(at):
                break

    def rows(self, at: Any, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The rows at the positions ``at`` (ascending), of ``columns`` (those it has), as
        dicts: only these rows' values of the text columns are ever made Python strings."""
        out: list[dict[str, Any]] = []
        for _, batch in self.taken(at, columns):
            out.extend(batch.to_pylist())
        out.extend({} for _ in range(len(at) - len(out)))  # no such column: empty rows
        return out


def _file_metadata(file: Any) -> dict[str, str]:
    """:func:`read_manifest_metadata` of an open Parquet file."""
    return {k.decode(): v.decode() for k, v in (file.schema_arrow.metadata or {}).items()
            if not k.startswith(b"ARROW")}


def _row_kinds(manifest: _Manifest) -> Any:
    """One code per row of the manifest (an int8 array): :data:`_TILE` for a tile's row (not
    an image: its key ``URI#tile=r,c``), else :data:`_OK`, :data:`_INVALID`, :data:`_FAILED` by
    its status, or :data:`_OTHER`. Read from the key and status columns one batch at a time,
    without a Python string per row: only the rows whose key holds ``#tile=`` are checked one
    by one, with their uri."""
    import pyarrow.compute as pc

    from pixelmill.manifest import TILE_KEY

    kinds = np.zeros(manifest.num_rows, np.int8)
    has = set(manifest.names)
    maybe = []
    for start, batch in manifest.batches(("key", "status")):
        part = kinds[start:start + batch.num_rows]
        if "status" in has:
            status = batch.column("status")
            for code, s in ((_OK, "ok"), (_INVALID, "invalid"), (_FAILED, "failed")):
                part[pc.fill_null(pc.equal(status, s), False).to_numpy(zero_copy_only=False)] = code
        if "key" in has:  # no key: no row is a tile's
            tile_key = pc.fill_null(pc.match_substring(batch.column("key"), TILE_KEY), False)
            if pc.any(tile_key).as_py():
                maybe.append(np.flatnonzero(tile_key.to_numpy(zero_copy_only=False)) + start)
    if maybe:
        for at, batch in manifest.taken(np.concatenate(maybe), ("key", "uri")):
            uris = (batch.column("uri").to_pylist() if "uri" in has else [None] * len(at))
            for i, k, u in zip(at, batch.column("key").to_pylist(), uris, strict=True):
                if is_tile_row({"key": k, "uri": u}):
                    kinds[i] = _TILE
    return kinds


def _first_true(mask: Any, ordinals: Any) -> Any:
    """The positions of the ``ordinals``-th (ascending) True values of a boolean mask, found a
    batch at a time (never a position for every True)."""
    out, seen = [], 0
    ordinals = np.asarray(ordinals, np.int64)
    for start in range(0, len(mask), _BATCH):
        if not len(ordinals):
            break
        chunk = mask[start:start + _BATCH]
        count = int(np.count_nonzero(chunk))
        here = ordinals[ordinals < seen + count]
        if len(here):
            out.append(np.flatnonzero(chunk)[here - seen] + start)
            ordinals = ordinals[len(here):]
        seen += count
    return np.concatenate(out) if out else np.empty(0, np.int64)


def _is_numeric(type_: Any) -> bool:
    import pyarrow as pa

    return (pa.types.is_integer(type_) or pa.types.is_floating(type_)
            or pa.types.is_boolean(type_))


def _finite_values(manifest: _Manifest, name: str, rows: Any) -> Any:
    """The finite values of column ``name`` in the ``rows`` (a boolean mask) as a float64
    array, in row order: the values a list of ``float(v)`` over the column's numbers (ints,
    floats, bools) that are finite gave. A column of another type has none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in manifest.names or not _is_numeric(manifest.schema.field(name).type):
        return np.empty(0, np.float64)
    out = np.empty(int(np.count_nonzero(rows)), np.float64)
    n = 0
    for start, batch in manifest.batches((name,)):
        keep = rows[start:start + batch.num_rows]
        if not keep.any():
            continue
        values = pc.drop_null(batch.column(name).filter(pa.array(keep)))
        values = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        values = values[np.isfinite(values)]
        out[n:n + len(values)] = values
        n += len(values)
    return out[:n]


def _has_values(manifest: _Manifest, names: Sequence[str], rows: Any) -> set[str]:
    """Which of the columns ``names`` have a value (not null) in one of the ``rows``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found: set[str] = set()
    for start, batch in manifest.batches([c for c in names if c in manifest.names]):
        keep = rows[start:start + batch.num_rows]
        if not keep.any():
            continue
        mask = pa.array(keep)
        for c in names:
            if (c not in found and c in batch.schema.names
                    and pc.any(pc.and_(pc.is_valid(batch.column(c)), mask)).as_py()):
                found.add(c)
        if len(found) == len(names):
            break
    return found


def _measure_names(manifest: _Manifest, rows: Any) -> list[str]:
    """:func:`measurement_columns` of a manifest, from its schema: numeric or boolean columns
    with a value in the ``rows`` (a boolean mask), in column order."""
    names = [f.name for f in manifest.schema
             if f.name not in _NOT_MEASURES and not f.name.startswith(("t_", "vec_", "_"))
             and _is_numeric(f.type)]
    found = _has_values(manifest, names, rows)
    return [c for c in names if c in found]


def _as_ints(column: Any) -> Any:
    """An integer (or null-typed) column's values as an integer array, 0 for a null; None for
    a column of another type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column is None or pa.types.is_null(column.type):
        return 0
    if not pa.types.is_integer(column.type):
        return None
    return pc.fill_null(column, 0).to_numpy(zero_copy_only=False)


def _byte_total(manifest: _Manifest, first: str, then: str | None, rows: Any) -> int:
    """``sum(int(first or then or 0))`` over the ``rows`` (a boolean mask) of the manifest,
    summed in NumPy one batch at a time (in Python for a column that is not of integers)."""
    import pyarrow as pa

    total = 0
    for start, batch in manifest.batches([c for c in (first, then) if c]):
        keep = rows[start:start + batch.num_rows]
        if not keep.any():
            continue
        mask = pa.array(keep)
        a, b = (batch.column(c).filter(mask) if c and c in batch.schema.names else None
                for c in (first, then))
        ia, ib = _as_ints(a), _as_ints(b)
        if ia is not None and ib is not None:  # integers (or nulls): `then` where `first` is 0
            if not isinstance(ia, int):
                total += int(ia.sum())
            if not isinstance(ib, int):
                total += int((ib if isinstance(ia, int) else ib[ia == 0]).sum())
            continue
        n = int(np.count_nonzero(keep))
        firsts = a.to_pylist() if a is not None else [None] * n
        thens = b.to_pylist() if b is not None else [None] * n
        total += sum(int(x or y or 0) for x, y in zip(firsts, thens, strict=True))
    return total


def _figure(**kw: Any) -> Any:
    """A figure drawn with Agg on its own canvas: neither pyplot's figure list nor the
    process's matplotlib backend is touched (a notebook or service calling ``run()`` keeps its
    own backend and figures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumb(uri: str | None, so: Mapping[str, Any]) -> str | None:
    if not uri:
        return None
    import cv2

    from pixelmill import codecs

    try:
        data = storage.read_bytes(uri, so)
        info = codecs.probe(data)
        reduce = 1
        for r in (8, 4, 2):
            if max(info.width, info.height) // r >= _THUMB:
                reduce = r
                break
        if info.format != "jpg":  # only JPEGs decode reduced
            reduce = 1
        if info.width * info.height // (reduce * reduce) > _THUMB_MAX_PIXELS:
            return None  # an output far larger than its input (an upscale), or a file replaced
        img = codecs.decode(data, reduce=reduce) if reduce > 1 else codecs.decode(data)
    except Exception:
        return None
    img = np.asarray(img)
    if img.dtype != np.uint8:  # stretch the finite values to 0–255 (NaN and ±inf: 0 / 255)
        img = img.astype(np.float32)
        finite = img[np.isfinite(img)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        img = np.nan_to_num(img, nan=lo, posinf=hi, neginf=lo)
        img = ((img - lo) * (255.0 / (hi - lo or 1.0))).clip(0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[2] in (1, 2):  # gray (+ alpha): the gray channel
        img = np.ascontiguousarray(img[..., 0])
    h, w = img.shape[:2]
    s = _THUMB / max(h, w)
    if s < 1:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def _stats(values: Any) -> tuple[float, float, float]:
    """(mean, median, 95th percentile) of a float64 array, exactly as ``statistics.fmean``,
    ``statistics.median`` and the sorted list's element gave them: the mean is the correctly
    rounded sum (``math.fsum``) over the count, the order of equal values (0.0 and -0.0) kept."""
    values.sort(kind="stable")  # in place: the caller's array, read for this alone
    n = len(values)
    p95 = float(values[min(n - 1, math.ceil(0.95 * n) - 1)])
    mean = math.fsum(itertools.chain.from_iterable(
        values[i:i + _BATCH].tolist() for i in range(0, n, _BATCH))) / n
    i = n // 2
    median = float(values[i]) if n % 2 else (float(values[i - 1]) + float(values[i])) / 2
    return mean, median, p95


def _timing_section(manifest: _Manifest, ok: Any) -> str:
    """Per-stage timing table and chart from the ok rows' (``ok``: a boolean mask) ``t_*``
    columns, read one column at a time."""
    cols = [c for c in _STAGES if c in manifest.names]
    cols += sorted(c for c in manifest.names if c.startswith("t_op"))
    if not cols:
        return "<p>No timings recorded.</p>"
    lines, means = [], []
    for c in cols:
        vals = _finite_values(manifest, c, ok)
        if not len(vals):  # no value, or none finite
            continue
        mean, med, p95 = _stats(vals)
        del vals
        means.append((c, mean))
        lines.append(f"<tr><td>{html.escape(c)}</td><td>{mean * 1e3:.2f}</td>"
                     f"<td>{med * 1e3:.2f}</td><td>{p95 * 1e3:.2f}</td></tr>")
    if not means:  # every value NaN or infinite
        return "<p>No timings recorded.</p>"
    fig = _figure(figsize=(6, 0.35 * len(means) + 0.8))
    ax = fig.subplots()
    ax.barh([c for c, _ in means][::-1], [m * 1e3 for _, m in means][::-1], color="#4477aa")
    ax.set_xlabel("mean ms per image")
    img = _png(fig)
    return (f"<img alt='per-stage timings' src='{img}'><table><tr><th>stage</th>"
            "<th>mean ms</th><th>median ms</th><th>p95 ms</th></tr>" + "".join(lines)
            + "</table>")


def _histograms(manifest: _Manifest, ok: Any) -> str:
    """One histogram per measurement column, of the ok rows' (``ok``: a boolean mask) values,
    read one column at a time."""
    columns = _measure_names(manifest, ok)
    if not columns:
        return "<p>No measurement columns.</p>"
    n = len(columns)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(figsize=(4 * ncols, 2.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, col in zip(axes.ravel(), columns, strict=False):
        vals = _finite_values(manifest, col, ok)
        try:
            if not len(vals):
                raise ValueError("no finite values")
            with warnings.catch_warnings():  # numpy's overflow on the way to that error
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.hist(vals, bins=min(30, max(5, len(vals) // 3 or 1)), color="#66aa55")
        except ValueError as e:  # no finite value, or a range wider than a float holds
            ax.cla()
            ax.text(0.5, 0.5, str(e)[:60] if not len(vals) else "range too wide to bin",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_title(col, fontsize=10)
        del vals
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return f"<img alt='measurement histograms' src='{_png(fig)}'>"


def build_report(manifest_uri: str, *, storage_options: Mapping[str, Any] | None = None,
                 sample: int = 12, title: str | None = None) -> str:
    """The report page (HTML text) for the manifest at ``manifest_uri``.

    The manifest is never held whole: one byte per row says what the row is (a tile's, ok,
    invalid, failed), the sums and statistics are taken one column at a time (the values of
    one numeric column at most), and the text of only the rows listed on the page (the first
    invalid and failed ones, the sample) is read."""
    so = dict(storage_options or {})
    check_manifest(manifest_uri, so)
    manifest = _Manifest(manifest_uri, so)
    try:
        return _page(manifest, manifest_uri, so, sample, title)
    finally:
        manifest.close()


def _page(manifest: _Manifest, manifest_uri: str, so: Mapping[str, Any], sample: int,
          title: str | None) -> str:
    kinds = _row_kinds(manifest)
    meta = manifest.meta
    images = kinds != _TILE
    n_rows = int(np.count_nonzero(images))
    is_ok = kinds == _OK
    counts = {"ok": int(np.count_nonzero(is_ok)),
              "invalid": int(np.count_nonzero(kinds == _INVALID)),
              "failed": int(np.count_nonzero(kinds == _FAILED))}
    elapsed = float(meta.get("pixelmill.elapsed", "0") or 0)
    processed = int(meta.get("pixelmill.processed", "0") or 0)
    rate = f"{processed / elapsed:.1f} images/s ({processed} in {elapsed:.1f} s)" if elapsed else "n/a"
    in_bytes = _byte_total(manifest, "bytes", "input_bytes", images)
    del images
    out_bytes = _byte_total(manifest, "output_bytes", None, is_ok)
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title or 'pixelmill report')}</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:left;font-size:13px}.ok{color:#262}.invalid{color:#a60}"
        ".failed{color:#b22}.grid{display:flex;flex-wrap:wrap;gap:10px}.pair{border:1px solid"
        " #ddd;padding:4px;font-size:11px;max-width:340px}.pair img{max-width:160px;"
        "vertical-align:top}",
        "</style></head><body>",
        f"<h1>{e(title or 'pixelmill report')}</h1>",
        f"<p>manifest: <code>{e(manifest_uri)}</code></p>",
        "<h2>Summary</h2><table>",
        f"<tr><th>inputs</th><td>{n_rows}</td></tr>",
        *(f"<tr><th class='{s}'>{s}</th><td id='count-{s}'>{counts[s]}</td></tr>"
          for s in counts),
        f"<tr><th>throughput (last run)</th><td>{e(rate)}</td></tr>",
        f"<tr><th>engine</th><td>{e(meta.get('pixelmill.engine', '?'))} × "
        f"{e(meta.get('pixelmill.workers', '?'))} workers</td></tr>",
        f"<tr><th>input bytes</th><td>{in_bytes:,}</td></tr>",
        f"<tr><th>output bytes</th><td>{out_bytes:,}</td></tr>",
        f"<tr><th>pipeline</th><td><code>{e(meta.get('pixelmill.pipeline', '?'))}</code></td></tr>",
        "</table>",
        "<h2>Per-stage timings</h2>",
        _timing_section(manifest, is_ok),
    ]
    is_bad = kinds >= _INVALID
    n_bad = int(np.count_nonzero(is_bad))
    bad = manifest.rows(_first_true(is_bad, np.arange(min(n_bad, _MAX_BAD_ROWS))),
                        ("relpath", "uri", "status", "reason"))
    del is_bad
    parts.append(f"<h2>Invalid and failed files ({n_bad})</h2>")
    if bad:
        parts.append("<table><tr><th>file</th><th>status</th><th>reason</th></tr>")
        parts.extend(
            f"<tr><td>{e(str(r.get('relpath') or r.get('uri')))}</td>"
            f"<td class='{e(str(r['status']))}'>{e(str(r['status']))}</td>"
            f"<td>{e(str(r.get('reason') or ''))}</td></tr>" for r in bad)
        parts.append("</table>")
        if n_bad > _MAX_BAD_ROWS:
            parts.append(f"<p>… and {n_bad - _MAX_BAD_ROWS:,} more (the first "
                         f"{_MAX_BAD_ROWS:,} are listed): see the manifest.</p>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Before / after (sample)</h2><div class='grid'>")
    if counts["ok"] and sample > 0:
        step = max(1, counts["ok"] // sample)  # the rows ok[::step][:sample] of the ok rows
        chosen = _first_true(is_ok, np.arange(0, counts["ok"], step)[:sample])
        for r in manifest.rows(chosen, ("tiled", "width", "height", "uri", "output", "relpath",
                                        "out_width", "out_height")):
            if r.get("tiled") or (r.get("width") or 0) * (r.get("height") or 0) > _THUMB_MAX_PIXELS:
                continue  # a huge image: never decoded whole for a thumbnail
            before, after = _thumb(r.get("uri"), so), _thumb(r.get("output"), so)
            cells = "".join(f"<img alt='{alt}' src='{src}'>"
                            for alt, src in (("before", before), ("after", after)) if src)
            name = r.get("relpath") or r.get("uri") or ""
            parts.append(f"<div class='pair'>{cells}<br>{e(str(name))} "
                         f"{e(str(r.get('width')))}×{e(str(r.get('height')))} → "
                         f"{e(str(r.get('out_width')))}×{e(str(r.get('out_height')))}</div>")
    parts.append("</div>")
    parts.append("<h2>Measurements</h2>")
    parts.append(_histograms(manifest, is_ok))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(manifest_uri: str, out: str | None = None, *,
                 storage_options: Mapping[str, Any] | None = None, sample: int = 12) -> str:
    """Write the report of ``manifest_uri`` to ``out`` (default: ``report.html`` beside it)."""
    out = out or default_report_uri(manifest_uri)
    page = build_report(manifest_uri, storage_options=storage_options, sample=sample)
    storage.write_atomic(out, page.encode("utf-8"), storage_options)
    return out
