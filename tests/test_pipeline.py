"""Pipelines: loading (YAML/JSON/Python), validation messages, halo/scale algebra, the JSON
Schema (checked with ``jsonschema``, an independent validator), immutability and running."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from pixelmill.errors import InvalidParameterError, UsageError
from pixelmill.ops import get_op, registry
from pixelmill.pipeline import Pipeline, Step, load_pipeline, pipeline_json_schema

EXAMPLES = Path(__file__).parent / "ops" / "pipelines"


@pytest.fixture(scope="module")
def validator():
    schema = pipeline_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _load_text(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


# ---- loading -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["thumbnail.yaml", "tileable.json", "segment.yaml"])
def test_example_files_load_and_validate(name, validator):
    path = EXAMPLES / name
    pipe = load_pipeline(path)
    assert len(pipe) == len(_load_text(path)["steps"])
    validator.validate(_load_text(path))
    # the same pipeline from a str path, a dict, a list and Pipeline itself
    assert load_pipeline(str(path)) == pipe
    assert load_pipeline(_load_text(path)) == pipe
    assert load_pipeline(_load_text(path)["steps"]) == pipe
    assert load_pipeline(pipe) is pipe


def test_yaml_and_json_give_the_same_pipeline():
    yaml_text = "steps:\n  - op: gaussian\n    sigma: 2\n  - {op: median, size: 5}\n"
    json_text = json.dumps({"steps": [{"op": "gaussian", "sigma": 2.0},
                                      {"op": "median", "size": 5}]})
    assert Pipeline.from_text(yaml_text) == Pipeline.from_text(json_text)


def test_python_forms():
    a = Pipeline.from_steps([{"op": "gaussian", "sigma": 1.5}, "sobel"])
    b = Pipeline.from_steps([("gaussian", {"sigma": 1.5}), ("sobel", {})])
    assert a == b
    assert [s.op for s in a.steps] == ["gaussian", "sobel"]
    assert Pipeline.from_steps(a.steps) == a  # Step values are accepted (and re-validated)
    assert Pipeline.from_steps([*a.steps, "median"]).steps[:2] == a.steps


def test_defaults_are_filled_and_values_coerced():
    pipe = Pipeline.from_steps([{"op": "gaussian"}, {"op": "connected_components",
                                                     "connectivity": 4.0}])
    assert pipe.steps[0].kwargs == {"sigma": 1.0, "truncate": 4.0, "mode": "reflect"}
    assert pipe.steps[1].kwargs["connectivity"] == 4
    assert isinstance(pipe.steps[1].kwargs["connectivity"], int)
    assert pipe == Pipeline.from_steps([{"op": "gaussian", "sigma": 1, "truncate": 4,
                                         "mode": "reflect"}, {"op": "connected_components",
                                                              "connectivity": 4}])


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot be read"):
        load_pipeline(tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_usage_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [{op: gaussian\n")
    with pytest.raises(UsageError, match="not valid YAML/JSON"):
        load_pipeline(path)


# ---- validation messages -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "field", "message"), [
    ("steps: [{op: gausian}]", "steps[0].op",
     "steps[0].op: unknown op 'gausian'; did you mean gaussian?"),
    ("steps: [{op: resize, factor: 0.5}, {op: box}, {op: gaussian, sigma: abc}]",
     "steps[2].sigma", "steps[2].sigma: expected a number >= 0 and <= 200, got 'abc'"),
    ("steps: [{op: gaussian, sigma: -1}]", "steps[0].sigma",
     "steps[0].sigma: expected a number >= 0 and <= 200, got -1"),
    ("steps: [{op: gaussian, sigmaa: 1}]", "steps[0].sigmaa",
     "steps[0].sigmaa: unknown parameter of op 'gaussian'; did you mean sigma?"),
    ("steps: [{op: threshold, method: adaptiv}]", "steps[0].method",
     "steps[0].method: expected one of 'fixed', 'otsu', 'adaptive_mean', 'adaptive_gaussian', "
     "got 'adaptiv' (did you mean 'adaptive_mean'?)"),
    ("steps: [{op: resize, width: 0}]", "steps[0].width",
     "steps[0].width: expected an integer >= 1 and <= 1000000, or null, got 0"),
    ("steps: [{op: box, size: 2.5}]", "steps[0].size", "steps[0].size: expected an integer"),
    ("steps: [{op: crop, x: 0, y: 0, width: 5}]", "steps[0].height",
     "steps[0].height: required parameter of op 'crop' is missing"),
    ("steps: [{op: clahe, grid: [4, 4, 4]}]", "steps[0].grid",
     "steps[0].grid: expected a list of 2 values"),
    ("steps: [{op: clahe, grid: [4, 0]}]", "steps[0].grid[1]",
     "steps[0].grid[1]: expected an integer >= 1 and <= 64, got 0"),
    ("steps: [{op: flip, axis: true}]", "steps[0].axis", "steps[0].axis: expected one of"),
    ("steps: [{op: threshold, invert: 'yes'}]", "steps[0].invert",
     "steps[0].invert: expected true or false, got 'yes'"),
    ("steps: [{op: resize}]", "steps[0]",
     "steps[0]: give exactly one of width/height, long_side or factor"),
    ("steps: [{op: sobel}, {op: median, size: 4}]", "steps[1].size",
     "steps[1].size: expected an odd integer, got 4"),
    ("steps: [{op: threshold, method: fixed}]", "steps[0].value",
     "steps[0].value: method 'fixed' needs a threshold value"),
    ("steps: [{op: sobel}, {sigma: 1}]", "steps[1]", "steps[1]: a step needs an 'op' field"),
    ("steps: [{op: sobel}, 42]", "steps[1]", "steps[1]: expected a mapping"),
    ("steps: [{op: [1]}]", "steps[0].op", "steps[0].op: expected an op name, got [1]"),
    ("steps: {op: sobel}", "steps", "steps: expected a list of steps"),
    ("steps: [{op: slic}, {op: sharpness}, {op: gaussian}]", "steps[1].op",
     "steps[1].op: 'sharpness' cannot take the int32 label image made by steps[0] (slic)"),
    ("stepz: []", "stepz", "stepz: unknown top-level field; did you mean steps?"),
    ("", "steps", "pipeline: expected a mapping with a 'steps' list"),
])
def test_validation_names_the_field(text, field, message):
    with pytest.raises(InvalidParameterError) as info:
        Pipeline.from_text(text)
    assert info.value.field == field
    assert str(info.value).startswith(message), str(info.value)


def test_errors_are_value_errors_for_python_callers():
    with pytest.raises(ValueError, match="steps\\[0\\]"):
        Pipeline.from_steps([{"op": "gaussian", "sigma": "x"}])


# ---- halo and scale algebra ----------------------------------------------------------------------
def test_halo_after_a_downscale_is_counted_in_input_pixels():
    pipe = Pipeline.from_steps([{"op": "resize", "factor": 0.5, "method": "area"},
                                {"op": "gaussian", "sigma": 1.0}])
    # resize(area) reaches 1 input pixel; gaussian's radius 4 at half size is 8 input pixels
    assert pipe.halo == 1 + 4 / 0.5
    assert pipe.scale == 0.5
    assert pipe.tileable


def test_halo_after_an_upscale_shrinks():
    pipe = Pipeline.from_steps([{"op": "gaussian", "sigma": 0.5},  # radius 2
                                {"op": "resize", "factor": 2.0, "method": "bicubic"},
                                {"op": "box", "size": 9}])  # radius 4 at double size
    assert pipe.halo == 2 + 2 + 4 / 2
    assert pipe.scale == 2.0


def test_scales_multiply_and_halos_add():
    pipe = Pipeline.from_steps([{"op": "median", "size": 5}, {"op": "erode", "size": 3},
                                {"op": "resize", "factor": 0.25, "method": "lanczos"},
                                {"op": "resize", "factor": 0.5, "method": "bilinear"},
                                {"op": "sobel"}])
    assert pipe.scale == 0.125
    assert pipe.halo == 2 + 1 + 4 + 1 / 0.25 + 1 / 0.125


def test_untileable_steps_say_why():
    pipe = Pipeline.from_steps([{"op": "resize", "long_side": 256}, {"op": "equalize_hist"},
                                {"op": "gaussian", "mode": "wrap"}, {"op": "sharpness"},
                                {"op": "gaussian"}])
    assert pipe.scale is None and math.isinf(pipe.halo) and not pipe.tileable
    reasons = {i: why for i, _, why in pipe.untileable_steps()}
    assert set(reasons) == {0, 1, 2, 3}
    assert "size" in reasons[0] and "whole image" in reasons[1] and "whole image" in reasons[3]
    assert "wrap" in reasons[2]


def test_empty_pipeline_is_identity():
    pipe = Pipeline.from_steps([])
    assert pipe.halo == 0 and pipe.scale == 1.0 and pipe.tileable
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(pipe(image), image)


# ---- JSON Schema -------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", [
    {"steps": [{"op": "gausian"}]},
    {"steps": [{"op": "gaussian", "sigma": "abc"}]},
    {"steps": [{"op": "gaussian", "sigma": -1}]},
    {"steps": [{"op": "gaussian", "sigmaa": 1}]},
    {"steps": [{"op": "crop", "x": 0, "y": 0, "width": 5}]},
    {"steps": [{"op": "clahe", "grid": [4, 4, 4]}]},
    {"steps": [{"op": "threshold", "method": "adaptiv"}]},
    {"steps": [{"sigma": 1}]},
    {"stepz": []},
    {"steps": {"op": "sobel"}},
])
def test_schema_rejects_what_the_loader_rejects(doc, validator):
    assert not validator.is_valid(doc)
    with pytest.raises(InvalidParameterError):
        Pipeline.from_dict(doc)


def test_schema_accepts_every_op_with_its_defaults(validator):
    from tests.ops.conftest import EXAMPLE_PARAMS, our_ops

    for name in our_ops():
        spec = registry()[name]
        params = {k: v for k, v in EXAMPLE_PARAMS.get(name, {}).items()}
        for pname, p in spec.params.items():
            if p.required and pname not in params:
                pytest.fail(f"no example value for required {name}.{pname}")
        step = {"op": name, **params}
        validator.validate({"steps": [step]})
        # the loader accepts it too, and its filled-in form is still schema-valid
        pipe = Pipeline.from_steps([step])
        validator.validate(pipe.to_dict())


def test_schema_describes_parameters():
    schema = pipeline_json_schema()
    variants = {v["title"]: v for v in schema["properties"]["steps"]["items"]["oneOf"]}
    sigma = variants["gaussian"]["properties"]["sigma"]
    assert sigma["type"] == "number" and sigma["minimum"] == 0 and sigma["default"] == 1.0
    assert sigma["description"]
    assert variants["crop"]["required"] == ["op", "x", "y", "width", "height"]
    assert variants["flip"]["properties"]["axis"]["enum"] == ["horizontal", "vertical", "both"]


# ---- a frozen, hashable value --------------------------------------------------------------------
def test_pipeline_is_frozen_and_hashable():
    a = load_pipeline(EXAMPLES / "tileable.json")
    b = load_pipeline(EXAMPLES / "tileable.json")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.steps = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.steps[0].op = "box"
    assert isinstance(a.steps, tuple) and isinstance(a.steps[0], Step)


def test_fingerprint_tracks_the_validated_parameters():
    a = Pipeline.from_steps([{"op": "gaussian"}])
    assert a.fingerprint == Pipeline.from_steps([{"op": "gaussian", "sigma": 1.0}]).fingerprint
    assert a.fingerprint != Pipeline.from_steps([{"op": "gaussian", "sigma": 1.1}]).fingerprint
    assert len(a.fingerprint) == 16


def test_round_trips_through_dict_and_json():
    pipe = load_pipeline(EXAMPLES / "segment.yaml")
    assert Pipeline.from_dict(pipe.to_dict()) == pipe
    assert Pipeline.from_dict(json.loads(pipe.to_json())) == pipe


# ---- running -----------------------------------------------------------------------------------
def test_run_chains_images_and_collects_measures(astronaut):
    pipe = load_pipeline(EXAMPLES / "thumbnail.yaml")
    result = pipe.run(astronaut)
    assert result.image.shape == (512, 512, 3) and result.image.dtype == np.uint8
    want = get_op("unsharp_mask")(get_op("gaussian")(get_op("resize")(
        astronaut, long_side=512, method="area"), sigma=1.5), radius=1.5, amount=0.8)
    np.testing.assert_array_equal(result.image, want)
    assert set(result.measures) == {"sharpness", "phash"}
    assert result.measures["sharpness"] == get_op("sharpness")(want)["sharpness"]
    assert list(result.timings) == ["0:resize", "1:gaussian", "2:unsharp_mask", "3:sharpness",
                                    "4:phash"]


def test_repeated_measures_keep_both_values(camera):
    pipe = Pipeline.from_steps(["sharpness", {"op": "gaussian", "sigma": 3}, "sharpness"])
    result = pipe.run(camera)
    assert set(result.measures) == {"sharpness", "sharpness_2"}
    assert result.measures["sharpness_2"] < result.measures["sharpness"]


def test_labels_flow_into_measures():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 255
    mask[10:15, 10:18] = 255
    result = Pipeline.from_steps(["connected_components", "component_stats",
                                  "connected_components"]).run(mask)
    assert result.image.dtype == np.int32 and result.image.max() == 2
    assert result.measures["components"] == 2


# ---- number forms, duplicate keys, schema = loader (audit) ---------------------------------------
@pytest.mark.parametrize(("text", "sigma"), [
    ('{"steps": [{"op": "gaussian", "sigma": 5e-1}]}', 0.5),
    ("steps: [{op: gaussian, sigma: 1E+0}]", 1.0),
    ("steps: [{op: gaussian, sigma: 2e0}]", 2.0),
    ("steps: [{op: gaussian, sigma: .5}]", 0.5),
    ("steps: [{op: gaussian, sigma: 1.5e-0}]", 1.5),
])
def test_json_and_yaml_1_2_number_forms_are_numbers(text, sigma):
    """PyYAML (YAML 1.1) read ``5e-1`` as the string '5e-1': a valid JSON file was refused."""
    assert Pipeline.from_text(text).steps[0].kwargs["sigma"] == sigma


def test_exponent_without_a_dot_is_a_number_for_integers_too():
    pipe = Pipeline.from_text('{"steps": [{"op": "resize", "long_side": 1e3}]}')
    assert pipe.steps[0].kwargs["long_side"] == 1000


def test_strings_that_only_look_like_numbers_stay_strings():
    import yaml

    from pixelmill.pipeline import _pipeline_loader

    assert yaml.load("[5e, e5, '5e-1', abc, 1, 1.5]", Loader=_pipeline_loader()) == [
        "5e", "e5", "5e-1", "abc", 1, 1.5]
    assert yaml.safe_load("a: 5e-1") == {"a": "5e-1"}  # SafeLoader itself is left as it was


@pytest.mark.parametrize(("text", "key", "line"), [
    ("steps: [{op: gaussian, sigma: 1, sigma: 2}]", "sigma", 1),
    ("steps:\n  - op: gaussian\n    sigma: 1\n    sigma: 2\n", "sigma", 4),
    ("steps: []\nsteps: [{op: sobel}]\n", "steps", 2),
])
def test_duplicate_keys_are_an_error_naming_the_key_and_line(text, key, line):
    with pytest.raises(InvalidParameterError) as info:
        Pipeline.from_text(text, "p.yaml")
    assert info.value.field == key
    assert f"line {line}: duplicate key {key!r}" in str(info.value)
    assert str(info.value).startswith("p.yaml: ")


def test_a_key_that_overrides_a_yaml_merge_is_no_duplicate():
    """``<<: *base`` then ``sigma: 2`` (YAML's merge, the later key wins) was refused as a
    duplicate key 'sigma': the merged keys were counted as written twice."""
    text = ("steps:\n  - &blur {op: gaussian, sigma: 1.0}\n  - <<: *blur\n    sigma: 2.0\n"
            "  - {<<: *blur}\n")
    assert [s.kwargs["sigma"] for s in Pipeline.from_text(text).steps] == [1.0, 2.0, 1.0]
    with pytest.raises(InvalidParameterError, match="line 5: duplicate key 'sigma'"):
        Pipeline.from_text("steps:\n  - &blur {op: gaussian, sigma: 1.0}\n  - <<: *blur\n"
                           "    sigma: 2.0\n    sigma: 3.0\n")


def test_duplicate_key_in_a_file_exits_2(tmp_path, capsys):
    from pixelmill.cli import main

    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - {op: gaussian, sigma: 1, sigma: 2}\n")
    (tmp_path / "in").mkdir()
    assert main(["run", str(path), str(tmp_path / "in"), str(tmp_path / "out")]) == 2
    assert "duplicate key 'sigma'" in capsys.readouterr().err


@pytest.mark.parametrize("doc", [
    {"steps": [{"op": "clahe", "grid": 8}]},  # a scalar broadcasts to every entry
    {"steps": ["gaussian", "sobel"]},  # a bare op name: the op with its defaults
    [{"op": "gaussian", "sigma": 2}, "sobel"],  # the list of steps alone
    ["gaussian"],
])
def test_schema_accepts_what_the_loader_accepts(doc, validator):
    Pipeline.from_dict(doc)
    validator.validate(doc)


@pytest.mark.parametrize("doc", [
    {"steps": ["crop"]},  # crop has required parameters: not a bare name
    {"steps": ["gausian"]},
    [{"op": "gaussian", "sigma": -1}],
    [42],
    {"steps": [{"op": "clahe", "grid": 0}]},
    {"steps": [{"op": "clahe", "grid": "8"}]},
])
def test_schema_still_rejects_what_the_loader_rejects(doc, validator):
    assert not validator.is_valid(doc)
    with pytest.raises(InvalidParameterError):
        Pipeline.from_dict(doc)


def test_learn_grid_values_read_json_number_forms():
    from pixelmill.cli.learn import _parse_grid

    assert _parse_grid(("C=1e-1,1e1,2",)) == {"C": [0.1, 10.0, 2]}


# ---- an op-spec audit: edges of the validator ---------------------------------------------
@pytest.mark.parametrize(("text", "field", "message"), [
    ("steps:\n  - op: gaussian\n    1: 2\n", "steps[0].1", "unknown parameter"),  # was TypeError
    ("steps:\n  - op: gaussian\n    sigma: 1" + "0" * 400 + "\n", "steps[0].sigma",
     "got 1000"),  # was OverflowError
    ("steps:\n  - op: glcm\n    distances: []\n", "steps[0].distances",
     "got an empty list"),  # every worker failed on it
    ("steps:\n  - op: median\n    size: 1_1\n", "steps[0].size", "got '1_1'"),  # YAML 1.1: 11
    ("steps:\n  - op: rotate\n    angle: 1:30\n", "steps[0].angle", "got '1:30'"),  # 1.1: 90
    ("name: 5\nsteps: []\n", "name", "expected a string"),  # the schema refused, the loader not
    ("version: 1.5\nsteps: []\n", "version", "expected an integer or a string"),
    ("steps:\n  - op: pad\n    left: 2\n    cval: 1.0e39\n", "steps[0].cval", r"<= 3.4e\+38"),
    ("steps:\n  - op: bilateral\n    sigma_color: 1.0e-200\n", "steps[0].sigma_color",
     ">= 1e-06"),  # ZeroDivisionError in the worker
    ("steps:\n  - op: hog\n    size: [8, 8]\n", "steps[0].size",
     r"^steps\[0\]\.size: \[8, 8\] is smaller"),  # was "steps[0]: hog: size ..."
    ("steps:\n  - op: color_histogram\n    joint: true\n    bins: 32\n", "steps[0].bins",
     "at most 16, got 32"),
])
def test_validator_edges_name_the_field(text, field, message):
    with pytest.raises(InvalidParameterError, match=message) as err:
        Pipeline.from_text(text)
    assert err.value.field == field


def test_integers_are_read_as_yaml_1_2():
    """010 was eight (YAML 1.1 octal), as the error said: "expected an odd integer, got 8"."""
    def size(text):
        return dict(Pipeline.from_text(f"steps:\n  - op: median\n    size: {text}\n")
                    .steps[0].params)["size"]

    assert (size("011"), size("0o13"), size("0xB"), size("+11")) == (11, 11, 11, 11)


def test_deep_nesting_and_huge_values_give_short_errors():
    deep = "steps:\n  - op: gaussian\n    sigma: " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(UsageError, match="nested too deeply"):
        Pipeline.from_text(deep)
    with pytest.raises(InvalidParameterError) as err:
        Pipeline.from_text("steps:\n  - op: gaussian\n    mode: " + "x" * 1_000_000 + "\n")
    assert len(str(err.value)) < 300  # the 1 MB value is not echoed whole


def test_schema_refuses_an_empty_list_as_the_loader_does():
    schema = pipeline_json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"steps": [{"op": "glcm", "distances": []}]}, schema)
    jsonschema.validate({"steps": [{"op": "glcm", "distances": [1]}]}, schema)
