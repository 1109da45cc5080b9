"""Manifest rows held as Arrow tables: gathered in chunks, they must give exactly the table the
rows would give all at once (columns, types, mixed kinds, last row per key), and hold far less
memory than one dict per row."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from pixelmill._tables import RowChunks, concat, last_row_per_key, rows_to_table, select_rows
from pixelmill.manifest import ManifestWriter, read_manifest, read_manifest_table


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Rows as a job makes them: ok rows with measurements, invalid rows without, a label that
    is a number in some rows and text in others, a vector, keys repeated (retries)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        key = f"/in/{rng.randrange(n // 2)}.jpg"
        row = {"key": key, "uri": key, "status": rng.choice(["ok", "ok", "invalid"])}
        if row["status"] == "ok":
            row.update(width=rng.randrange(1, 99), sharpness=rng.random(), vec_f=[0.5, i])
        else:
            row["reason"] = "decode: bad"
        if i % 7 == 0:
            row["label"] = rng.choice([3, "cat"]) if i > n // 2 else 3
        if i % 11 == 0:
            row["t_total"] = 1 if i % 2 else 0.5  # int in some rows, float in others
        rows.append(row)
    return rows


def _last_per_key_in_python(rows: list[dict], *, sort: bool) -> list[dict]:
    merged: dict = {}
    for row in rows:
        merged[row["key"]] = row
    out = list(merged.values())
    if sort:
        out.sort(key=lambda r: r["key"])
    return out


@pytest.mark.parametrize("chunk", [1, 7, 100, 10_000])
def test_chunks_give_the_table_of_all_rows(chunk):
    rows = _rows(500)
    chunks = RowChunks(chunk)
    for row in rows:
        chunks.append(dict(row))
    got, want = chunks.table(), rows_to_table(rows)
    assert len(chunks) == 500
    assert got.schema == want.schema  # label: text (mixed kinds), t_total: double, vec: float32
    assert got.to_pylist() == want.to_pylist()
    assert got.schema.field("label").type == pa.string()


def test_concat_keeps_text_where_one_part_has_text():
    a = rows_to_table([{"key": "a", "label": 3, "x": 1}])
    b = rows_to_table([{"key": "b", "label": "cat", "y": True}])
    c = rows_to_table([{"key": "c", "x": 2.5}])
    table = concat([a, b, c])
    assert table.to_pylist() == rows_to_table(
        [{"key": "a", "label": 3, "x": 1}, {"key": "b", "label": "cat", "y": True},
         {"key": "c", "x": 2.5}]).to_pylist()
    assert table.column_names == ["key", "label", "x", "y"]
    assert concat([]).num_rows == 0


@pytest.mark.parametrize("sort", [False, True])
def test_last_row_per_key_matches_a_dict(sort):
    rows = _rows(800, seed=3)
    table = last_row_per_key(rows_to_table(rows), sort=sort)
    want = rows_to_table(_last_per_key_in_python(rows, sort=sort))
    assert table.to_pylist() == want.to_pylist()
    assert len(set(table.column("key").to_pylist())) == table.num_rows < 800


def test_last_row_per_key_sorts_by_code_point_and_keeps_rows_without_a_key():
    keys = ["b", "é", "a", "Z", "ä", "b"]
    table = rows_to_table([{"key": k, "i": i} for i, k in enumerate(keys)])
    assert last_row_per_key(table, sort=True).column("key").to_pylist() == sorted(set(keys))
    assert last_row_per_key(table, sort=True).column("i").to_pylist()[2] == 5  # "b": its last row
    unkeyed = rows_to_table([{"key": None, "i": 0}, {"key": "a", "i": 1}, {"key": None, "i": 2},
                             {"key": "a", "i": 3}])
    assert last_row_per_key(unkeyed).column("i").to_pylist() == [0, 2, 3]


def test_select_rows_reads_only_what_is_asked():
    table = last_row_per_key(rows_to_table(_rows(300, seed=1)))
    ok = select_rows(table, ("key", "status", "nothing"), status="ok")
    assert ok and all(set(r) == {"key", "status"} and r["status"] == "ok" for r in ok)
    assert len(ok) == table.column("status").to_pylist().count("ok")
    one = select_rows(table, key=ok[0]["key"])
    assert [r["key"] for r in one] == [ok[0]["key"]] and "sharpness" in one[0]
    assert select_rows(table, key_prefix="/in/1") == [
        r for r in table.to_pylist() if r["key"].startswith("/in/1")]
    assert select_rows(pa.table({}), status="ok") == []


def test_writer_merges_earlier_journal_and_new_rows_as_dicts_would(tmp_path):
    """Earlier Parquet rows, a killed run's journal and this run's rows (over several chunks):
    the manifest is the last row per key, in key order, with the earlier file's settings gone."""
    uri = str(tmp_path / "m.parquet")
    rows = _rows(14000, seed=5)
    first, killed, now = rows[:3000], rows[3000:6000], rows[6000:]
    with ManifestWriter(uri, metadata={"pixelmill.run": "1"}) as w:
        w.extend(first)
    w = ManifestWriter(uri, keep_existing=True)
    w.extend(killed)
    w.abandon()  # the journal keeps them
    assert read_manifest(uri) == read_manifest_table(uri).to_pylist()
    assert len(read_manifest(uri)) == len(_last_per_key_in_python(first + killed, sort=False))
    w = ManifestWriter(uri, keep_existing=True)
    assert w.earlier_table.num_rows == len(_last_per_key_in_python(first + killed, sort=False))
    w.extend(now)
    assert len(w._rows._tables) >= 1  # held as Arrow tables, not dicts
    table = w.close()
    want = rows_to_table(_last_per_key_in_python(rows, sort=True))
    assert table.to_pylist() == want.to_pylist()
    assert not (table.schema.metadata or {})  # the first run's settings are not carried over


def test_forget_drops_earlier_rows(tmp_path):
    uri = str(tmp_path / "m.parquet")
    with ManifestWriter(uri) as w:
        w.extend({"key": k, "status": "failed"} for k in "abcd")
    w = ManifestWriter(uri, keep_existing=True)
    w.forget(iter(["b", "d", "zz"]))
    assert [r["key"] for r in w.earlier_rows] == ["a", "c"]
    assert w.close().column("key").to_pylist() == ["a", "c"]


def test_rows_are_held_compactly(tmp_path):
    """Held as dicts, a job row cost ~1.2 KB in the driver; as Arrow, what its values do."""
    w = ManifestWriter(str(tmp_path / "m.parquet"))
    n = 3 * 4096
    for i in range(n):
        w.append({"key": f"/data/f{i % 100:03d}/img{i:07d}.jpg", "status": "ok",
                  "reason": None, "width": 1920, "height": 1080, "t_decode": 0.0038,
                  "sha256": "ab" * 32, "output": f"/out/f{i % 100:03d}/img{i:07d}.jpg"})
    assert len(w._rows._pending) < 4096
    held = sum(t.nbytes for t in w._rows._tables)
    assert held / (n - len(w._rows._pending)) < 250  # bytes per row: the values and offsets
    assert w.close().num_rows == n


def test_an_int_beyond_64_bits_is_kept_as_text():
    """pa.array raised OverflowError (not ArrowInvalid): the manifest was lost at close."""
    table = rows_to_table([{"key": "a", "n": 2**70}, {"key": "b", "n": 1}])
    assert table.column("n").to_pylist() == [str(2**70), "1"]


def test_close_writes_row_group_by_row_group_what_the_table_holds(tmp_path, monkeypatch):
    """close() copies one row group at a time into the file (not the whole table first): the
    file and the returned columns hold the same rows as the merged table."""
    import pyarrow.parquet as pq

    import pixelmill.manifest as manifest

    monkeypatch.setattr(manifest, "_WRITE_ROWS", 97)
    uri = str(tmp_path / "m.parquet")
    rows = _rows(1000, seed=9)
    w = ManifestWriter(uri, metadata={"pixelmill.job": "x"})
    w.extend(rows)
    want = w.table(sort=True)
    got = w.close(columns=("key", "status", "nothing"))
    assert got.column_names == ["key", "status"]
    assert got.to_pylist() == want.select(["key", "status"]).to_pylist()
    file = pq.ParquetFile(uri)
    assert file.metadata.num_row_groups == -(-want.num_rows // 97) > 1
    assert file.read().to_pylist() == want.to_pylist()
    assert file.schema_arrow.metadata[b"pixelmill.job"] == b"x"
