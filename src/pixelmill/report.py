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
import math
import os
import posixpath
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import UsageError
from pixelmill.manifest import column, is_tile_row, read_manifest_metadata

__all__ = ["build_report", "check_manifest", "default_report_uri", "measurement_columns",
           "write_report"]

#: columns that describe the job, not the image: never histogrammed (a tiled job's image row,
#: from `pixelmill tile`/`upscale` or an input `run` routed to tiles, adds its own bookkeeping)
_NOT_MEASURES = frozenset({
    "bytes", "width", "height", "out_width", "out_height", "output_bytes", "decode_reduce",
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
    names = set(storage.read_parquet(manifest_uri, storage_options, schema_only=True).names)
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


def _measure_names(table: Any, rows: Any = None) -> list[str]:
    """:func:`measurement_columns` of a table, from its schema: numeric or boolean columns
    with a value (in the ``rows`` of a boolean mask, when given), in column order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = []
    for f in table.schema:
        if f.name in _NOT_MEASURES or f.name.startswith(("t_", "vec_", "_")):
            continue
        numeric = (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                   or pa.types.is_boolean(f.type))
        if not numeric:
            continue
        valid = pc.is_valid(table.column(f.name))
        if rows is not None:
            valid = pc.and_(valid, pa.array(rows))
        if pc.any(valid).as_py():
            names.append(f.name)
    return names


def _status_masks(table: Any) -> tuple[Any, dict[str, int], list[int]]:
    """(boolean mask of the ok rows, counts per status, positions of the invalid and failed
    rows) from the status column, without a Python string per row."""
    import numpy as np
    import pyarrow.compute as pc

    n = table.num_rows
    if "status" not in table.column_names:
        return np.zeros(n, bool), dict.fromkeys(("ok", "invalid", "failed"), 0), []
    status = table.column("status")
    masks = {s: pc.fill_null(pc.equal(status, s), False).to_numpy(zero_copy_only=False)
             for s in ("ok", "invalid", "failed")}
    counts = {s: int(m.sum()) for s, m in masks.items()}
    bad_at = np.flatnonzero(masks["invalid"] | masks["failed"]).tolist()
    return masks["ok"], counts, bad_at


def _ok_values(table: Any, name: str, is_ok: Any) -> Any:
    """One column's values in the ok rows (``is_ok``: a boolean mask), as an Arrow array: the
    sections turn one column at a time into Python values (:func:`_values`)."""
    return table.column(name).filter(is_ok)


def _values(values: Any) -> Any:
    """A column's values as Python values (an Arrow array's, or a sequence as it is)."""
    return values.to_pylist() if hasattr(values, "to_pylist") else values


def _images_table(manifest_uri: str, so: Mapping[str, Any]) -> Any:
    """The manifest's image rows (not its tiles' rows) as an Arrow table, without feature
    vectors: read column by column, never as a dict per row (a job of millions of inputs)."""
    from pixelmill.manifest import journal_path, read_manifest_table, rows_to_table

    fs, path = storage.get_fs(manifest_uri, so)
    if storage.is_local(fs) and os.path.exists(journal_path(path)):  # an interrupted run
        table = read_manifest_table(manifest_uri, so)
    elif fs.exists(path):
        table = storage.read_parquet(manifest_uri, so)
    else:
        table = rows_to_table([])
    table = table.select([c for c in table.column_names if not c.startswith("vec_")])
    if "key" not in table.column_names or not table.num_rows:
        return table
    import numpy as np
    import pyarrow.compute as pc

    from pixelmill.manifest import TILE_KEY

    # only keys holding '#tile=' can be tiles' (checked one by one): no list of every key
    maybe = np.flatnonzero(pc.fill_null(pc.match_substring(table.column("key"), TILE_KEY),
                                        False).to_numpy(zero_copy_only=False))
    if not len(maybe):
        return table
    candidates = _take(table.select([c for c in ("key", "uri") if c in table.column_names]),
                       maybe.tolist())
    tiles = [int(i) for i, k, u in zip(maybe, column(candidates, "key"),
                                       column(candidates, "uri"), strict=True)
             if is_tile_row({"key": k, "uri": u})]
    if not tiles:
        return table
    keep = np.ones(table.num_rows, bool)
    keep[tiles] = False
    return table.filter(keep)


def _take(table: Any, rows: Sequence[int]) -> Any:
    """The table's rows at these positions (an empty list too)."""
    import pyarrow as pa

    return table.take(pa.array(rows, type=pa.int64()))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
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


def _stats(values: list[float]) -> tuple[float, float, float]:
    values = sorted(values)
    p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
    return statistics.fmean(values), statistics.median(values), p95


def _timing_section(columns: Mapping[str, Sequence[Any]]) -> str:
    """Per-stage timing table and chart from the ok rows' ``t_*`` columns (name -> values)."""
    cols = [c for c in _STAGES if any(v is not None for v in _values(columns.get(c, ())))]
    cols += sorted(c for c in columns if c.startswith("t_op"))
    if not cols:
        return "<p>No timings recorded.</p>"
    lines, means = [], []
    for c in cols:
        vals = [float(v) for v in _values(columns[c])
                if isinstance(v, int | float) and math.isfinite(float(v))]
        if not vals:
            continue
        mean, med, p95 = _stats(vals)
        means.append((c, mean))
        lines.append(f"<tr><td>{html.escape(c)}</td><td>{mean * 1e3:.2f}</td>"
                     f"<td>{med * 1e3:.2f}</td><td>{p95 * 1e3:.2f}</td></tr>")
    if not means:  # every value NaN or infinite
        return "<p>No timings recorded.</p>"
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * len(means) + 0.8))
    ax.barh([c for c, _ in means][::-1], [m * 1e3 for _, m in means][::-1], color="#4477aa")
    ax.set_xlabel("mean ms per image")
    img = _png(fig)
    return (f"<img alt='per-stage timings' src='{img}'><table><tr><th>stage</th>"
            "<th>mean ms</th><th>median ms</th><th>p95 ms</th></tr>" + "".join(lines)
            + "</table>")


def _histograms(columns: Mapping[str, Sequence[Any]]) -> str:
    """One histogram per measurement column (name -> the ok rows' values)."""
    if not columns:
        return "<p>No measurement columns.</p>"
    import matplotlib.pyplot as plt

    n = len(columns)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    for ax, col in zip(axes.ravel(), columns, strict=False):
        vals = [float(v) for v in _values(columns[col])
                if isinstance(v, int | float) and math.isfinite(float(v))]
        try:
            if not vals:
                raise ValueError("no finite values")
            with warnings.catch_warnings():  # numpy's overflow on the way to that error
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.hist(vals, bins=min(30, max(5, len(vals) // 3 or 1)), color="#66aa55")
        except ValueError as e:  # no finite value, or a range wider than a float holds
            ax.cla()
            ax.text(0.5, 0.5, str(e)[:60] if not vals else "range too wide to bin",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_title(col, fontsize=10)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return f"<img alt='measurement histograms' src='{_png(fig)}'>"


def build_report(manifest_uri: str, *, storage_options: Mapping[str, Any] | None = None,
                 sample: int = 12, title: str | None = None) -> str:
    """The report page (HTML text) for the manifest at ``manifest_uri``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    so = dict(storage_options or {})
    check_manifest(manifest_uri, so)
    table = _images_table(manifest_uri, so)
    meta = read_manifest_metadata(manifest_uri, so)
    n_rows = table.num_rows
    is_ok, counts, bad_at = _status_masks(table)
    ok = np.flatnonzero(is_ok).tolist()
    elapsed = float(meta.get("pixelmill.elapsed", "0") or 0)
    processed = int(meta.get("pixelmill.processed", "0") or 0)
    rate = f"{processed / elapsed:.1f} images/s ({processed} in {elapsed:.1f} s)" if elapsed else "n/a"
    in_bytes = sum(int(b or ib or 0) for b, ib in zip(column(table, "bytes"),
                                                      column(table, "input_bytes"), strict=True))
    out_sizes = column(table, "output_bytes")
    out_bytes = sum(int(out_sizes[i] or 0) for i in ok)
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
        # the ok rows' values, one column at a time (never a copy of the whole table)
        _timing_section({c: _ok_values(table, c, is_ok) for c in table.column_names
                         if c.startswith("t_")}),
    ]
    bad = _take(table, bad_at[:_MAX_BAD_ROWS]).select(
        [c for c in ("relpath", "uri", "status", "reason") if c in table.column_names]
    ).to_pylist()
    parts.append(f"<h2>Invalid and failed files ({len(bad_at)})</h2>")
    if bad:
        parts.append("<table><tr><th>file</th><th>status</th><th>reason</th></tr>")
        parts.extend(
            f"<tr><td>{e(str(r.get('relpath') or r.get('uri')))}</td>"
            f"<td class='{e(str(r['status']))}'>{e(str(r['status']))}</td>"
            f"<td>{e(str(r.get('reason') or ''))}</td></tr>" for r in bad)
        parts.append("</table>")
        if len(bad_at) > _MAX_BAD_ROWS:
            parts.append(f"<p>… and {len(bad_at) - _MAX_BAD_ROWS:,} more (the first "
                         f"{_MAX_BAD_ROWS:,} are listed): see the manifest.</p>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Before / after (sample)</h2><div class='grid'>")
    if ok and sample > 0:
        step = max(1, len(ok) // sample)
        for r in _take(table, ok[::step][:sample]).to_pylist():
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
    parts.append(_histograms({c: _ok_values(table, c, is_ok)
                              for c in _measure_names(table, is_ok)}))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(manifest_uri: str, out: str | None = None, *,
                 storage_options: Mapping[str, Any] | None = None, sample: int = 12) -> str:
    """Write the report of ``manifest_uri`` to ``out`` (default: ``report.html`` beside it)."""
    out = out or default_report_uri(manifest_uri)
    page = build_report(manifest_uri, storage_options=storage_options, sample=sample)
    storage.write_atomic(out, page.encode("utf-8"), storage_options)
    return out
