"""storage: listing with filters and labels, atomic writes, errors — on memory://, local, s3://."""

from __future__ import annotations

import os

import fsspec
import numpy as np
import pytest

from pixelmill import storage
from pixelmill.errors import MissingDependencyError, StorageError, UsageError
from pixelmill.images import iter_images, read_image, write_image
from tests._s3server import s3_server


@pytest.fixture
def memtree():
    """A memory:// tree with images in partitioned sub-folders and a non-image."""
    fs = fsspec.filesystem("memory")
    root = "memory://tree-" + os.urandom(4).hex()
    for rel in ["label=cat/day=1/a.png", "label=cat/day=2/b.JPG", "label=dog/c.tif",
                "top.webp", "notes.txt", "label=dog/skip_me.png"]:
        fs.pipe(f"{root}/{rel}", b"x")
    yield root
    fs.rm(root.replace("memory://", "/"), recursive=True)


def rels(entries):
    return [e.relpath for e in entries]


def test_listing_flat_recursive_and_filters(memtree):
    assert rels(storage.list_files(memtree)) == ["top.webp"]
    assert rels(storage.list_files(memtree, recursive=True)) == [
        "label=cat/day=1/a.png", "label=cat/day=2/b.JPG", "label=dog/c.tif",
        "label=dog/skip_me.png", "top.webp"]
    assert rels(storage.list_files(memtree, recursive=True, include=["*.png"])) == [
        "label=cat/day=1/a.png", "label=dog/skip_me.png"]
    assert rels(storage.list_files(memtree, recursive=True, exclude=["skip_*", "*.webp"])) == [
        "label=cat/day=1/a.png", "label=cat/day=2/b.JPG", "label=dog/c.tif"]
    # include replaces the image-extension filter
    assert rels(storage.list_files(memtree, include=["*.txt"])) == ["notes.txt"]
    # URIs keep the form the user wrote and can be read back
    entry = storage.list_files(memtree)[0]
    assert entry.uri == f"{memtree}/top.webp" and entry.size == 1
    assert storage.read_bytes(entry.uri) == b"x"


def test_single_file_and_glob_urls(memtree):
    assert rels(storage.list_files(f"{memtree}/label=dog/c.tif")) == ["c.tif"]
    assert sorted(rels(storage.list_files(f"{memtree}/label=cat/*/*.png"))) == ["day=1/a.png"]


def test_labels_from_parent_and_partition(memtree):
    entries = storage.list_files(memtree, recursive=True)
    assert [storage.label_from_path(e.relpath, "parent") for e in entries] == [
        "day=1", "day=2", "label=dog", "label=dog", None]
    assert [storage.label_from_path(e.relpath, "partition") for e in entries] == [
        "cat", "cat", "dog", "dog", None]
    assert storage.label_from_path("year=2020/x.png", "partition") == "2020"
    with pytest.raises(UsageError, match="label-from"):
        storage.label_from_path("a/b.png", "grandparent")


def test_nonexistent_url_and_unknown_protocol(tmp_path):
    with pytest.raises(StorageError, match="no such file or folder"):
        storage.list_files(str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="unknown storage protocol 'nosuch'"):
        storage.list_files("nosuch://bucket/x")
    with pytest.raises(StorageError, match="no such file"):
        storage.read_bytes(str(tmp_path / "missing.png"))


def test_missing_client_names_the_extra():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"pixelmill\[gcs\]"):
            storage.get_fs("gs://bucket/x")
    else:  # pragma: no cover - gcsfs present
        pytest.skip("gcsfs is installed")


def test_parse_storage_options():
    assert storage.parse_storage_options(["anon=true", "endpoint_url=http://127.0.0.1:9",
                                          "retries=3"]) == {
        "anon": True, "endpoint_url": "http://127.0.0.1:9", "retries": 3}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        storage.parse_storage_options(["novalue"])


def test_write_atomic_local_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    storage.write_atomic(str(target), b"first")
    storage.write_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.bin"]
    (tmp_path / "blocker").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot write"):
        storage.write_atomic(str(tmp_path / "blocker" / "x.bin"), b"data")


def test_image_io_on_memory_and_local(tmp_path, photo):
    for base in (f"memory://io-{os.urandom(4).hex()}", str(tmp_path)):
        write_image(storage.join(base, "a photo ü.png"), photo)
        write_image(storage.join(base, "b.jpg"), photo, quality=90)
        np.testing.assert_array_equal(read_image(storage.join(base, "a photo ü.png")), photo)
        items = list(iter_images(base))
        assert [os.path.basename(i.uri) for i in items] == ["a photo ü.png", "b.jpg"]
        assert items[1].image.shape == photo.shape


def test_s3_through_a_local_moto_server(photo, engine):
    with s3_server(buckets=["photos"]) as so:
        write_image("s3://photos/set/cats/a.png", photo, storage_options=so)
        write_image("s3://photos/set/dogs/b.jpg", photo, storage_options=so)
        big = np.random.default_rng(1).integers(0, 255, (700, 900, 3), np.uint8)
        write_image("s3://photos/set/dogs/c.tif", big, storage_options=so)  # > 64 KiB
        fsspec.filesystem("s3", **so).pipe("s3://photos/set/dogs/bad.png", b"not a png")
        entries = storage.list_files("s3://photos/set", recursive=True, storage_options=so)
        assert [e.uri for e in entries] == ["s3://photos/set/cats/a.png",
                                            "s3://photos/set/dogs/b.jpg",
                                            "s3://photos/set/dogs/bad.png",
                                            "s3://photos/set/dogs/c.tif"]
        np.testing.assert_array_equal(read_image(entries[0].uri, storage_options=so), photo)
        labelled = list(iter_images("s3://photos/set", recursive=True, label_from="parent",
                                    storage_options=so))
        assert [i.label for i in labelled] == ["cats", "dogs", "dogs"]  # the bad file skipped

        from pixelmill.inventory import scan

        # the workers (other processes) reach the server with the same storage options
        table = scan("s3://photos/set", recursive=True, storage_options=so, engine=engine)
        assert table.column("valid").to_pylist() == [True, True, False, True]
        assert table.column("bytes").to_pylist()[2] == 9
        # a TIFF's header is read through a ranged file object, not the whole object
        assert table.to_pylist()[3]["width"] == 900 and table.to_pylist()[3]["channels"] == 3
        verified = scan("s3://photos/set", recursive=True, storage_options=so, engine=engine,
                        verify=True, sha256=True)
        assert verified.column("valid").to_pylist() == [True, True, False, True]
        import hashlib

        png = fsspec.filesystem("s3", **so).cat_file("photos/set/cats/a.png")
        assert verified.column("sha256").to_pylist()[0] == hashlib.sha256(png).hexdigest()


def test_read_parquet_any_url_single_threaded_and_rejects_non_parquet(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"key": ["a", "b"], "n": [1, 2]})
    storage.write_atomic("memory://pq/t.parquet", _parquet_bytes(table))
    assert storage.read_parquet("memory://pq/t.parquet").equals(table)
    assert storage.read_parquet("memory://pq/t.parquet", schema_only=True) == table.schema
    # the read stays on the calling thread (the aborts at exit it was meant to prevent came
    # from Python-owned memory: see the test below)
    seen = {}
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: seen.update(k) or real(*a, **k))
    storage.read_parquet("memory://pq/t.parquet")
    assert seen.get("use_threads") is False
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0 not parquet")
    with pytest.raises(UsageError, match=r"photo\.jpg: not a Parquet file"):
        storage.read_parquet(str(jpeg))


@pytest.mark.slow
def test_read_parquet_leaves_nothing_that_aborts_the_interpreter_at_exit(tmp_path):
    """A process that read a Parquet file exits 0. Given Python memory, pyarrow's threads
    could drop the reader's last reference while the interpreter was exiting and abort it
    (exit 134, "terminate called without an active exception"): with torch imported, 3 of 6
    ``pixelmill upscale --resume`` runs (which read the manifest) did."""
    import subprocess
    import sys

    import pyarrow as pa

    pytest.importorskip("torch")
    path = tmp_path / "manifest.parquet"
    path.write_bytes(_parquet_bytes(pa.table({"key": [f"k{i}" for i in range(50)],
                                              "status": ["ok"] * 50})))
    code = ("import torch\nfrom pixelmill import storage\n"
            f"assert storage.read_parquet({str(path)!r}).num_rows == 50\n")
    # one after another (run side by side, they did not abort): before the fix 4 to 7 of 16
    # such processes aborted, so all 8 pass by chance in 1 to 3 % of runs
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120) for _ in range(8)]
    assert [r.returncode for r in runs] == [0] * 8, [r.stderr[-300:] for r in runs]


def _parquet_bytes(table) -> bytes:
    import io

    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_check_writable(tmp_path):
    existing = tmp_path / "out" / "manifest.parquet"
    existing.parent.mkdir()
    existing.write_bytes(b"x")
    storage.check_writable(str(existing))  # an earlier run's file: its folder takes the new one
    storage.check_writable(str(tmp_path / "new" / "deeper" / "out"))  # made when written
    storage.check_writable("memory://anything/out")
    with pytest.raises(StorageError, match="cannot write under"):
        storage.check_writable(str(existing / "below-a-file"))


def test_recursive_listing_follows_linked_folders_but_not_loops(tmp_path):
    """`photos/cats -> /elsewhere/cats` is part of the collection (as `find -L` lists it); it
    was skipped silently, no row, exit 0. A link back to a folder the walk is inside is not
    followed, and a dangling link to a folder is listed (reading it says why)."""
    from pixelmill.storage import list_files

    elsewhere = tmp_path / "disk2" / "cats"
    elsewhere.mkdir(parents=True)
    (elsewhere / "c.png").write_bytes(b"x")
    root = tmp_path / "photos"
    (root / "dogs").mkdir(parents=True)
    (root / "dogs" / "d.png").write_bytes(b"x")
    os.symlink(elsewhere, root / "cats")
    os.symlink("..", root / "dogs" / "up")  # a loop
    os.symlink(root, root / "dogs" / "again")  # a loop through an absolute link
    rels = [e.relpath for e in list_files(str(root), recursive=True)]
    assert rels == ["cats/c.png", "dogs/d.png"]
    assert [e.relpath for e in list_files(str(root))] == []  # not recursive: no sub-folders


def test_s3_listing_keeps_names_and_sizes_only_and_no_listings_cache():
    """A bucket of a million photos must not leave ~2 KB per object in the driver: the listing
    is read page by page (names and sizes only) and fsspec's listings cache, on by default in a
    user's options, holds nothing under the listed folder afterwards — with the same entries
    as ``fs.find`` gives, across pages (moto's are 1,000 keys), without a sibling prefix."""
    import concurrent.futures

    with s3_server(buckets=["big"]) as so:
        options = {k: v for k, v in so.items() if k != "use_listings_cache"}  # a user's options
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **so)
        keys = {f"set/many/{i:04d}.jpg": b"x" * (i % 7) for i in range(1005)}
        keys.update({"set/a/1.jpg": b"abc", "set/a/b/2.png": b"abcde", "set/3.JPG": b"ab",
                     "set/notes.txt": b"n", "set/sub/": b"", "set2/4.jpg": b"sibling"})
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: fs.pipe(f"big/{kv[0]}", kv[1]), keys.items()))

        entries = storage.list_files("s3://big/set", recursive=True, storage_options=options)
        found = fs.find("big/set", detail=True, withdirs=False)
        want = sorted((f"s3://{p}", d["size"]) for p, d in found.items()
                      if p.lower().endswith((".jpg", ".png")))
        assert [(e.uri, e.size) for e in entries] == want
        assert len(want) == 1005 + 3 and not any("set2" in u for u, _ in want)
        assert entries[0].relpath == "3.JPG" and entries[1].relpath == "a/1.jpg"

        used, _ = storage.get_fs("s3://big/set", options)  # the instance the listing used
        assert used.dircache is not None and getattr(used.dircache, "use_listings_cache", True)
        cached = [k for k in used.dircache if k == "big/set" or k.startswith("big/set/")]
        assert cached == []
        flat = storage.list_files("s3://big/set", storage_options=options)  # not recursive
        globbed = storage.list_files("s3://big/set/a/*.jpg", storage_options=options)
        assert rels(flat) == ["3.JPG"] and rels(globbed) == ["1.jpg"]
        assert [k for k in used.dircache if k.startswith("big")] == []
