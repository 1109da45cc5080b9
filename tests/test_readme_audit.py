"""README.md statements that neither tests/test_readme.py nor tests/test_readme_cli.py run, held
to the code: each test reads the README's own words (so an edit of either side is checked) and
fails when the documentation and the code disagree again. Quick: tiny inputs, one worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._readme import README

REPO = README.parent


def readme() -> str:
    return " ".join(README.read_text(encoding="utf-8").split())  # lines joined, as a reader reads


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from pixelmill.cli import main

    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, image: np.ndarray) -> None:
    from pixelmill import codecs

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codecs.encode(image, path.suffix.lstrip(".")))


def photo(seed: int = 0, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Super-resolution: the "receptive field (LR px)" column of the models table


def test_sr_models_table_gives_each_shipped_networks_receptive_field():
    from pixelmill.sr.receptive import receptive_field

    weights = REPO / "src/pixelmill/sr/weights"
    rows = dict(re.findall(r"^\| `(espcn|fsrcnn|edsr)` \|.*\| ([^|]+) \|$",
                           README.read_text(encoding="utf-8"), re.M))
    assert set(rows) == {"espcn", "fsrcnn", "edsr"}, rows
    for arch, cell in rows.items():
        documented = {}
        for value, scales in re.findall(r"(\d+)(?: \(([^)]*)\))?", cell):
            for s in re.findall(r"×(\d)", scales) or ["2", "3", "4"]:
                documented[int(s)] = int(value)
        for scale in (2, 3, 4):
            card = json.loads((weights / f"{arch}_x{scale}.json").read_text())
            assert documented.get(scale) == receptive_field(arch, scale, card.get("params")), (
                f"README models table, {arch} x{scale}: {cell.strip()!r}")


# ---------------------------------------------------------------------------------------------
# learn evaluate: when ROC AUC is given


def test_roc_auc_only_when_every_model_class_is_in_the_split():
    from pixelmill.learn.evaluation import classification_metrics

    assert "only when every model class occurs in the evaluated split" in readme()
    proba3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    *_, auc, ovr = classification_metrics(["a", "b", "c", "a"], proba3, ["a", "b", "c"])
    assert auc is None and ovr is not None  # more classes: one-vs-rest macro AUC
    *_, auc, ovr = classification_metrics(["a", "b", "a", "a"], proba3, ["a", "b", "c"])
    assert auc is None and ovr is None  # class c not in the split: no AUC
    proba2 = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    *_, auc, ovr = classification_metrics(["a", "b", "b"], proba2, ["a", "b"])
    assert auc == 1.0 and ovr is None  # two classes, positive = the second in sorted order


# ---------------------------------------------------------------------------------------------
# Memory budget: the value_bytes figures


def test_value_bytes_list_matches_the_registry():
    from pixelmill.ops import registry

    text = readme()
    listed = re.search(r"from measured peaks: (.*?); a test re-measures", text)
    assert listed, "README: the value_bytes list is gone"
    names = {"sobel/scharr": ("sobel", "scharr"), "unsharp mask": ("unsharp_mask",),
             "rescale intensity": ("rescale_intensity",),
             "white balance": ("white_balance_grayworld",),
             "bilateral on uint16/float32": ("bilateral",)}
    documented, pending = {}, []
    for item in listed[1].split(", "):
        m = re.fullmatch(r"(.+?)(?: (\d+))?", item.strip())
        pending += names.get(m[1], (m[1],))
        if m[2]:
            documented.update({op: int(m[2]) for op in pending})
            pending = []
    assert not pending, listed[1]
    declared = {}
    for name, spec in registry().items():
        vb = spec.extra.get("value_bytes")
        if vb:
            declared[name] = vb("float32") if callable(vb) else vb
    assert documented == declared


# ---------------------------------------------------------------------------------------------
# Measurements of a float image without one finite pixel


def test_measures_without_a_finite_pixel():
    from pixelmill.pipeline import load_pipeline

    assert "(`blurry`: null; `phash`: all zeros)" in readme()
    image = np.full((16, 16, 3), np.nan, np.float32)
    steps = [{"op": "channel_stats"}, {"op": "sharpness"}, {"op": "blur_flag"},
             {"op": "brightness_contrast"}, {"op": "phash"}]
    measures = load_pipeline(steps).run(image).measures
    assert measures.pop("blurry") is None
    assert set(measures.pop("phash")) == {"0"}
    assert all(np.isnan(v) for v in measures.values()), measures


# ---------------------------------------------------------------------------------------------
# Ops tests: the count the README gives


def test_ops_test_count_is_about_what_the_readme_says():
    said = re.search(r"`tests/ops` and `tests/test_pipeline.py` \(~([\d,]+) tests", readme())
    assert said, "README: the ops test count is gone"
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests/ops", "tests/test_pipeline.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    found = re.search(r"^(\d+) tests? collected", proc.stdout, re.M)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    expected, collected = int(said[1].replace(",", "")), int(found[1])
    assert abs(collected - expected) <= 0.1 * expected, (expected, collected)


# ---------------------------------------------------------------------------------------------
# pixelmill scan: printed examples, exit codes


@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(Path("photos/cats/a.png"), photo(1))
    write(Path("photos/dogs/b.jpg"), photo(2))
    Path("photos/dogs/bad.jpg").write_bytes(b"not an image")
    Path("photos/dogs/zero.png").write_bytes(b"")
    Path("empty").mkdir()
    return tmp_path


def test_scan_prints_the_examples_of_invalid_files_by_absolute_path(photos, capsys):
    code, out, _ = cli(["scan", "photos/", "--recursive", "--label-from", "parent",
                        "--workers", "1", "--no-progress"], capsys)
    assert code == 3  # some files invalid
    assert re.search(r"^4 files \(.*\): 2 valid, 2 invalid$", out, re.M), out
    bad = (photos / "photos/dogs/bad.jpg").as_posix()
    assert f"e.g. {bad}: not a recognised image format" in out, out
    # the README's sample output shows such a path too
    assert re.search(r"e\.g\. /\S+/photos/dogs/bad\.jpg: not a recognised image format",
                     README.read_text(encoding="utf-8")), "README scan sample output"


def test_scan_exit_codes(photos, capsys):
    text = readme()
    assert ("**4** no image files found, **2** a bad flag or an unknown storage protocol, **1** "
            "a URL that does not exist or cannot be listed") in text
    assert cli(["scan", "empty/"], capsys)[0] == 4
    assert cli(["scan", "nonexistent/"], capsys)[0] == 1
    assert cli(["scan", "foo://bucket/x"], capsys)[0] == 2
    assert cli(["scan", "photos/", "-r", "--max-pixels", "0"], capsys)[0] == 2


@pytest.mark.parametrize("url", ["empty/", "nonexistent/"])
@pytest.mark.parametrize("engine", ["foo", "dask=", "spark=mesos://host:5050"])
def test_scan_refuses_a_bad_engine_before_listing(photos, capsys, url, engine):
    """README: a bad --engine value is a usage error (exit 2), and errors of the command line
    fail before any file is read -- whatever URL holds."""
    assert "Anything else, or an empty address after `=`, is a usage error (exit 2)" in readme()
    code, _, err = cli(["scan", url, "--engine", engine], capsys)
    assert code == 2 and "--engine" in err, (code, err)


# ---------------------------------------------------------------------------------------------
# pixelmill run: documented refusals and the report's name


def test_run_refusals_and_report_beside_a_named_manifest(photos, capsys):
    Path("thumb.yaml").write_text("steps:\n  - op: resize\n    long_side: 16\n", encoding="utf-8")
    # "a --quality that no output takes is a usage error"
    code, _, err = cli(["run", "thumb.yaml", "photos/cats", "out1/", "--format", "png",
                        "--quality", "85", "-q"], capsys)
    assert code == 2 and "--quality" in err and not Path("out1").exists()
    # "OUTPUT naming the INPUT folder itself is a usage error (exit 2)"
    assert "OUTPUT naming the INPUT folder itself is a usage error (exit 2)" in readme()
    assert cli(["run", "thumb.yaml", "photos/", "photos/", "-q"], capsys)[0] == 2
    # "`NAME.report.html` beside a `--manifest NAME.parquet` of another name"
    assert "(`NAME.report.html` beside a `--manifest NAME.parquet` of another name)" in readme()
    code, _, err = cli(["run", "thumb.yaml", "photos/cats", "out2/", "--manifest",
                        "runs/may.parquet", "--workers", "1", "-q"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in Path("runs").iterdir()) == ["may.parquet", "may.report.html"]
    # `pixelmill report MANIFEST` renews that same page
    code, out, _ = cli(["report", "runs/may.parquet"], capsys)
    assert code == 0 and out.strip().endswith("may.report.html"), out
