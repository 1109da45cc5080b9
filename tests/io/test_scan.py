"""scan: every bad input is a row with a reason; labels, checksums, manifest; the CLI's exits."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fsspec.implementations.memory import MemoryFileSystem

from pixelmill import codecs
from pixelmill.cli import cli, main
from pixelmill.engines import UnitFailure
from pixelmill.errors import ExitCode, NoInputError, StorageError, UsageError
from pixelmill.inventory import SCAN_SCHEMA, _InlineEngine, scan, summarize
from pixelmill.storage import FileEntry
from tests._images import bomb_png


def by_name(table) -> dict[str, dict]:
    return {os.path.basename(r["uri"]): r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def collection(tmp_path_factory, photo, gray_photo):
    """A labelled folder of good photos and one of each kind of bad file."""
    root = tmp_path_factory.mktemp("collection")
    (root / "cats").mkdir()
    (root / "dogs").mkdir()
    good = {
        "cats/a photo.jpg": codecs.encode(photo, "jpg", quality=90),
        "cats/日本 ü.png": codecs.encode(gray_photo, "png"),
        "dogs/deep16.tif": codecs.encode(photo.astype(np.uint16) * 257, "tif"),
        "dogs/alpha.webp": codecs.encode(np.dstack([photo, gray_photo]), "webp"),
    }
    jpeg = good["cats/a photo.jpg"]
    png = bytearray(codecs.encode(photo, "png"))
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF
    bad = {
        "dogs/zero.jpg": b"",
        "dogs/text.jpg": b"these are my holiday notes, not a photo\n",
        "dogs/truncated.jpg": jpeg[: len(jpeg) // 2],
        "dogs/badcrc.png": bytes(bad_crc),
        "dogs/bomb.png": bomb_png(),
    }
    for rel, data in {**good, **bad}.items():
        (root / rel).write_bytes(data)
    os.symlink("loop_b.jpg", root / "dogs" / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "dogs" / "loop_b.jpg")
    os.symlink("..", root / "dogs" / "up")  # a folder loop for --recursive
    return root


@pytest.fixture(scope="module")
def scanned(collection, engine):
    return scan(str(collection), recursive=True, label_from="parent", engine=engine)


def test_each_good_file_is_valid_with_decode_shape(scanned, collection):
    rows = by_name(scanned)
    for name in ["a photo.jpg", "日本 ü.png", "deep16.tif", "alpha.webp"]:
        row = rows[name]
        assert row["valid"] and row["reason"] is None, name
        image = codecs.decode((collection / row["uri"]).read_bytes())
        assert (row["height"], row["width"]) == image.shape[:2], name
        assert row["channels"] == (1 if image.ndim == 2 else image.shape[2]), name
    assert rows["deep16.tif"]["bit_depth"] == 16 and rows["deep16.tif"]["mode"] == "RGB"
    assert rows["alpha.webp"]["mode"] == "RGBA"
    assert rows["日本 ü.png"]["uri"] == str(collection / "cats" / "日本 ü.png")


def test_zero_byte_file(scanned):
    row = by_name(scanned)["zero.jpg"]
    assert not row["valid"] and row["reason"] == "empty file (0 bytes)" and row["bytes"] == 0


def test_text_file_named_jpg(scanned):
    row = by_name(scanned)["text.jpg"]
    assert not row["valid"] and "not a recognised image" in row["reason"]


def test_truncated_jpeg_caught_by_verify_only(scanned, collection, engine):
    assert by_name(scanned)["truncated.jpg"]["valid"]  # the header is intact
    verified = by_name(scan(str(collection / "dogs"), verify=True, engine=engine))
    row = verified["truncated.jpg"]
    assert not row["valid"] and "truncated" in row["reason"]
    assert row["width"] == 128  # the header was still read


def test_png_with_bad_crc(scanned):
    row = by_name(scanned)["badcrc.png"]
    assert not row["valid"] and "CRC" in row["reason"]


def test_png_header_claiming_100000_squared_is_rejected_by_the_pixel_limit(scanned):
    row = by_name(scanned)["bomb.png"]
    assert not row["valid"] and "pixel limit" in row["reason"]
    assert (row["width"], row["height"]) == (100_000, 100_000)


def test_symlink_loops(scanned):
    rows = by_name(scanned)
    for name in ("loop_a.jpg", "loop_b.jpg"):
        assert not rows[name]["valid"]
        assert "symbolic links" in rows[name]["reason"]
    assert not any("/up/" in uri for uri in scanned.column("uri").to_pylist())


def test_labels_from_parent(scanned):
    assert by_name(scanned)["a photo.jpg"]["label"] == "cats"
    assert by_name(scanned)["bomb.png"]["label"] == "dogs"
    summary = summarize(scanned)
    assert summary["by_label"] == {"cats": 2, "dogs": 3}  # valid files (the truncated JPEG too)


class DenyingFS(MemoryFileSystem):
    """A memory filesystem that refuses to open files named ``secret*`` (no read permission)."""

    protocol = "denyfs"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace("denyfs://", "memory://", 1))

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode and os.path.basename(path).startswith("secret"):
            raise PermissionError(13, "Permission denied", path)
        return super()._open(path, mode, **kwargs)

    def cat_file(self, path, start=None, end=None, **kwargs):
        if os.path.basename(path).startswith("secret"):
            raise PermissionError(13, "Permission denied", path)
        return super().cat_file(path, start, end, **kwargs)


def test_file_without_read_permission(photo, tmp_path, engine):
    fsspec.register_implementation("denyfs", DenyingFS, clobber=True)
    root = f"denyfs://perm-{uuid.uuid4().hex[:8]}"
    fs = DenyingFS()
    fs.pipe(f"{root}/open.png", codecs.encode(photo, "png"))
    fs.pipe(f"{root}/secret.png", codecs.encode(photo, "png"))
    rows = by_name(scan(root, engine=_InlineEngine()))
    assert rows["open.png"]["valid"]
    assert not rows["secret.png"]["valid"] and rows["secret.png"]["reason"] == "permission denied"
    # the same on local disk when this user really cannot read (never as root)
    locked = tmp_path / "locked.png"
    locked.write_bytes(codecs.encode(photo, "png"))
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as a user who can read a mode-000 file (root)")
    row = by_name(scan(str(tmp_path), engine=engine))["locked.png"]
    assert row["reason"] == "permission denied"


def test_label_from_partition_and_filters_on_memory(photo):
    root = f"memory://scan-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    png = codecs.encode(photo, "png")
    for rel in ["label=cat/day=1/x.png", "label=dog/y.png", "label=dog/skip.png", "z.png"]:
        fs.pipe(f"{root}/{rel}", png)
    table = scan(root, recursive=True, label_from="partition", exclude=["skip*"])
    assert [(os.path.basename(u), lab) for u, lab in zip(
        table.column("uri").to_pylist(), table.column("label").to_pylist(), strict=True)] == [
        ("x.png", "cat"), ("y.png", "dog"), ("z.png", None)]


def test_sha256_matches_hashlib(collection, engine):
    table = scan(str(collection / "cats"), sha256=True, engine=engine)
    assert table.column_names == SCAN_SCHEMA.names
    for row in table.to_pylist():
        assert row["sha256"] == hashlib.sha256(Path(row["uri"]).read_bytes()).hexdigest()
    assert "sha256" not in scan(str(collection / "cats"), engine=engine).column_names
    # the checksum of the file's bytes, image or not (it was null for files that are not one)
    rows = scan(str(collection / "dogs"), sha256=True, engine=engine).to_pylist()
    bad = [r for r in rows if Path(r["uri"]).name in ("zero.jpg", "text.jpg")]
    assert len(bad) == 2 and not any(r["valid"] for r in bad)
    for row in bad:
        assert row["sha256"] == hashlib.sha256(Path(row["uri"]).read_bytes()).hexdigest()


def test_nonexistent_url_unknown_protocol_and_empty_folder(tmp_path):
    with pytest.raises(StorageError, match="no such file or folder"):
        scan(str(tmp_path / "nothing-here"))
    with pytest.raises(UsageError, match="unknown storage protocol"):
        scan("nosuch://bucket/photos")
    with pytest.raises(NoInputError, match="empty"):
        scan(str(tmp_path))
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(NoInputError, match="1 other files"):
        scan(str(tmp_path))
    with pytest.raises(UsageError, match="label-from"):
        scan(str(tmp_path), label_from="folder")


class CrashingEngine(_InlineEngine):
    """Reports a worker crash for any unit holding ``crash.png`` (as LocalEngine would)."""

    def map(self, fn, units, *, timeout=None, batch_size=None):
        for i, unit in enumerate(units):
            if any(e.uri.endswith("crash.png") for e in unit):
                yield i, UnitFailure("worker process died (signal SIGSEGV)")
            else:
                yield i, fn(unit)


def test_a_crashing_file_costs_only_its_own_row(photo, monkeypatch):
    from pixelmill import inventory

    root = f"memory://crash-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    for name in ["a.png", "crash.png", "c.png"]:
        fs.pipe(f"{root}/{name}", codecs.encode(photo, "png"))
    monkeypatch.setattr(inventory, "_InlineEngine", CrashingEngine)
    monkeypatch.setattr(inventory, "_units", lambda entries, workers: [tuple(entries)])
    rows = by_name(scan(root))
    assert [rows[n]["valid"] for n in ["a.png", "crash.png", "c.png"]] == [True, False, True]
    assert rows["crash.png"]["reason"] == "worker crashed: worker process died (signal SIGSEGV)"


def test_scan_file_never_raises_on_odd_entries(tmp_path):
    from pixelmill.inventory import ScanOptions, scan_file

    row = scan_file(FileEntry(str(tmp_path), 0, "x"), ScanOptions())
    assert not row["valid"] and row["reason"] == "is a folder"
    row = scan_file(FileEntry(str(tmp_path / "gone.png"), 5, "gone.png"), ScanOptions())
    assert not row["valid"] and "no such file" in row["reason"]


# -- the command -------------------------------------------------------------------------
def test_cli_every_flag_json_and_manifest(collection, tmp_path):
    out = tmp_path / "manifest.parquet"
    result = CliRunner().invoke(cli, [
        "scan", str(collection), "--recursive", "--glob", "*.jpg", "--glob", "*.png",
        "--exclude", "bomb*", "--label-from", "parent", "--verify", "--sha256",
        "--out", str(out), "--json", "--workers", "1", "--max-pixels", "1000000"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    summary = json.loads(result.output)
    names = {os.path.basename(u) for u in pq.read_table(out).column("uri").to_pylist()}
    assert names == {"a photo.jpg", "日本 ü.png", "zero.jpg", "text.jpg", "truncated.jpg",
                     "badcrc.png", "loop_a.jpg", "loop_b.jpg"}
    table = pq.read_table(out)
    assert table.column_names == SCAN_SCHEMA.names
    assert summary["valid"] == 2 and summary["invalid"] == 6
    assert summary["by_label"] == {"cats": 2}
    assert summary["by_format"] == {"jpg": 1, "png": 1}
    assert set(summary["invalid_by_reason"]) == {
        "empty file", "not a recognised image format", "truncated JPEG data",
        "corrupt PNG header", "cannot read"}
    assert summary["manifest"] == str(out)


def test_cli_out_replaces_a_file_only_with_overwrite(collection, tmp_path, capsys):
    """`--out` wrote over any file, an earlier inventory or an image of the scanned folder."""
    victim = tmp_path / "a.jpg"
    victim.write_bytes(b"a photo of the user's")
    argv = ["scan", str(collection / "cats"), "--workers", "1", "--out", str(victim)]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--out" in err and "already exists" in err and "--overwrite" in err, err
    assert victim.read_bytes() == b"a photo of the user's"
    assert main([*argv, "--overwrite"]) == ExitCode.OK
    assert pq.read_table(victim).num_rows == 2
    # a scanned file itself, even with --overwrite (it became the inventory)
    scanned = sorted((collection / "cats").iterdir())[0]
    before = scanned.read_bytes()
    assert main(["scan", str(collection / "cats"), "--workers", "1", "--out", str(scanned),
                 "--overwrite"]) == ExitCode.USAGE
    assert "is one of the scanned files" in capsys.readouterr().err
    assert scanned.read_bytes() == before


def test_cli_text_summary_and_ok_exit(collection):
    result = CliRunner().invoke(cli, ["scan", str(collection / "cats"), "--workers", "1"])
    assert result.exit_code == ExitCode.OK, result.output
    assert "2 files" in result.output and "2 valid, 0 invalid" in result.output
    assert "by format:" in result.output and "by size:" in result.output


def test_cli_errors_exit_before_any_work(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing")]) == ExitCode.ERROR
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["scan", "nosuch://bucket"]) == ExitCode.USAGE
    assert "unknown storage protocol 'nosuch'" in capsys.readouterr().err
    assert main(["scan", str(tmp_path)]) == ExitCode.NO_INPUT
    assert "no image files found" in capsys.readouterr().err
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"")
    assert main(["scan", str(tmp_path)]) == ExitCode.NO_INPUT  # it said "the folder is empty"
    assert "(1 in sub-folders, not searched: --recursive)" in capsys.readouterr().err
    assert main(["scan", str(tmp_path), "--label-from", "nope"]) == ExitCode.USAGE
    assert main(["scan", str(tmp_path), "--storage-option", "novalue"]) == ExitCode.USAGE


def test_jpeg_whose_header_lies_beyond_the_first_read(photo, tmp_path, engine):
    from PIL import Image

    big_icc = b"\0" * 200_000  # a 200 KB ICC profile: the frame header comes after it
    path = tmp_path / "icc.jpg"
    Image.fromarray(photo).save(path, "JPEG", icc_profile=big_icc)
    data = path.read_bytes()
    assert data.find(b"\xff\xc0") > 64 * 1024
    row = scan(str(tmp_path), engine=engine).to_pylist()[0]
    assert row["valid"] and (row["width"], row["height"]) == (128, 96)
    assert row["bytes"] == len(data)


def test_file_urls_are_local_files(photo, tmp_path):
    from pixelmill.inventory import ScanOptions, scan_file

    path = tmp_path / "a.png"
    path.write_bytes(codecs.encode(photo, "png"))
    row = scan_file(FileEntry(path.as_uri(), 0, "a.png"), ScanOptions(verify=True))
    assert row["valid"] and row["width"] == 128
    table = scan(path.as_uri(), engine=_InlineEngine())
    assert table.column("valid").to_pylist() == [True]


def test_a_folder_that_cannot_be_listed_is_an_invalid_row(tmp_path, photo, monkeypatch, capsys):
    """An unreadable sub-folder (chmod 000) was skipped silently: its images were in no row
    and the scan exited 0. Simulated (the tests run as root, which reads any folder)."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").mkdir()
    (tmp_path / "ok" / "a.png").write_bytes(codecs.encode(photo, "png"))
    (tmp_path / "locked" / "b.png").write_bytes(codecs.encode(photo, "png"))
    locked, real = str(tmp_path / "locked"), os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rows = by_name(scan(str(tmp_path), recursive=True, engine=_InlineEngine()))
    assert rows["a.png"]["valid"]
    assert rows["locked"]["valid"] is False and rows["locked"]["relpath"] == "locked"
    assert rows["locked"]["reason"] == "cannot list folder: Permission denied"
    assert main(["scan", str(tmp_path), "-r", "--engine", "local", "--workers", "1",
                 "--no-progress"]) == ExitCode.PARTIAL
    assert "cannot list folder" in capsys.readouterr().out
    # a folder with nothing listable but the locked folder is not "no input" either
    (tmp_path / "ok" / "a.png").unlink()
    assert len(scan(str(tmp_path), recursive=True, engine=_InlineEngine())) == 1
