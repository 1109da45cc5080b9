"""Manifest semantics: journal while running, Parquet when closed, last row per key wins."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelmill.manifest import (
    ManifestWriter,
    journal_path,
    read_manifest,
    read_manifest_metadata,
    rows_to_table,
)


def test_journal_then_parquet(tmp_path):
    uri = str(tmp_path / "m.parquet")
    w = ManifestWriter(uri, metadata={"pixelmill.engine": "local"})
    w.append({"key": "a", "status": "failed", "reason": "crash: boom"})
    w.append({"key": "b", "status": "ok", "width": np.int64(3)})
    # while running, only the journal exists, and readers see it
    assert not (tmp_path / "m.parquet").exists()
    assert {r["key"]: r["status"] for r in read_manifest(uri)} == {"a": "failed", "b": "ok"}
    w.close()
    assert not (tmp_path / "m.parquet.journal.jsonl").exists()
    # a resumed run keeps earlier rows; a new row for a key replaces the old one
    w = ManifestWriter(uri, keep_existing=True)
    w.append({"key": "a", "status": "ok", "width": 5})
    table = w.close()
    assert table.num_rows == 2
    rows = {r["key"]: r for r in read_manifest(uri)}
    assert rows["a"]["status"] == "ok" and rows["a"]["width"] == 5
    assert rows["b"]["width"] == 3
    assert read_manifest_metadata(uri) == {}  # the second writer had no metadata


def test_a_line_cut_by_a_kill_is_ignored(tmp_path):
    uri = str(tmp_path / "m.parquet")
    with open(journal_path(uri), "w") as f:
        f.write(json.dumps({"key": "a", "status": "ok"}) + "\n")
        f.write('{"key": "b", "stat')  # killed mid-line
    assert [r["key"] for r in read_manifest(uri)] == ["a"]
    w = ManifestWriter(uri, keep_existing=True)
    assert [r["key"] for r in w.earlier_rows] == ["a"]
    w.close()


def test_vector_columns_are_float32_lists_and_metadata_is_kept(tmp_path):
    rows = [{"key": "a", "vec_hist": [0.5, 0.25], "sharpness": 1.5},
            {"key": "b", "vec_hist": None, "sharpness": 2}]
    table = rows_to_table(rows)
    assert table.schema.field("vec_hist").type == pa.list_(pa.float32())
    assert table.schema.field("sharpness").type == pa.float64()
    uri = str(tmp_path / "m.parquet")
    with ManifestWriter(uri, metadata={"pixelmill.elapsed": "1.5"}) as w:
        w.extend(rows)
    assert read_manifest_metadata(uri) == {"pixelmill.elapsed": "1.5"}
    assert pq.read_table(uri).column("vec_hist").to_pylist() == [[0.5, 0.25], None]


def test_mixed_kinds_become_text():
    table = rows_to_table([{"key": "a", "x": 1}, {"key": "b", "x": "two"}])
    assert table.column("x").to_pylist() == ["1", "two"]


def test_rows_are_written_in_key_order(tmp_path):
    """Rows were in the order workers finished them, which differs between runs and engines
    (the report's before/after sample showed other images on each engine)."""
    from pixelmill.manifest import ManifestWriter, read_manifest

    uri = str(tmp_path / "m.parquet")
    with ManifestWriter(uri) as w:
        for key in ("/p/b.jpg", "/p/c.jpg", "/p/a.jpg"):
            w.append({"key": key, "uri": key, "status": "ok"})
    assert [r["key"] for r in read_manifest(uri)] == ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"]
    with ManifestWriter(uri, keep_existing=True) as w:  # a resume's rows fall in their place
        w.append({"key": "/p/0.jpg", "uri": "/p/0.jpg", "status": "ok"})
    assert [r["key"] for r in read_manifest(uri)] == ["/p/0.jpg", "/p/a.jpg", "/p/b.jpg",
                                                       "/p/c.jpg"]
