"""``pixelmill ops``: listing, one op in full, JSON, the schema, and error exit codes."""

from __future__ import annotations

import json

import jsonschema
from click.testing import CliRunner

from pixelmill.cli import cli, main
from pixelmill.ops import registry
from pixelmill.pipeline import pipeline_json_schema


def _run(*args):
    result = CliRunner().invoke(cli, ["ops", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_lists_every_registered_op_with_family_halo_scale():
    out = _run()
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    for name, spec in registry().items():
        assert name in lines, name
        assert spec.family in lines[name]
    assert lines["gaussian"].split()[1:5] == ["filters", "image", "4*", "1"]
    assert lines["equalize_hist"].split()[3] == "global"
    assert "input-dependent" in lines["crop"] and "x!" in lines["crop"]
    assert "sigma=1.0" in lines["gaussian"]


def test_family_filter():
    out = _run("--family", "morphology")
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip() and
             not line.startswith(tuple("0123456789"))]
    assert set(names) == {"erode", "dilate", "opening", "closing", "gradient", "tophat",
                          "blackhat", "skeletonize"}


def test_json_listing_matches_the_registry():
    rows = json.loads(_run("--json"))
    assert [r["name"] for r in rows] == list(registry())
    by_name = {r["name"]: r for r in rows}
    gauss = by_name["gaussian"]
    assert gauss["halo"] == 4 and gauss["scale"] == 1 and gauss["halo_varies"]
    sigma = next(p for p in gauss["params"] if p["name"] == "sigma")
    assert sigma == {"name": "sigma", "type": "float", "required": False, "default": 1.0,
                     "bounds": {"ge": 0.0, "le": 200.0}, "doc": sigma["doc"]}
    assert sigma["doc"].startswith("Standard deviation")
    assert by_name["resize"]["scale"] is None and by_name["resize"]["scale_varies"]
    assert by_name["crop"]["scale"] is None and not by_name["crop"]["scale_varies"]
    assert by_name["threshold"]["halo"] == "global"  # otsu by default
    assert by_name["sobel"]["result_dtypes"] == dict.fromkeys(("uint8", "uint16", "float32"),
                                                               "float32")
    assert by_name["gaussian"]["result_dtypes"]["uint16"] == "uint16"
    assert by_name["convert"]["result_dtype_varies"] and "result_dtypes" not in by_name["sharpness"]


def test_one_op_in_full():
    out = _run("threshold")
    assert out.startswith("threshold  (segmentation, output: image)")
    assert "method: choice; default otsu; one of fixed, otsu, adaptive_mean" in out
    assert "block_size: int; default 35; >= 3 and <= 1001" in out
    assert "Neighbourhood side for the adaptive methods" in out
    assert "uint8 H×W mask" in out  # the Returns section (dtype policy) is shown
    assert "dtypes: uint8, uint16, float32  (result: uint8)" in out
    assert "Parameters\n----------" not in out  # not twice
    crop = _run("crop")
    assert "x: int; required; >= 0" in crop
    one = json.loads(_run("clahe", "--json"))
    assert one["name"] == "clahe" and one["dtypes"] == ["uint8", "uint16"]
    assert one["params"][1]["type"] == "list[2×int]" and one["params"][1]["default"] == [8, 8]


def test_schema_is_the_pipeline_schema_and_valid():
    schema = json.loads(_run("--schema"))
    assert schema == json.loads(json.dumps(pipeline_json_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)


def test_unknown_op_is_a_usage_error_with_suggestions(capsys):
    assert main(["ops", "gausian"]) == 2
    err = capsys.readouterr().err
    assert "unknown op 'gausian'; did you mean gaussian?" in err
    assert main(["ops", "--family", "filter"]) == 2
    assert "unknown family 'filter'" in capsys.readouterr().err
