"""The report of a large manifest: read a few columns at a time, never the whole table.

`pixelmill report` (and the end of every `pixelmill run`) held the whole manifest and turned
its columns into Python lists: ~1.5 KB of peak memory per row, 15 GB in the driver for a job
of 10 million photos. The page is now built batch by batch; its content is what it was. The
reference here computes each number of the page the plain way, from the manifest's rows as
dicts (what the report did before).
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import statistics
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import pixelmill.manifest
import pixelmill.report as report
from pixelmill.manifest import ManifestWriter, is_tile_row, read_manifest_table
from pixelmill.report import build_report, measurement_columns

STAGES = ("t_read", "t_decode", "t_process", "t_encode", "t_write")


def _reference(uri: str, sample: int = 12) -> dict:
    """Each value on the page of ``uri``, from its rows as dicts."""
    table = read_manifest_table(uri)
    names = [c for c in table.column_names if not c.startswith("vec_")]
    rows = [r for r in table.select(names).to_pylist() if not is_tile_row(r)]
    ok = [r for r in rows if r.get("status") == "ok"]
    e = html.escape
    timings, means = [], []
    for c in [c for c in STAGES if c in names] + sorted(c for c in names if c.startswith("t_op")):
        vals = [float(v) for v in (r.get(c) for r in ok)
                if isinstance(v, int | float) and math.isfinite(float(v))]
        if not vals:
            continue
        mean, med = statistics.fmean(vals), statistics.median(vals)
        p95 = sorted(vals)[min(len(vals) - 1, math.ceil(0.95 * len(vals)) - 1)]
        means.append((c, mean))
        timings.append(f"<tr><td>{e(c)}</td><td>{mean * 1e3:.2f}</td><td>{med * 1e3:.2f}</td>"
                       f"<td>{p95 * 1e3:.2f}</td></tr>")
    bad = [r for r in rows if r.get("status") in ("invalid", "failed")]
    listed = [f"<tr><td>{e(str(r.get('relpath') or r.get('uri')))}</td>"
              f"<td class='{e(str(r['status']))}'>{e(str(r['status']))}</td>"
              f"<td>{e(str(r.get('reason') or ''))}</td></tr>"
              for r in bad[:report._MAX_BAD_ROWS]]
    captions = []
    if ok and sample > 0:
        for r in ok[::max(1, len(ok) // sample)][:sample]:
            if r.get("tiled") or (r.get("width") or 0) * (r.get("height") or 0) > 40_000_000:
                continue
            captions.append(f"<br>{e(str(r.get('relpath') or r.get('uri') or ''))} "
                            f"{e(str(r.get('width')))}×{e(str(r.get('height')))} → "
                            f"{e(str(r.get('out_width')))}×{e(str(r.get('out_height')))}</div>")
    measures = {c: [float(v) for v in (r.get(c) for r in ok)
                    if isinstance(v, int | float) and math.isfinite(float(v))]
                for c in measurement_columns(ok)}
    return {
        "inputs": len(rows),
        "counts": {s: sum(r.get("status") == s for r in rows) for s in ("ok", "invalid",
                                                                        "failed")},
        "in_bytes": sum(int(r.get("bytes") or r.get("input_bytes") or 0) for r in rows),
        "out_bytes": sum(int(r.get("output_bytes") or 0) for r in ok),
        "timings": timings, "means": means, "bad": len(bad), "listed": listed,
        "captions": captions, "measures": measures,
    }


def _timing_chart(means) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * len(means) + 0.8))
    ax.barh([c for c, _ in means][::-1], [m * 1e3 for _, m in means][::-1], color="#4477aa")
    ax.set_xlabel("mean ms per image")
    return report._png(fig)


def _histograms(columns) -> str:
    """The histograms as the report drew them from lists of the ok rows' values."""
    import matplotlib.pyplot as plt

    n = len(columns)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    for ax, col in zip(axes.ravel(), columns, strict=False):
        vals = columns[col]
        try:
            if not vals:
                raise ValueError("no finite values")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.hist(vals, bins=min(30, max(5, len(vals) // 3 or 1)), color="#66aa55")
        except ValueError as err:
            ax.cla()
            ax.text(0.5, 0.5, str(err)[:60] if not vals else "range too wide to bin",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_title(col, fontsize=10)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return report._png(fig)


def _check_page(page: str, ref: dict) -> None:
    def cell(th: str) -> str:
        m = re.search(rf"<tr><th>{th}</th><td>([^<]*)</td></tr>", page)
        assert m, th
        return m.group(1)

    assert cell("inputs") == str(ref["inputs"])
    for s, n in ref["counts"].items():
        assert f"<td id='count-{s}'>{n}</td>" in page, (s, n)
    assert cell("input bytes") == f"{ref['in_bytes']:,}"
    assert cell("output bytes") == f"{ref['out_bytes']:,}"
    if ref["timings"]:
        assert ("<th>p95 ms</th></tr>" + "".join(ref["timings"]) + "</table>") in page
        chart = re.search(r"alt='per-stage timings' src='([^']*)'", page).group(1)
        assert chart == _timing_chart(ref["means"])
    else:
        assert "<p>No timings recorded.</p>" in page
    assert f"<h2>Invalid and failed files ({ref['bad']})</h2>" in page
    assert page.count("<td class='") == len(ref["listed"])
    assert "\n".join(ref["listed"]) in page
    more = ref["bad"] - report._MAX_BAD_ROWS
    assert (f"… and {more:,} more" in page) == (more > 0)
    assert re.findall(r"<br>.*?</div>", page) == ref["captions"]
    if ref["measures"]:
        drawn = re.search(r"alt='measurement histograms' src='([^']*)'", page).group(1)
        assert drawn == _histograms(ref["measures"])
    else:
        assert "<p>No measurement columns.</p>" in page


def _varied_rows(n: int, seed: int = 7) -> list[dict]:
    """Rows of every kind: ok, invalid, failed, tiled images and their tiles' rows, an input
    named like a tile, NaN/inf/-0.0 values, missing timings, sizes in bytes or input_bytes."""
    rng = random.Random(seed)
    rows = [{"key": "/in/#tile=1,2.jpg", "uri": "/in/#tile=1,2.jpg", "relpath": "#tile=1,2.jpg",
             "status": "invalid", "reason": "decode: <not> an image", "bytes": 11}]
    odd = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 0.0, -0.0]
    for i in range(n):
        uri = f"/in/dir{i % 7}/photo_{i:05d}_{'x' * (i % 40)}.jpg"
        row = {"key": uri, "uri": uri, "relpath": uri[4:], "status": "ok", "reason": None,
               "bytes": rng.choice([None, 0, rng.randrange(1, 10**7)])}
        u = rng.random()
        if u < 0.12:
            row.update(status="invalid", reason=f"decode: bad {i}", t_read=rng.random() / 100)
        elif u < 0.2:
            row.update(status="failed", reason=f"pipeline: ValueError: {i}",
                       t_read=rng.random() / 100, t_decode=rng.random() / 10, only_failed=1.5)
        else:
            row.update(width=rng.randrange(1, 9000), height=rng.randrange(1, 9000),
                       out_width=rng.randrange(1, 500), out_height=rng.randrange(1, 500),
                       output=None if u > 0.95 else f"/out/{i}.webp",
                       output_bytes=rng.choice([None, 0, rng.randrange(1, 10**6)]),
                       t_read=rng.choice([*odd, rng.random() / 100, rng.random() / 100]),
                       t_decode=round(rng.random() / 10, 3), t_process=rng.random(),
                       t_write=rng.random() / 1000, t_op0_blur=rng.random() / 50,
                       t_total=1.0, sharpness=rng.choice([*odd, rng.gauss(100, 30)]),
                       blurry=rng.random() < 0.3, faces=rng.randrange(0, 5),
                       note="text, not a measurement", vec_f=[rng.random()] * 4)
            if u < 0.5:
                row["t_encode"] = rng.random() / 20
                row["t_op1_flip"] = rng.randrange(0, 3) / 1000
        if i % 450 == 3:  # a tiled image and its tiles' rows
            row.update(status="ok", reason=None, tiled=True, bytes=None, input_bytes=5_000_000 + i,
                       tiles=2, peak_rss=10**9, width=40_000, height=30_000)
            rows.append(row)
            for t in range(2):
                rows.append({"key": f"{uri}#tile=0,{t}", "uri": uri, "status": "ok" if t else
                             "failed", "reason": None if t else "a tile", "t_process": 99.0,
                             "sharpness": 1e6, "bytes": 10**9})
            continue
        rows.append(row)
    return rows


def _write(uri: str, rows) -> str:
    with ManifestWriter(uri, metadata={"pixelmill.elapsed": "12.5",
                                       "pixelmill.processed": str(len(rows))}) as w:
        for row in rows:
            w.append(row)
    return uri


@pytest.fixture
def small_batches(monkeypatch):
    """Row groups, batches and the list of bad files far smaller than the manifest: every
    value crosses their borders."""
    monkeypatch.setattr(pixelmill.manifest, "_WRITE_ROWS", 700)
    monkeypatch.setattr(report, "_BATCH", 256)
    monkeypatch.setattr(report, "_MAX_BAD_ROWS", 40)


def test_the_page_of_a_varied_manifest_is_what_it_was(tmp_path, small_batches):
    import pyarrow.parquet as pq

    uri = _write(str(tmp_path / "manifest.parquet"), _varied_rows(3000))
    assert pq.ParquetFile(uri).metadata.num_row_groups > 3
    for sample in (12, 5, 0):
        page = build_report(uri, sample=sample)
        ref = _reference(uri, sample)
        _check_page(page, ref)
    assert ref["counts"]["invalid"] > 40 and ref["counts"]["failed"] > 40
    assert ref["in_bytes"] and ref["out_bytes"] and len(ref["timings"]) == 7
    assert list(ref["measures"]) == ["sharpness", "blurry", "faces"]
    assert "12.5 s" in page and "#tile=1,2.jpg" in page


def test_an_interrupted_runs_page_is_what_it_was(tmp_path, small_batches):
    """A killed run leaves its Parquet rows and a journal of newer rows (last row per key
    wins): the page counts the merged rows, as before."""
    uri = _write(str(tmp_path / "manifest.parquet"), _varied_rows(1200))
    redo = [r for r in _varied_rows(1200) if r["status"] != "ok"][:30]
    w = ManifestWriter(uri, keep_existing=True)
    for r in redo:
        w.append({**r, "status": "ok", "reason": None, "t_read": 0.5, "sharpness": 3.0})
    w.abandon()
    assert (tmp_path / "manifest.parquet.journal.jsonl").exists()
    _check_page(build_report(uri), _reference(uri))
    journal_only = tmp_path / "j" / "manifest.parquet"
    journal_only.parent.mkdir()
    (tmp_path / "j" / "manifest.parquet.journal.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _varied_rows(500, seed=3)))
    _check_page(build_report(str(journal_only)), _reference(str(journal_only)))


def test_columns_of_other_kinds_are_reported_as_before(tmp_path, small_batches):
    """A hand-written Parquet manifest: no key, sizes as floats and bools, integer timings,
    several row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 1000
    rng = random.Random(5)
    table = pa.table({
        "uri": [f"/in/{i}.png" for i in range(n)],
        "status": [rng.choice(["ok", "ok", "invalid", "failed", None, "other"]) for _ in range(n)],
        "reason": [rng.choice([None, "why"]) for _ in range(n)],
        "bytes": pa.array([rng.choice([None, 0.0, 2.5, 1e6]) for _ in range(n)], pa.float64()),
        "input_bytes": pa.array([rng.choice([None, 7]) for _ in range(n)], pa.uint64()),
        "output_bytes": [rng.choice([None, True, False]) for _ in range(n)],
        "t_read": pa.array([rng.choice([None, 1, 2, 3]) for _ in range(n)], pa.int32()),
        "t_write": pa.array([None] * n, pa.float64()),
        "t_decode": [rng.choice(["slow", None]) for _ in range(n)],
        "level": [1] * n,
        "score": pa.array([rng.randrange(2**40) for _ in range(n)], pa.uint64()),
    })
    uri = str(tmp_path / "m.parquet")
    pq.write_table(table, uri, row_group_size=300)
    _check_page(build_report(uri, sample=7), _reference(uri, 7))


def test_statistics_are_exact():
    """Mean, median and 95th percentile of the report equal the statistics module's on the
    same values (a sum NumPy would round differently, an even count, signed zeros)."""
    rng = np.random.default_rng(1)
    cases = [np.array([1e16, 1.0, -1e16, 1.0, 3.0]), np.array([0.0, -0.0, -0.0, 0.0]),
             np.array([2.5]), rng.random(100_001) * 10.0 ** rng.integers(-8, 8, 100_001),
             rng.random(4096)]
    for values in cases:
        vals = values.tolist()
        p95 = sorted(vals)[min(len(vals) - 1, math.ceil(0.95 * len(vals)) - 1)]
        want = (statistics.fmean(vals), statistics.median(vals), p95)
        got = report._stats(values.copy())
        assert got == want and [math.copysign(1, x) for x in got] == [
            math.copysign(1, x) for x in want]


_MEASURE = textwrap.dedent("""
    import json, sys
    import pyarrow as pa
    from pixelmill.report import build_report

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    build_report(sys.argv[1])  # every lazy import, matplotlib's caches
    peaks = []
    for uri in sys.argv[2:]:
        pa.default_memory_pool().release_unused()
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak (VmHWM) from here
        build_report(uri)
        peaks.append(status("VmHWM") - before)
    print(json.dumps(peaks))
""")


def _big_manifest(path, n: int) -> str:
    """A job's manifest of ``n`` photos as ManifestWriter.close writes it (row groups of 65536
    rows), built from the rows a run gives, without a journal line per row."""
    import pyarrow.parquet as pq

    from pixelmill.manifest import rows_to_table

    def row(i: int) -> dict:
        uri = f"/data/photos/archive-2024/batch_{i // 997:05d}/IMG_{i:08d}_canon_eos_r5.jpg"
        r = {"key": uri, "uri": uri, "relpath": uri[13:], "status": "ok", "reason": None,
             "bytes": 2_000_000 + i % 9000, "width": 4000, "height": 3000, "out_width": 500,
             "out_height": 375, "sharpness": (i % 1000) / 10.0, "blurry": i % 13 == 0,
             "output": f"/data/thumbs/run/batch_{i // 997:05d}/IMG_{i:08d}_canon.webp",
             "output_bytes": 30_000 + i % 900, "sha256": f"{i * 2654435761:064x}"[-64:],
             "t_read": 0.004 + (i % 31) * 1e-4, "t_decode": 0.02 + (i % 41) * 1e-4,
             "t_process": 0.003, "t_encode": 0.01 + (i % 29) * 1e-4, "t_write": 0.001,
             "t_op0_resize": 0.001 + (i % 17) * 1e-4}
        if i % 33 == 5:
            r.update(status="invalid", reason=f"decode: cannot identify image file {i}")
        elif i % 97 == 11:
            r.update(status="failed", reason="pipeline: ValueError: cannot broadcast")
        return r

    writer = schema = None
    for start in range(0, n, 65536):
        table = rows_to_table([row(i) for i in range(start, min(n, start + 65536))])
        if writer is None:
            schema = table.schema.with_metadata({"pixelmill.elapsed": "100.0",
                                                 "pixelmill.processed": str(n)})
            writer = pq.ParquetWriter(str(path), schema)
        writer.write_table(table.cast(schema))
    writer.close()
    return str(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_the_reports_memory_is_small_per_row(tmp_path):
    """The peak memory of build_report over 300,000 rows: ~2 KB per row before (600 MB),
    now a fixed few tens of MB for the batches being read plus a few bytes per row (measured
    between manifests of 100,000 and 300,000 rows, both of several row groups)."""
    small = _big_manifest(tmp_path / "small.parquet", 100_000)
    large = _big_manifest(tmp_path / "large.parquet", 300_000)
    tiny = _write(str(tmp_path / "tiny.parquet"), _varied_rows(50))
    out = subprocess.run([sys.executable, "-c", _MEASURE, tiny, small, large], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    peak_small, peak_large = json.loads(out.strip().splitlines()[-1])
    per_row = peak_large / 300_000
    marginal = (peak_large - peak_small) / 200_000
    assert per_row < 400, (peak_small, peak_large)  # was ~2,100 bytes per row
    assert marginal < 100, (peak_small, peak_large)  # what grows with the rows: ~30 bytes
