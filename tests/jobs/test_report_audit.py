"""Audit of the HTML report and the demo: each test failed before its fix."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from pixelmill.cli import main
from pixelmill.errors import ExitCode
from pixelmill.manifest import ManifestWriter
from pixelmill.report import build_report, measurement_columns


def _manifest(path, rows) -> str:
    with ManifestWriter(str(path)) as w:
        for row in rows:
            w.append(row)
    return str(path)


def _png(path, side=64) -> str:
    import cv2

    assert cv2.imwrite(str(path), np.full((side, side, 3), 120, np.uint8))
    return str(path)


def test_a_scan_inventory_or_another_table_is_not_reported(tmp_path, capsys):
    """`pixelmill report` on a `scan --out` inventory (or any Parquet file) wrote a page of
    0 ok / 0 invalid / 0 failed for N inputs, exit 0; now exit 2 naming the problem. A job's
    manifest without rows still gets its page."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    scan = tmp_path / "inventory.parquet"
    pq.write_table(pa.table({"uri": ["/a.png"], "relpath": ["a.png"], "valid": [False],
                             "reason": ["empty file"]}), scan)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    for path, says in ((scan, "a scan inventory"), (other, "not a pixelmill job manifest")):
        assert main(["report", str(path)]) == ExitCode.USAGE
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
        assert not list(tmp_path.glob("*.html"))
    empty = _manifest(tmp_path / "empty.parquet", [])
    assert main(["report", empty]) == ExitCode.OK
    assert "id='count-ok'>0<" in (tmp_path / "empty.report.html").read_text()


def test_an_input_named_like_a_tile_is_reported(tmp_path):
    """An input file named `#tile=1,2.jpg` (its key is its URI) was taken for a tile's row and
    left out of the counts and lists; a tiled image's real tile rows still are."""
    uri = _manifest(tmp_path / "m.parquet", [
        {"key": "/in/#tile=1,2.jpg", "uri": "/in/#tile=1,2.jpg", "relpath": "#tile=1,2.jpg",
         "status": "invalid", "reason": "decode: not an image"},
        {"key": "/in/big.tif", "uri": "/in/big.tif", "relpath": "big.tif", "status": "ok",
         "tiled": True},
        {"key": "/in/big.tif#tile=0,0", "uri": "/in/big.tif", "status": "failed",
         "reason": "a tile"},
    ])
    page = build_report(uri)
    assert "<tr><th>inputs</th><td>2</td>" in page
    assert "id='count-invalid'>1<" in page and "id='count-failed'>0<" in page
    assert "#tile=1,2.jpg" in page


def test_a_tiled_jobs_bookkeeping_is_not_a_measurement(tmp_path):
    """The manifest of `pixelmill tile`/`upscale` (or a routed input of `run`) had its tiles,
    tile size, peak memory, level, pyramid and input size drawn as measurement histograms,
    and its input bytes summed as 0."""
    row = {"key": "/in/big.tif", "uri": "/in/big.tif", "status": "ok", "width": 10,
           "height": 10, "tiles": 30, "tile": 256, "peak_rss": 235474944, "level": 0,
           "pyramid": False, "input_bytes": 5898768, "t_process": 1.2}
    assert measurement_columns([row]) == []
    page = build_report(_manifest(tmp_path / "t.parquet", [row]))
    assert "No measurement columns." in page
    assert "<tr><th>input bytes</th><td>5,898,768</td>" in page


def test_out_a_folder_is_a_usage_error(tmp_path, capsys):
    """`--out FOLDER --overwrite` failed after building the page, exit 1 'Is a directory'
    (and without --overwrite said 'use --overwrite', which could not help)."""
    uri = _manifest(tmp_path / "m.parquet", [{"key": "k", "uri": "/none.png", "status": "ok"}])
    folder = tmp_path / "pages"
    (folder / "sub").mkdir(parents=True)
    for extra in ([], ["--overwrite"]):
        assert main(["report", uri, "--out", str(folder), *extra]) == ExitCode.USAGE
        err = capsys.readouterr().err
        assert "is a folder" in err, err


def test_out_through_a_linked_folder_is_not_an_input(tmp_path, capsys):
    """`--out link/photo.png --overwrite`, `link` a symlink to the input folder, replaced the
    job's input photo with the page (the same path spelled directly was refused)."""
    src = tmp_path / "in"
    src.mkdir()
    photo = _png(src / "photo.png")
    before = (src / "photo.png").read_bytes()
    os.symlink(src, tmp_path / "link")
    uri = _manifest(tmp_path / "m.parquet", [{"key": photo, "uri": photo, "relpath": "photo.png",
                                              "status": "ok"}])
    code = main(["report", uri, "--out", str(tmp_path / "link" / "photo.png"), "--overwrite"])
    assert code == ExitCode.USAGE and "is the input of" in capsys.readouterr().err
    assert (src / "photo.png").read_bytes() == before


def test_the_list_of_bad_files_is_bounded(tmp_path):
    """200,000 failed inputs made a 30 MB page; the list now stops at 1,000 rows and says how
    many more the manifest holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 1500
    uri = str(tmp_path / "m.parquet")
    pq.write_table(pa.table({"key": [f"/in/{i}.jpg" for i in range(n)],
                             "uri": [f"/in/{i}.jpg" for i in range(n)],
                             "status": ["failed"] * n, "reason": ["read: gone"] * n}), uri)
    page = build_report(uri)
    assert "id='count-failed'>1500<" in page
    assert page.count("<td class='failed'>") == 1000
    assert "and 500 more" in page


def test_measurements_and_timings_of_no_finite_or_extreme_values(tmp_path):
    """Measurements of ±1e308 (a float image's statistics) crashed the histogram ('Too many
    bins for data range'): `pixelmill run` exited 1 with a traceback after its job. A column
    or timing of only NaN drew an empty chart."""
    rows = [{"key": f"k{i}", "uri": f"/none/{i}.png", "status": "ok", "wide": v,
             "nan": float("nan"), "t_read": float("nan")}
            for i, v in enumerate((-1e308, 1e308, 0.0))]
    page = build_report(_manifest(tmp_path / "m.parquet", rows))
    assert "alt='measurement histograms' src='data:image/png;base64," in page
    assert "No timings recorded." in page


def test_a_thumbnail_is_never_decoded_from_too_many_pixels(tmp_path, monkeypatch):
    """The size guard read the input's row only: an output far larger (an upscale, a file
    replaced since) was decoded whole for its thumbnail."""
    import pixelmill.report as report

    small = report._thumb(_png(tmp_path / "small.png", 32), {})
    assert small and small.startswith("data:image/jpeg;base64,")
    monkeypatch.setattr(report, "_THUMB_MAX_PIXELS", 32 * 32)
    assert report._thumb(_png(tmp_path / "large.png", 64), {}) is None


def test_the_sample_caption_is_escaped(tmp_path):
    """The sizes under a thumbnail pair were written unescaped."""
    uri = _manifest(tmp_path / "m.parquet", [
        {"key": "/none/a.png", "uri": "/none/a.png", "relpath": "a.png", "status": "ok",
         "width": 10, "height": 10, "out_width": "<script>x</script>", "out_height": 5}])
    page = build_report(uri)
    assert "<script>" not in page and "&lt;script&gt;x" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page)


# -- the demo --------------------------------------------------------------------------------

def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path, capsys):
    """`python -m pixelmill.demo --out WORK`, WORK a user's own folder, deleted
    WORK/collection (and replaced WORK/run); a bad --engine or --workers 0 failed with a
    traceback after building the collection, and --n -3 built nothing without a word."""
    from pixelmill.demo import main as demo

    user = tmp_path / "work"
    (user / "collection").mkdir(parents=True)
    (user / "collection" / "mine.txt").write_text("precious")
    assert demo(["--out", str(user), "--n", "1", "--no-extras"]) == ExitCode.USAGE
    assert "not an earlier demo's" in capsys.readouterr().err
    assert (user / "collection" / "mine.txt").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    assert demo(["--out", str(tmp_path / "file"), "--no-extras"]) == ExitCode.USAGE
    assert demo(["--out", str(tmp_path / "new"), "--engine", "bogus"]) == ExitCode.USAGE
    assert "unknown engine" in capsys.readouterr().err and not (tmp_path / "new").exists()
    for flags in (["--n", "-3"], ["--workers", "0"]):
        with pytest.raises(SystemExit) as e:
            demo(["--out", str(tmp_path / "new"), *flags])
        assert e.value.code == 2
    assert not (tmp_path / "new").exists()


def test_demo_runs_again_in_its_folder(tmp_path, capsys):
    """A second run reuses its own folder (even half-built: manifest deleted) and leaves no
    outputs of the earlier, larger collection behind."""
    from pixelmill.demo import main as demo
    from pixelmill.manifest import read_manifest

    out = tmp_path / "demo"
    assert demo(["--out", str(out), "--n", "3", "--no-extras", "--workers", "1"]) == 0
    (out / "run" / "manifest.parquet").unlink()
    assert demo(["--out", str(out), "--n", "1", "--no-extras", "--workers", "1"]) == 0
    assert "1 ok, 4 invalid, 0 failed" in capsys.readouterr().out
    rows = read_manifest(str(out / "run" / "manifest.parquet"))
    written = {os.path.realpath(r["output"]) for r in rows if r.get("output")}
    images = {os.path.realpath(p) for p in (out / "run").rglob("*")
              if p.is_file() and p.suffix not in (".parquet", ".html")}
    assert images == written and len(written) == 1


def test_an_interrupted_runs_journal_is_reported(tmp_path, capsys):
    """A run killed before its Parquet leaves OUTPUT/manifest.parquet.journal.jsonl, which the
    readers (resume, reports) take; `pixelmill report OUTPUT` said 'a folder without a
    manifest.parquet' (exit 2)."""
    import json

    out = tmp_path / "out"
    out.mkdir()
    rows = [{"key": f"/in/{i}.png", "uri": f"/in/{i}.png", "relpath": f"{i}.png",
             "status": "ok" if i else "failed", "reason": None if i else "read: gone"}
            for i in range(3)]
    (out / "manifest.parquet.journal.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(out)]) == ExitCode.OK, capsys.readouterr().err
    page = (out / "report.html").read_text()
    assert "id='count-ok'>2<" in page and "id='count-failed'>1<" in page
    assert main(["report", str(tmp_path / "none")]) == ExitCode.USAGE
