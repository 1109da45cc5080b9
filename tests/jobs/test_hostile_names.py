"""Jobs: file names that are ordinary on POSIX but looked special to pixelmill (a hostile-input
audit): ``#`` (taken for a tile row's ``URI#tile=r,c`` key) and ``\\`` (taken for a folder)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pixelmill.jobs import run
from pixelmill.manifest import is_tile_row, read_manifest
from pixelmill.report import build_report
from pixelmill.storage import label_from_path


def _image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(path, format="JPEG")


def test_hash_in_a_file_name_is_an_input_like_any_other(tmp_path, engine, blur_pipeline):
    """Names with '#' had rows, but the report left them out (2 inputs, 0 invalid, where the
    run said 3 and 1), and a run from a scan manifest skipped them without a row."""
    from pixelmill.cli import main

    src = tmp_path / "in"
    _image(src / "ok.jpg")
    _image(src / "good#2.jpg")
    (src / "bad#1.jpg").write_bytes(b"junk")
    out = tmp_path / "out"
    s = run(blur_pipeline, str(src), str(out), engine=engine, progress=False, report=False)
    assert (s.ok, s.invalid) == (2, 1)
    page = build_report(str(out / "manifest.parquet"))
    assert "bad#1.jpg" in page and "Invalid and failed files (1)" in page
    scan_uri = str(tmp_path / "scan.parquet")
    main(["scan", str(src), "--out", scan_uri])
    s2 = run(blur_pipeline, scan_uri, str(tmp_path / "out2"), engine=engine, progress=False,
             report=False)
    assert (s2.total, s2.ok, s2.invalid) == (3, 2, 1)
    assert (tmp_path / "out2" / "good#2.jpg").is_file()
    assert not any(is_tile_row(r) for r in read_manifest(scan_uri))
    assert is_tile_row({"key": "/x/a#b.tif#tile=0,1"}) and not is_tile_row({"key": "/x/a#b.tif"})


def test_backslash_is_a_character_of_a_file_name(tmp_path, engine, blur_pipeline):
    """``a\\b.jpg`` was written to ``OUT/a/b.jpg``, colliding with the real ``a/b.jpg`` (the whole
    job refused), and a name like ``..\\x.jpg`` aborted the job as an escape from OUTPUT."""
    src = tmp_path / "in"
    _image(src / "a" / "b.jpg")
    _image(src / "a\\b.jpg")
    _image(src / "..\\x.jpg")
    out = tmp_path / "out"
    s = run(blur_pipeline, str(src), str(out), engine=engine, progress=False, report=False)
    assert (s.total, s.ok) == (3, 3), s.reasons
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")} == {
        "a/b.jpg", "a\\b.jpg", "..\\x.jpg"}
    assert label_from_path("a\\b.jpg", "parent") is None
    assert label_from_path("cats/a\\b.jpg", "parent") == "cats"


def test_a_newline_in_a_name_cannot_forge_summary_lines(tmp_path, capsys):
    from pixelmill.cli import main
    from pixelmill.storage import printable

    assert printable("a\nb\x1b[31m.jpg") == "a\\nb\\x1b[31m.jpg"
    assert printable("café 1.jpg") == "café 1.jpg"
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad\nFAKE: all good.jpg").write_bytes(b"junk")
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    for argv in (["scan", str(src)], ["run", str(pipe), str(src), str(tmp_path / "out")]):
        try:
            main(argv)
        except SystemExit as e:  # exit 3: an invalid input
            assert e.code == 3
        captured = capsys.readouterr()
        assert not any(line.startswith("FAKE") for line in (captured.out + captured.err)
                       .splitlines()), captured
        assert "bad\\nFAKE" in captured.out + captured.err


def test_a_pipe_given_as_the_input_is_a_row_not_a_missing_file(tmp_path, engine, blur_pipeline):
    """A single INPUT that is a named pipe was 'no such file or folder' (exit 1)."""
    import os

    fifo = tmp_path / "a.png"
    os.mkfifo(fifo)
    s = run(blur_pipeline, str(fifo), str(tmp_path / "out"), engine=engine, progress=False,
            report=False)
    assert (s.total, s.invalid) == (1, 1)
    assert "not a regular file (a named pipe)" in next(iter(s.reasons.values()))


def test_a_name_that_is_not_utf8_is_a_failed_row_not_a_lost_manifest(tmp_path, engine,
                                                                       blur_pipeline):
    """A file or folder named in Latin-1 (`caf\\xe9`): the job processed every image, then
    pyarrow could not store the name and the manifest was lost (a traceback, only the journal
    left). It is now a failed row naming it with \\x escapes, before any work, and a resume
    does not take it for a new input each time."""
    import os

    from pixelmill.storage import NOT_UTF8_REASON

    src = tmp_path / "in"
    _image(src / "ok.jpg")
    data = (src / "ok.jpg").read_bytes()
    os.makedirs(os.fsencode(src) + b"/caf\xe9")
    with open(os.fsencode(src) + b"/caf\xe9/x.jpg", "wb") as f:
        f.write(data)
    with open(os.fsencode(src) + b"/b\xe9.jpg", "wb") as f:
        f.write(data)
    out = tmp_path / "out"
    s = run(blur_pipeline, str(src), str(out), engine=engine, progress=False, report=False)
    assert (s.total, s.ok, s.failed) == (3, 1, 2)
    rows = {r["relpath"]: r for r in read_manifest(str(out / "manifest.parquet"))}
    assert sorted(rows) == ["b\\xe9.jpg", "caf\\xe9/x.jpg", "ok.jpg"]
    assert rows["b\\xe9.jpg"]["reason"] == NOT_UTF8_REASON
    assert sorted(os.listdir(out)) == ["manifest.parquet", "ok.jpg"]
    s2 = run(blur_pipeline, str(src), str(out), engine=engine, progress=False, report=False,
             resume=True)
    assert (s2.total, s2.ok, s2.failed) == (3, 1, 2)
    assert len(read_manifest(str(out / "manifest.parquet"))) == 3


def test_an_input_named_like_a_tile_row_is_an_input(tmp_path, engine, blur_pipeline):
    """`#tile=1,2.jpg` is a file name like any other: a run from a scan manifest dropped it
    (taken for a tile's row of a tiled image), and so did the report."""
    from pixelmill.cli import main

    src = tmp_path / "in"
    _image(src / "ok.jpg")
    _image(src / "#tile=1,2.jpg")
    scan_uri = str(tmp_path / "scan.parquet")
    main(["scan", str(src), "--out", scan_uri])
    s = run(blur_pipeline, scan_uri, str(tmp_path / "out"), engine=engine, progress=False,
            report=False)
    assert (s.total, s.ok) == (2, 2)
    assert (tmp_path / "out" / "#tile=1,2.jpg").is_file()


def test_a_report_that_fails_does_not_fail_the_finished_job(tmp_path, engine, blur_pipeline,
                                                            monkeypatch, capsys):
    """The job is done and its manifest written when the page is drawn: a report error was a
    traceback (exit 1) after a successful run. Now a warning, and no report path."""
    import pixelmill.report

    def broken(*a, **k):
        raise ValueError("Too many bins for data range")

    monkeypatch.setattr(pixelmill.report, "write_report", broken)
    src = tmp_path / "in"
    _image(src / "ok.jpg")
    s = run(blur_pipeline, str(src), str(tmp_path / "out"), engine=engine, progress=False)
    assert s.ok == 1 and s.report is None
    assert "report not written (ValueError: Too many bins" in capsys.readouterr().err
    assert (tmp_path / "out" / "manifest.parquet").is_file()
