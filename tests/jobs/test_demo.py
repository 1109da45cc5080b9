"""The sample collection and the demo script (small sizes)."""

from __future__ import annotations

from pixelmill import codecs
from pixelmill.demo import main
from pixelmill.manifest import read_manifest
from pixelmill.samples import BAD_FILES, build_collection


def test_collection_is_varied_and_seeded(tmp_path):
    a = build_collection(tmp_path / "a", 24, max_side=300)
    b = build_collection(tmp_path / "b", 24, max_side=300)
    files_a = sorted(p.relative_to(a.root).as_posix() for p in a.root.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.root).as_posix() for p in b.root.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 24 + len(BAD_FILES)
    assert all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files_a)
    formats, sizes = set(), set()
    for f in files_a:
        if f.startswith("bad/"):
            continue
        info = codecs.probe((a.root / f).read_bytes())
        formats.add(info.format)
        sizes.add((info.width, info.height))
    assert {"jpg", "png"} <= formats and len(sizes) > 10


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--n", "12", "--no-extras", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "12 ok, 4 invalid, 0 failed" in printed
    assert (tmp_path / "run" / "report.html").exists()
    rows = {r["relpath"]: r for r in read_manifest(str(tmp_path / "run" / "manifest.parquet"))}
    assert {r for r, row in rows.items() if row["status"] == "invalid"} == set(BAD_FILES)
    ok = [row for row in rows.values() if row["status"] == "ok"]
    assert all(max(row["out_width"], row["out_height"]) == 512 for row in ok)
    assert all(row["sharpness"] is not None and row["label"] for row in ok)
