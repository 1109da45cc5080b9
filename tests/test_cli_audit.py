"""Fixes from the audit of pipeline specs and command-line usage errors.

Each test shows one defect a user hit: a pipeline URL read without ``--storage-option`` (and a
remote read error shown as a traceback), a JSON Schema that refused pipelines the loader takes,
flags that were silently ignored or contradicted each other, and a file flag naming a folder
that failed only after the whole job (or with a traceback). Usage errors must exit 2 before
anything is written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelmill.cli import main
from pixelmill.errors import PixelmillError, StorageError

#: s3 options for an endpoint on loopback where nothing listens (one attempt, no retries)
_CLOSED_S3 = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
              "config_kwargs": {"retries": {"max_attempts": 1}}}


def _flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += ["--storage-option", f"{key}={json.dumps(value)}"]
    return out


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
            folder / f"a{i}.png")
    return folder


@pytest.fixture
def gaussian_yaml(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("steps: [{op: gaussian, sigma: 1}]\n")
    return path


# -- 1. a pipeline URL is read with --storage-option ---------------------------------------------

def test_run_reads_an_s3_pipeline_with_the_storage_options(tmp_path, capsys):
    """`pixelmill run s3://b/p.yaml memory://in memory://out --storage-option ...` read the
    pipeline without the options (so from AWS, not the endpoint given) and died with a
    botocore traceback; the pipeline is now read like INPUT and OUTPUT."""
    import fsspec

    from tests._s3server import s3_server

    with s3_server(buckets=["specs"]) as so:
        s3 = fsspec.filesystem("s3", skip_instance_cache=True, **so)
        s3.pipe("specs/flip.yaml", b"steps: [{op: flip, axis: vertical}]\n")
        mem = fsspec.filesystem("memory")
        img = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
        buf = __import__("io").BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        mem.pipe("/audit-in/x.png", buf.getvalue())
        try:
            code = main(["run", "s3://specs/flip.yaml", "memory://audit-in",
                         "memory://audit-out", "-q", "--no-report", *_flags(so)])
            assert code == 0, capsys.readouterr().err
            out = np.asarray(Image.open(__import__("io").BytesIO(
                mem.cat("/audit-out/x.png"))))
            np.testing.assert_array_equal(out, img[::-1])  # the pipeline from S3 ran
        finally:
            mem.rm("/audit-in", recursive=True)
            if mem.exists("/audit-out"):
                mem.rm("/audit-out", recursive=True)


def test_an_unreachable_pipeline_url_is_a_message_not_a_traceback(tmp_path, capsys):
    """A remote read error of the pipeline (an endpoint that does not answer) escaped as the
    client's exception; it is a StorageError naming PIPELINE (exit 1), before any work."""
    from pixelmill.pipeline import load_pipeline

    with pytest.raises(StorageError, match=r"^PIPELINE: s3://bucket/p\.yaml: cannot read"):
        load_pipeline("s3://bucket/p.yaml", _CLOSED_S3)
    out = tmp_path / "out.tif"
    npy = tmp_path / "in.npy"
    np.save(npy, np.zeros((8, 8), np.uint8))
    assert main(["tile", "s3://bucket/p.yaml", str(npy), str(out), "-q",
                 *_flags(_CLOSED_S3)]) == 1
    assert capsys.readouterr().err.startswith("error: PIPELINE: s3://bucket/p.yaml: cannot read")
    assert not out.exists()


def test_an_empty_pipeline_file_is_named(tmp_path, images, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n  \n")
    out = tmp_path / "out"
    assert main(["run", str(empty), str(images), str(out), "-q"]) == 2
    assert f"error: pipeline file '{empty}' is empty" in capsys.readouterr().err
    assert not out.exists()


# -- 2. the JSON Schema accepts what the loader accepts ------------------------------------------

@pytest.mark.parametrize("doc", [
    {"name": None, "steps": ["gaussian"]},
    {"description": None, "steps": []},
    {"version": None, "name": "x", "steps": [{"op": "median", "size": 5}]},
])
def test_schema_accepts_the_null_header_fields_the_loader_accepts(doc):
    """`description:` with nothing after it is null: the loader took it, the schema (and so an
    editor validating against it) refused the file."""
    jsonschema = pytest.importorskip("jsonschema")
    from pixelmill.pipeline import load_pipeline, pipeline_json_schema

    load_pipeline(doc)  # the loader accepts it
    jsonschema.Draft202012Validator(pipeline_json_schema()).validate(doc)
    for bad in ({**doc, "name": 5}, {**doc, "version": True}, {**doc, "description": []}):
        assert not jsonschema.Draft202012Validator(pipeline_json_schema()).is_valid(bad)


# -- 3. contradictory or unused flags are usage errors -------------------------------------------

def test_ops_name_with_another_family_or_schema_is_a_usage_error(capsys):
    """`pixelmill ops gaussian --family color` showed gaussian (a filter) and `ops gaussian
    --schema` printed the whole schema: the flags were silently ignored."""
    assert main(["ops", "gaussian", "--family", "color"]) == 2
    assert "error: --family: op 'gaussian' is in family 'filters', not 'color'" in \
        capsys.readouterr().err
    assert main(["ops", "gaussian", "--family", "filters"]) == 0
    assert capsys.readouterr().out.startswith("gaussian  (filters")
    for extra in (["gaussian"], ["--family", "filters"]):
        assert main(["ops", "--schema", *extra]) == 2
        assert "error: --schema:" in capsys.readouterr().err
    assert main(["ops", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "pixelmill pipeline"


def test_upscale_in_memory_refuses_engine_and_workers_it_would_not_use(tmp_path, capsys):
    """`upscale in.png out.png --engine dask` / `--workers 8` ran in this process, silently
    ignoring the flags; only the streaming path (a .tif/.zarr OUTPUT) runs on an engine."""
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    out = tmp_path / "out.png"
    for flags, name in ((["--engine", "dask"], "--engine"), (["--workers", "2"], "--workers")):
        assert main(["upscale", str(src), str(out), "--model", "bicubic", *flags]) == 2
        assert f"error: {name}: " in capsys.readouterr().err
        assert not out.exists()
    assert main(["upscale", str(src), str(out), "--model", "bicubic", "--engine", "local"]) == 0
    assert Image.open(out).size == (16, 16)


def test_upscale_streaming_memory_error_names_the_flag(tmp_path, capsys):
    """On the streaming path a bad --memory said `memory: ...` (the API's name), on the
    in-memory path `--memory: ...`; both name the flag now."""
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    for name in ("out.tif", "out.png"):
        assert main(["upscale", str(src), str(tmp_path / name), "--model", "bicubic",
                     "--memory", "abc"]) == 2
        assert capsys.readouterr().err.startswith("error: --memory: expected a size"), name
        assert not (tmp_path / name).exists()


# -- 4. a file flag naming a folder fails before work --------------------------------------------

def test_scan_out_ending_with_a_slash_is_refused_before_the_scan(tmp_path, images, capsys):
    """`scan IN --out new/` scanned everything, then failed (exit 1, `Not a directory`) and
    left the folder `new` behind."""
    out = tmp_path / "new"
    assert main(["scan", str(images), "--out", f"{out}/", "--no-progress"]) == 2
    assert f"error: --out: {out}/ is a folder" in capsys.readouterr().err
    assert not out.exists()


def test_learn_extract_out_folder_is_refused_before_work(tmp_path, images, capsys):
    """`learn extract P IN --out new/` failed after the extraction (exit 1) leaving `new`; an
    existing folder with --overwrite died with fsspec's 'Cannot delete directory' traceback."""
    spec = tmp_path / "f.yaml"
    spec.write_text("steps: [color_histogram]\n")
    new = tmp_path / "new"
    assert main(["learn", "extract", str(spec), str(images), "--out", f"{new}/", "-q"]) == 2
    assert "error: --out: " in capsys.readouterr().err
    assert not new.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    assert main(["learn", "extract", str(spec), str(images), "--out", str(kept), "-q",
                 "--overwrite"]) == 2
    assert f"error: --out: {kept} is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]


def test_run_manifest_naming_a_folder_is_a_usage_error(tmp_path, images, gaussian_yaml, capsys):
    """`run P IN OUT --manifest DIR --overwrite` (DIR an existing folder) died with a
    'Cannot delete directory' traceback (exit 1)."""
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    out = tmp_path / "out"
    assert main(["run", str(gaussian_yaml), str(images), str(out), "--manifest", str(kept),
                 "--overwrite", "-q"]) == 2
    assert f"error: --manifest: {kept} is a folder" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]


def test_huge_split_ratios_keep_their_proportions():
    """1e308:1e308:1 summed to inf: every fraction was 0 and the job failed after its work."""
    from pixelmill.learn.split import parse_ratios

    assert parse_ratios("1e308:1e308:1") == pytest.approx((0.5, 0.5, 0.0))
    assert parse_ratios("7:1:2") == pytest.approx((0.7, 0.1, 0.2))


def test_hog_size_is_bounded_before_work():
    """hog size [100000, 100000] loaded, then failed every image with OpenCV out of memory."""
    from pixelmill.errors import InvalidParameterError
    from pixelmill.pipeline import load_pipeline

    with pytest.raises(InvalidParameterError, match="size"):
        load_pipeline({"steps": [{"op": "hog", "size": [100000, 100000]}]})
    load_pipeline({"steps": [{"op": "hog", "size": [64, 128]}]})


@pytest.mark.parametrize("api", ["run", "run_tiled", "extract"])
def test_the_python_api_reads_a_pipeline_url_with_the_storage_options(tmp_path, api,
                                                                       monkeypatch):
    """pixelmill.jobs.run('s3://.../p.yaml', ..., storage_options=...) (and run_tiled, and
    feature extraction) read the pipeline without the options: from AWS, not the endpoint."""
    import importlib

    from pixelmill import storage

    asked = []

    def read_bytes(uri, storage_options=None, *a, **k):
        asked.append((uri, storage_options))
        raise StorageError(f"{uri}: stop here")

    monkeypatch.setattr(storage, "read_bytes", read_bytes)
    where = {"run": "pixelmill.jobs", "run_tiled": "pixelmill.tiled",
             "extract": "pixelmill.learn.features"}[api]
    fn = getattr(importlib.import_module(where), api)
    with pytest.raises(PixelmillError, match="stop here"):
        fn("s3://specs/p.yaml", str(tmp_path / "in"), str(tmp_path / "out"),
           storage_options=_CLOSED_S3)
    assert asked[0] == ("s3://specs/p.yaml", _CLOSED_S3)
