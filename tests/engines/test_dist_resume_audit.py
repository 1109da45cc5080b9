"""Audit of manifests from distributed runs and resumes (8,005 inputs, Dask and Spark, SIGKILLs).

The rows were equal on every engine and after every kill + resume; the Parquet manifest's
*column order* was not: since rows are held as Arrow tables (c944082) the columns come in the
order rows happened to finish in (and in the order an interrupted run journaled them), so one
job wrote manifests with different schemas on local/dask/spark and after --resume. Columns
now come first-seen over the kept rows in key order, whatever order rows finish in.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pixelmill.manifest import ManifestWriter

INVALID = {"key": "/in/a.png", "status": "invalid", "reason": "bad", "bytes": 0, "t_read": 0.1}
GRAY = {"key": "/in/b.png", "status": "ok", "reason": None, "bytes": 9, "width": 8, "mean": 1.0,
        "t_read": 0.2}
RGB = {"key": "/in/c.png", "status": "ok", "reason": None, "bytes": 9, "width": 8,
       "mean_r": 1.0, "t_read": 0.3}
#: first-seen in key order, as one table over the rows sorted by key
EXPECTED = ["key", "status", "reason", "bytes", "t_read", "width", "mean", "mean_r"]


def _manifest(tmp_path, name, rows, journaled=0):
    uri = str(tmp_path / f"{name}.parquet")
    if journaled:  # an interrupted run journaled these rows; a resume does the rest
        w = ManifestWriter(uri)
        w.extend(rows[:journaled])
        w.abandon()
        w = ManifestWriter(uri, keep_existing=True)
        w.extend(rows[journaled:])
    else:
        w = ManifestWriter(uri)
        w.extend(rows)
    w.close()
    return pq.read_table(uri)


@pytest.mark.parametrize(("order", "journaled"), [
    ((GRAY, RGB, INVALID), 0),
    ((INVALID, RGB, GRAY), 0),   # another engine: the rows finish in another order
    ((RGB, GRAY, INVALID), 0),
    ((GRAY, INVALID, RGB), 1),   # SIGKILLed after one row, then --resume
    ((RGB, INVALID, GRAY), 2),
])
def test_manifest_columns_do_not_depend_on_finishing_order(tmp_path, order, journaled):
    table = _manifest(tmp_path, "m", list(order), journaled)
    assert table.schema.names == EXPECTED


def test_manifest_rows_do_not_depend_on_finishing_order(tmp_path):
    a = _manifest(tmp_path, "a", [GRAY, RGB, INVALID])
    b = _manifest(tmp_path, "b", [INVALID, RGB, GRAY])
    c = _manifest(tmp_path, "c", [RGB, INVALID, GRAY], journaled=2)
    assert a.to_pylist() == b.to_pylist() == c.to_pylist()
    assert [r["key"] for r in a.to_pylist()] == ["/in/a.png", "/in/b.png", "/in/c.png"]
