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


# ---------------------------------------------------------------------------------------------
# The command line: which commands take --overwrite, --resume, --engine, --storage-option


def command(path: str):
    """The click command ``pixelmill PATH`` (``"learn train"``), loaded as the CLI loads it."""
    import click

    from pixelmill.cli import cli

    ctx, cmd = click.Context(cli), cli
    for name in path.split():
        cmd = cmd.get_command(ctx, name)
        assert cmd is not None, f"pixelmill has no command {path!r}"
    return cmd


def flags(path: str) -> set[str]:
    return {opt for p in command(path).params for opt in (*p.opts, *p.secondary_opts)}


def expand(listed: str) -> list[str]:
    """``"`learn extract/train`, `index build`"`` -> ``["learn extract", "learn train", ...]``."""
    out = []
    for item in re.findall(r"`([^`]+)`", listed):
        words = item.split()
        head = " ".join(words[:-1])
        for last in words[-1].split("/"):
            out.append(f"{head} {last}".strip() if len(words) > 1 else last)
    return out


def test_commands_take_the_flags_the_readme_gives_them():
    text = readme()
    said = re.search(r"unless given `--overwrite` \((.*?)\); those that can continue", text)
    assert said, "README: the list of commands taking --overwrite is gone"
    overwrite = [c.removesuffix(" --out") for c in expand(said[1])]
    assert len(overwrite) == 14, overwrite
    for path in overwrite:
        assert "--overwrite" in flags(path), path
    # "those that can continue an interrupted run take --resume instead"
    resumable = [p for p in overwrite if "--resume" in flags(p)]
    assert resumable == ["run", "tile", "upscale", "sr train", "learn extract", "learn predict"]
    # --engine: "The commands that go over a collection or a huge image (...) run on --engine"
    said = re.search(r"The commands that go over a collection or a huge image \((.*?)\) run on",
                     text)
    assert said, "README: the list of commands taking --engine is gone"
    engine = expand(said[1])
    assert engine == ["scan", "run", "tile", "upscale", "learn extract", "learn predict"]
    said = re.search(r"all of them, and (.*?), read and write any fsspec URL", text)
    assert said, "README: the list of commands reading fsspec URLs is gone"
    storage = engine + expand(said[1].replace("`index`", "`index build/query/eval`"))
    for path in storage:
        assert "--engine" in flags(path) or path not in engine, path
        assert "--storage-option" in flags(path), path
    # "The `sr` commands (training, evaluation, fusion) work on local files."
    for path in ("sr train", "sr eval", "sr fuse", "sr export"):
        assert "--storage-option" not in flags(path), path


def test_flags_named_in_the_scan_table_and_run_prose_exist():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| `-r`, `--recursive` |"):text.index("A progress bar (files/s")]
    named = set(re.findall(r"`(--?[a-z][\w-]*)", table)) - {"-q", "--quiet"}  # run and tile's
    assert named >= {"--glob", "--verify", "--sha256", "--out", "--max-pixels", "--json"}
    assert named <= flags("scan"), named - flags("scan")
    assert {"-q", "--quiet"} <= flags("run") & flags("tile")
    prose = readme()
    other = re.search(r"Other flags: (.*?)\. An output folder inside", prose)
    assert other, "README: run's 'Other flags' list is gone"
    named = {f for f in re.findall(r"`(--[\w-]+)", other[1])}
    assert len(named) >= 9 and named <= flags("run"), named - flags("run")
    # "(`--engine local|dask|spark`, `--workers N`)", "`--format jpg|png|tif|webp`"
    from pixelmill.jobs._plan import OUTPUT_FORMATS

    assert "`--format jpg|png|tif|webp`" in prose
    assert set(OUTPUT_FORMATS.values()) == {"jpg", "png", "tif", "webp"}


# ---------------------------------------------------------------------------------------------
# pixelmill run: the naming template's fields


def test_naming_template_fields_are_the_planners():
    from pixelmill.jobs._plan import _TEMPLATE_FIELDS, render_name

    said = re.search(r"\(`--name` template, fields `([^`]+)`\)", readme())
    assert said, "README: the --name fields are gone"
    assert said[1].split() == ["{" + f + "}" for f in _TEMPLATE_FIELDS]
    name = next(p for p in command("run").params if p.name == "name_template")
    assert all(f in name.help for f in said[1].split()), name.help
    # default: OUTPUT/<relative folder>/<stem>.<ext>
    assert "to `OUTPUT/<relative folder>/<stem>.<ext>`" in readme()
    assert render_name(name.default, "cats/a.png", "jpg") == "cats/a.jpg"
    every = "/".join(said[1].split())
    assert render_name(every, "cats/a.png", "jpg", label="pets", index=7) == (
        "cats/a/jpg/a.png/png/pets/7")


# ---------------------------------------------------------------------------------------------
# Manifests: the columns the README names


def test_scan_manifest_columns(tmp_path):
    import pixelmill

    write(tmp_path / "cats/a.png", photo(3))
    said = re.search(r"The manifest has one row per file: `([^`]+)` \(\+ `sha256`\)", readme())
    assert said, "README: scan's manifest columns are gone"
    table = pixelmill.scan(str(tmp_path), recursive=True, label_from="parent", sha256=True,
                           workers=1)
    assert table.column_names == [*said[1].split(", "), "sha256"]
    assert table.column("mode").to_pylist() == ["RGB"]


def job(steps, inputs: dict[str, bytes], **kw):
    """A pixelmill.run job over a memory:// collection (run in this process, as the README
    says of memory:// stores); returns the manifest's rows."""
    import fsspec

    import pixelmill
    from pixelmill.manifest import read_manifest

    root = f"memory://readme-audit-{len(inputs)}-{abs(hash(str(sorted(inputs))))}"
    fs = fsspec.filesystem("memory")
    for rel, payload in inputs.items():
        fs.pipe(f"{root}/in/{rel}", payload)
    try:
        summary = pixelmill.run({"steps": steps}, f"{root}/in/", f"{root}/out/",
                                progress=False, report=False, **kw)
        return summary, read_manifest(summary.manifest)
    finally:
        fs.rm(root, recursive=True)


def test_run_manifest_columns_named_in_the_readme():
    from pixelmill import codecs

    text = readme()
    for said in ("`output_bytes`, `sha256`, `encoding` (`jpg q=90`, `png`…), "
                 "`width`/`height`, `out_width`/`out_height`, `label`",
                 "timings `t_read t_decode t_process t_encode t_write` plus `t_op<i>_<op>` "
                 "per step"):
        assert said in text, said
    inputs = {"cats/a.png": codecs.encode(photo(4), "png")}
    steps = [{"op": "resize", "factor": 0.5}, {"op": "sharpness"}, {"op": "color_moments"}]
    summary, rows = job(steps, inputs, format="jpg", quality=90, label_from="parent")
    assert summary.exit_code == 0
    row = rows[0]
    for column in ("status", "reason", "output", "output_bytes", "sha256", "encoding", "width",
                   "height", "out_width", "out_height", "label", "t_read", "t_decode",
                   "t_process", "t_encode", "t_write", "t_op0_resize", "t_op1_sharpness",
                   "t_op2_color_moments", "sharpness", "vec_color_moments", "pipeline"):
        assert column in row, column
    assert (row["status"], row["encoding"], row["label"]) == ("ok", "jpg q=90", "cats")
    assert (row["width"], row["height"], row["out_width"], row["out_height"]) == (32, 24, 16, 12)


def test_icc_column_only_when_an_output_carries_a_profile():
    from PIL import ImageCms

    from pixelmill import codecs

    assert ("empty for outputs without one, and no column at all when no output of the job "
            "carries one") in readme()
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with_one = {"a.png": codecs.encode(photo(5), "png", icc_profile=profile),
                "b.png": codecs.encode(photo(6), "png")}
    _, rows = job([{"op": "gaussian"}], with_one)
    assert [r["icc"] for r in rows] == ["sRGB built-in", None]
    _, rows = job([{"op": "gaussian"}], {"b.png": with_one["b.png"]})
    assert "icc" not in rows[0]


# ---------------------------------------------------------------------------------------------
# Pipeline validation: the README's example messages are the loader's, word for word

#: the README's message -> a pipeline that gives it
VALIDATION_EXAMPLES = {
    "steps[0].op": {"steps": [{"op": "gausian"}]},
    "steps[2].sigma": {"steps": [{"op": "resize", "factor": 0.5}, {"op": "gaussian"},
                                 {"op": "gaussian", "sigma": "abc"}]},
    "steps[0].sigmaa": {"steps": [{"op": "gaussian", "sigmaa": 1}]},
    "steps[0].method": {"steps": [{"op": "threshold", "method": "adaptiv"}]},
    "steps[0].grid[1]": {"steps": [{"op": "clahe", "grid": [4, 0]}]},
    "steps[1].size": {"steps": [{"op": "gaussian"}, {"op": "median", "size": 4}]},
    "steps[0].height": {"steps": [{"op": "crop", "x": 0, "y": 0, "width": 4}]},
    "steps[0]": {"steps": [{"op": "resize"}]},
    "steps[1].op": {"steps": [{"op": "slic"}, {"op": "sharpness"}]},
    "stepz": {"stepz": []},
}


def test_validation_examples_are_the_loaders_messages():
    from pixelmill.errors import InvalidParameterError
    from pixelmill.pipeline import load_pipeline

    text = README.read_text(encoding="utf-8")
    start = text.index("### Validation")
    begin = text.index("```\n", start) + 4
    lines = text[begin:text.index("\n```", begin)].splitlines()
    assert [line.split(":")[0] for line in lines] == list(VALIDATION_EXAMPLES)
    assert issubclass(InvalidParameterError, ValueError)  # "an InvalidParameterError, a ValueError"
    for line, pipeline in zip(lines, VALIDATION_EXAMPLES.values(), strict=True):
        with pytest.raises(InvalidParameterError) as caught:
            load_pipeline(pipeline)
        assert str(caught.value) == line


# ---------------------------------------------------------------------------------------------
# pixelmill tile: compression names, tile sizes


def test_tile_compression_names_and_tile_sizes():
    from pixelmill.regions import TIFF_COMPRESSIONS, ZARR_COMPRESSIONS
    from pixelmill.tiled._plan import TILE_CHOICES

    text = readme()
    said = re.search(r"`--compression`: for a TIFF one of tifffile's codecs that can encode on "
                     r"this machine \((.*?), which hold only some dtypes and channel counts\), "
                     r"for a Zarr (.*?) \(each chunk", text)
    assert said, "README: the --compression names are gone"
    assert tuple(re.findall(r"`(\w+)`", said[1])) == TIFF_COMPRESSIONS
    assert tuple(re.findall(r"`(\w+)`", said[2])) == ZARR_COMPRESSIONS
    sizes = re.search(r"the tile size \((\d+) … (\d+)\)", text)
    assert sizes and (int(sizes[1]), int(sizes[2])) == (TILE_CHOICES[0], TILE_CHOICES[-1])


# ---------------------------------------------------------------------------------------------
# learn: the stable split's formula


def test_stable_split_is_the_readme_formula():
    import hashlib

    from pixelmill.learn.split import split_of

    assert ("`u = first 8 bytes of SHA-256(\"<salt>\\0<relpath>\") / 2⁶⁴`; `train` when "
            "`u < 0.7`, `val` when `u < 0.8`, else `test` (`--ratios 7:1:2`, `--salt`)") in readme()
    for i in range(200):
        key, salt = f"class{i % 3}/{i:04d}.png", ("" if i % 2 else "s")
        u = int.from_bytes(hashlib.sha256(f"{salt}\0{key}".encode()).digest()[:8], "big") / 2**64
        expected = "train" if u < 0.7 else "val" if u < 0.8 else "test"
        assert split_of(key, "7:1:2", salt) == split_of(key, None, salt) == expected


# ---------------------------------------------------------------------------------------------
# Engines: the --engine address forms


def test_engine_addresses_the_readme_lists_are_accepted_and_others_refused():
    from pixelmill.engines import parse_engine_spec
    from pixelmill.errors import InvalidParameterError

    text = readme()
    assert ("(`tcp`, `tls`, `ws`, `wss`, `inproc`, `ucx`; none means `tcp`)") in text
    for scheme in ("tcp", "tls", "ws", "wss", "inproc", "ucx"):
        assert parse_engine_spec(f"dask={scheme}://host:8786") == ("dask", f"{scheme}://host:8786")
    assert parse_engine_spec("dask=host:8786") == ("dask", "host:8786")
    masters = re.search(r"a Spark master Spark parses \((.*?); Spark 4 has no Mesos\)", text)
    assert masters, "README: the Spark master forms are gone"
    forms = re.findall(r"`([^`]+)`", masters[1])
    assert len(forms) == 8, forms
    examples = {"local[N]": "local[4]", "local[N,F]": "local[2,3]",
                "local-cluster[N,C,M]": "local-cluster[2,1,1024]",
                "spark://HOST:PORT[,HOST:PORT…]": "spark://a:7077,b:7077",
                "k8s://[https://]HOST[:PORT]": "k8s://https://h:6443"}
    for form in forms:
        master = examples.get(form, form)
        assert parse_engine_spec(f"spark={master}") == ("spark", master), form
    for bad in ("dask=http://h:1", "dask=tcp://h", "dask=", "spark=", "spark=mesos://h:5050",
                "local=x", "ray"):
        with pytest.raises(InvalidParameterError):
            parse_engine_spec(bad)


# ---------------------------------------------------------------------------------------------
# Names: the files and Python objects the README's prose points at


def test_test_and_benchmark_files_named_in_the_readme_exist():
    named = set(re.findall(r"\b((?:tests|benchmarks)/[\w./]*\w)", README.read_text(encoding="utf-8")))
    assert len(named) >= 15, sorted(named)
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"


def test_python_names_in_the_readme_prose_exist():
    import importlib

    text = README.read_text(encoding="utf-8")
    names = set(re.findall(r"`(pixelmill(?:\.\w+)+)", text))
    names |= set(re.findall(r"python -m (pixelmill(?:\.\w+)+)", text))
    assert len(names) >= 15, sorted(names)
    for name in sorted(names):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            for attr in parts[i:]:
                assert hasattr(obj, attr), f"README.md names {name}, which does not exist"
                obj = getattr(obj, attr)
            break


@pytest.mark.parametrize(("module", "said", "names"), [
    ("pixelmill.tiling", "`pixelmill.tiling` is the pure geometry underneath (`TileWindow` with "
     "core and halo boxes, `grid`, `scale_box`, `crop_box`, `origin_step`)",
     ["TileWindow", "grid", "scale_box", "crop_box", "origin_step"]),
    ("pixelmill.records", "`ImageRecord.from_array / to_array`, `record_from_bytes`, "
     "`from_spark_df(df)` and `to_spark_df(spark, records)`",
     ["ImageRecord", "record_from_bytes", "from_spark_df", "to_spark_df"]),
    ("pixelmill.sr", "is available separately as `resize_opencv_cubic`",
     ["resize_opencv_cubic", "imresize", "evaluate_files", "fuse_frames", "train", "demo"]),
])
def test_functions_named_in_the_prose_exist(module, said, names):
    import importlib

    assert said in readme(), said
    mod = importlib.import_module(module)
    assert all(hasattr(mod, n) for n in names), [n for n in names if not hasattr(mod, n)]
