"""scan on awkward real collections: names that are not UTF-8, globs that match nothing, and a
``--out`` that is checked before any file is read (and never replaces a scanned image reached
through a linked folder)."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from pixelmill import codecs
from pixelmill.cli import main
from pixelmill.errors import ExitCode, NoInputError
from pixelmill.inventory import _InlineEngine, scan

#: the reason of a file whose name is not UTF-8 (inventory.NOT_UTF8_REASON)
NOT_UTF8_REASON = "file name is not valid UTF-8 (\\x escapes show its bytes): rename it"


@pytest.fixture
def png(photo) -> bytes:
    return codecs.encode(photo, "png")


def _bytes_name(folder, name: bytes) -> bytes:
    """A path whose last name is the raw bytes ``name`` (Latin-1 names from old archives)."""
    path = os.path.join(os.fsencode(str(folder)), name)
    try:
        os.makedirs(path) if not name.endswith(b".png") else open(path, "wb").close()
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    return path


def test_a_name_that_is_not_utf8_is_an_invalid_row_not_a_crash(tmp_path, png, capsys):
    """One Latin-1 name (`caf\\xe9.png`) anywhere in the tree failed the whole scan, after all
    the work, with a pyarrow UnicodeEncodeError traceback (exit 1) and no manifest."""
    (tmp_path / "ok.png").write_bytes(png)
    with open(_bytes_name(tmp_path, b"caf\xe9.png"), "wb") as f:
        f.write(png)
    folder = _bytes_name(tmp_path, b"d\xe9j\xe0")
    with open(os.path.join(folder, b"x.png"), "wb") as f:
        f.write(png)
    rows = {r["relpath"]: r for r in scan(str(tmp_path), recursive=True, label_from="parent",
                                          engine=_InlineEngine()).to_pylist()}
    assert set(rows) == {"ok.png", "caf\\xe9.png", "d\\xe9j\\xe0/x.png"}
    assert rows["ok.png"]["valid"]
    for rel in ("caf\\xe9.png", "d\\xe9j\\xe0/x.png"):
        assert not rows[rel]["valid"] and rows[rel]["reason"] == NOT_UTF8_REASON
        assert rows[rel]["width"] == 128  # the header was still read
        assert rows[rel]["uri"] == str(tmp_path / rel)
    assert rows["d\\xe9j\\xe0/x.png"]["label"] == "d\\xe9j\\xe0"
    out = tmp_path.parent / f"{tmp_path.name}-inventory.parquet"
    assert main(["scan", str(tmp_path), "-r", "--workers", "1", "--no-progress",
                 "--out", str(out)]) == ExitCode.PARTIAL
    assert "file name is not valid UTF-8" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 3


def test_a_glob_that_matches_nothing_is_not_an_empty_folder(tmp_path, png):
    """`scan 'photos/*.jpeg'` over a folder of PNGs said "(the folder is empty)"."""
    (tmp_path / "a.png").write_bytes(png)
    with pytest.raises(NoInputError, match=r"no image files found \(nothing matches the pattern\)"):
        scan(str(tmp_path / "*.jpeg"))
    with pytest.raises(NoInputError, match=r"\(nothing matches the pattern\)"):
        scan(str(tmp_path / "typo" / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoInputError, match=r"\(the folder is empty\)"):
        scan(str(tmp_path / "empty"))


def test_out_naming_a_scanned_image_through_a_linked_folder_is_refused(tmp_path, png, capsys):
    """`scan photos-link --out photos/a.png --overwrite` (or the other way round) replaced the
    image a.png with the inventory: the check compared the spellings, not the files."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.png").write_bytes(png)
    os.symlink("real", tmp_path / "alias")
    for url, out in [(tmp_path / "alias", real / "a.png"), (real, tmp_path / "alias" / "a.png"),
                     (real.as_uri(), tmp_path / "alias" / "a.png")]:
        assert main(["scan", str(url), "--workers", "1", "--no-progress", "--out", str(out),
                     "--overwrite"]) == ExitCode.USAGE
        assert "is one of the scanned files" in capsys.readouterr().err
        assert (real / "a.png").read_bytes() == png
    # a file that is not scanned is still replaced with --overwrite
    (real / "old.parquet").write_bytes(b"an old inventory")
    assert main(["scan", str(tmp_path / "alias"), "--workers", "1", "--no-progress", "--out",
                 str(real / "old.parquet"), "--overwrite"]) == ExitCode.OK
    assert pq.read_table(real / "old.parquet").num_rows == 1


def test_a_bad_out_fails_before_any_file_is_read(tmp_path, png, monkeypatch, capsys):
    """An --out that is a folder, lies under a file, or is a scanned file was found only after
    the whole scan (hours on a bucket), which was then lost."""
    from pixelmill import inventory

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(png)
    (tmp_path / "folder").mkdir()

    def no_scan(*args, **kwargs):
        raise AssertionError("the scan started")

    monkeypatch.setattr(inventory, "scan", no_scan)
    argv = ["scan", str(tmp_path / "photos"), "--workers", "1", "--no-progress", "--out"]
    assert main([*argv, str(tmp_path / "folder")]) == ExitCode.USAGE
    assert "is a folder" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "folder"), "--overwrite"]) == ExitCode.USAGE
    assert "is a folder" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "photos" / "a.png" / "inv.parquet")]) == ExitCode.ERROR
    assert "--out" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "photos" / "a.png"), "--overwrite"]) == ExitCode.USAGE
    assert "is one of the scanned files" in capsys.readouterr().err
    assert main([*argv, "nosuch://bucket/inv.parquet", "--overwrite"]) == ExitCode.USAGE
    assert (tmp_path / "photos" / "a.png").read_bytes() == png


def test_png_orientation_and_alpha_beyond_the_first_64_kib(photo, tmp_path):
    """A PNG with a large text chunk (XMP, generation parameters) before its eXIf and tRNS
    chunks: the header-only scan read 64 KiB and gave orientation 1, the stored width/height
    and 3 channels, where --verify and read_image give orientation 6, swapped sizes and 4."""
    import struct

    from pixelmill.images import read_image
    from tests._images import png_chunk

    plain = codecs.encode(photo, "png")  # 96×128 RGB
    exif = b"MM\x00*\x00\x00\x00\x08\x00\x01" + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\0" * 4
    extra = (png_chunk(b"tEXt", b"XML:com.adobe.xmp\x00" + b"x" * 100_000)
             + png_chunk(b"eXIf", exif) + png_chunk(b"tRNS", b"\x00\x01\x00\x02\x00\x03"))
    path = tmp_path / "xmp.png"
    path.write_bytes(plain[:33] + extra + plain[33:])
    image = read_image(str(path))
    assert image.shape == (128, 96, 4)
    for verify in (False, True):
        row = scan(str(tmp_path), verify=verify, engine=_InlineEngine()).to_pylist()[0]
        assert row["valid"], row["reason"]
        assert (row["height"], row["width"], row["channels"], row["orientation"]) == (
            128, 96, 4, 6), verify
        assert row["mode"] == "RGBA" and row["bytes"] == path.stat().st_size


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_a_header_only_scan_of_a_big_tiff_reads_its_ifds_not_the_file(tmp_path):
    """A header-only scan read every TIFF whole into the worker's memory (a 10 GB BigTIFF:
    10 GB per worker); it now reads the header and IFDs through a file object, wherever they
    lie (here after 24 MB of tiles, and a pyramid's SubIFDs)."""
    import numpy as np
    import tifffile

    from pixelmill import storage
    from pixelmill.inventory import ScanOptions, scan_file

    a = np.random.default_rng(0).integers(0, 255, (2900, 2900, 3), np.uint8)
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(a, tile=(256, 256), subifds=1)
        tw.write(a[::2, ::2], tile=(256, 256), subfiletype=1)
        tw.write(a[:64, :64])  # a second page, after all the pixel data
    entry = storage.FileEntry(str(path), path.stat().st_size, "slide.tif")
    before = _bytes_read()
    row = scan_file(entry, ScanOptions(False, False, None, None, {}))
    read = _bytes_read() - before
    assert row["valid"] and (row["width"], row["height"], row["pages"]) == (2900, 2900, 2)
    assert read < 1_000_000, read  # the file is 26 MB
    # the same answer as probing the whole file's bytes
    info = codecs.probe(path.read_bytes(), whole=True)
    assert (info.width, info.height, info.channels, info.pages) == (2900, 2900, 3, 2)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(path.read_bytes()[:70_000])  # the pixels and later IFDs cut off
    row = scan_file(storage.FileEntry(str(bad), 70_000, "bad.tif"),
                    ScanOptions(False, False, None, None, {}))
    cut = codecs.probe(bad.read_bytes(), whole=True)  # what the whole bytes say, as before
    assert (row["width"], row["pages"]) == (cut.width, cut.pages)
    assert not scan_file(storage.FileEntry(str(bad), 70_000, "bad.tif"),
                         ScanOptions(True, False, None, None, {}))["valid"]  # --verify sees it
