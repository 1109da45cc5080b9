"""The ``pixelmill run`` and ``pixelmill report`` commands: exit codes and messages."""

from __future__ import annotations

from click.testing import CliRunner

from pixelmill.cli import cli, main
from pixelmill.errors import ExitCode


def _pipe(tmp_path, text="steps:\n  - op: gaussian\n    sigma: 1.5\n"):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return str(p)


def test_partial_then_ok_then_report(collection, tmp_path, capsys):
    root, _kinds = collection
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(cli, ["run", _pipe(tmp_path), str(root), str(out), "--workers", "1",
                              "--quiet"])
    assert res.exit_code == ExitCode.PARTIAL, res.output
    assert (out / "manifest.parquet").exists() and (out / "report.html").exists()
    (root / "not_an_image.jpg").unlink()
    (root / "empty.png").unlink()
    res = runner.invoke(cli, ["run", _pipe(tmp_path), str(root), str(out), "--workers", "1",
                              "--overwrite", "--no-report"])
    assert res.exit_code == ExitCode.OK, res.output
    assert "5 inputs: 5 ok, 0 invalid, 0 failed" in res.output
    res = runner.invoke(cli, ["report", str(out / "manifest.parquet"), "--out",
                              str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "<html>" in (tmp_path / "r.html").read_text()
    (out / "report.html").unlink()
    res = runner.invoke(cli, ["report", str(out)])  # the OUTPUT folder: its manifest
    assert res.exit_code == 0, res.output
    assert (out / "report.html").exists()
    res = runner.invoke(cli, ["report", str(out)])  # its own page is renewed
    assert res.exit_code == 0, res.output

    # --out wrote over anything: the manifest itself (the job lost its resume), an input
    # photo, an output, an earlier page (README walkthrough)
    manifest = out / "manifest.parquet"
    photo, thumb = root / "coffee.jpg", out / "coffee.jpg"
    kept = {p: p.read_bytes() for p in (manifest, photo, thumb, tmp_path / "r.html")}
    for target, says in ((manifest, "is the manifest itself"), (photo, "is the input of"),
                         (thumb, "is the output of"), (tmp_path / "r.html", "already exists")):
        assert main(["report", str(manifest), "--out", str(target)]) == ExitCode.USAGE
        err = capsys.readouterr().err
        assert says in err, err
    assert {p: p.read_bytes() for p in kept} == kept
    res = runner.invoke(cli, ["report", str(manifest), "--out", str(tmp_path / "r.html"),
                              "--overwrite"])
    assert res.exit_code == 0, res.output


def test_usage_errors_name_the_field(collection, tmp_path, capsys):
    root, _ = collection
    out = tmp_path / "out"
    code = main(["run", _pipe(tmp_path), str(root), str(out), "--quality", "0"])
    assert code == ExitCode.USAGE
    assert "--quality" in capsys.readouterr().err
    bad = _pipe(tmp_path, "steps:\n  - op: gaussian\n    sigma: abc\n")
    assert main(["run", bad, str(root), str(out)]) == ExitCode.USAGE
    assert "steps[0].sigma" in capsys.readouterr().err
    unknown = _pipe(tmp_path, "steps:\n  - op: gausian\n")
    assert main(["run", unknown, str(root), str(out)]) == ExitCode.USAGE
    assert "gaussian" in capsys.readouterr().err  # did-you-mean
    assert main(["run", _pipe(tmp_path), str(root), str(out), "--bogus-flag"]) == ExitCode.USAGE
    assert main(["report", str(tmp_path / "missing.parquet")]) == ExitCode.USAGE
    assert main(["report", str(tmp_path / "p.yaml")]) == ExitCode.USAGE  # not Parquet
    assert "p.yaml: not a Parquet file" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == ExitCode.USAGE  # a folder with no manifest
    assert "without a manifest.parquet" in capsys.readouterr().err
    assert not out.exists()  # nothing was started


def test_an_output_format_that_cannot_hold_the_result_is_refused_before_work(collection,
                                                                              tmp_path, capsys):
    """A float32 (sobel) or int32 (slic) result was computed for every input and then failed
    each at its encode; the registry declares result dtypes, so the run refuses up front."""
    root, _ = collection
    out = tmp_path / "out"
    sobel = _pipe(tmp_path, "steps:\n  - op: sobel\n")
    assert main(["run", sobel, str(root), str(out)]) == ExitCode.USAGE  # inputs' own: jpg, png
    err = capsys.readouterr().err
    assert "makes float32 images" in err and "use --format tif" in err, err
    assert main(["run", sobel, str(root), str(out), "--format", "png"]) == ExitCode.USAGE
    assert "--format: this pipeline makes float32 images and png cannot hold" in (
        capsys.readouterr().err)
    assert not out.exists()  # nothing was started
    res = CliRunner().invoke(cli, ["run", sobel, str(root), str(out), "--format", "tif",
                                   "--workers", "1", "-q", "--no-report"])
    assert res.exit_code == ExitCode.PARTIAL  # the collection's corrupt files; the rest written
    assert len(list(out.rglob("*.tif"))) == 5
    labels = _pipe(tmp_path, "steps:\n  - op: slic\n")
    assert main(["run", labels, str(root), str(tmp_path / "o2"), "--format", "tif"]) == 2
    assert "no image format holds them" in capsys.readouterr().err


def test_partial_exit_code_reaches_the_shell(collection, tmp_path):
    import subprocess
    import sys

    root, _ = collection
    proc = subprocess.run([sys.executable, "-m", "pixelmill", "run", _pipe(tmp_path), str(root),
                           str(tmp_path / "out"), "--workers", "1", "--no-report", "--glob", "*.png"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == ExitCode.PARTIAL, proc.stderr
    assert "3 inputs: 2 ok, 1 invalid, 0 failed" in proc.stdout


def test_no_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["run", _pipe(tmp_path), str(tmp_path / "empty"), str(tmp_path / "out")])
    assert code == ExitCode.NO_INPUT
    assert "no image files" in capsys.readouterr().err
