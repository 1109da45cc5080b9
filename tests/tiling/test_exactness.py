"""Tiled == whole, for every op of the registry (and pipelines of several).

For each op with a finite halo and a known scale, the stitched result of
:func:`process_array_tiled` must equal running the op on the whole image: bit-identical for
integer outputs, within float rounding for float outputs. Image borders use each op's own
border mode (the tiler clamps the halo at the image border and crops per side only the context
it actually read), so the comparison includes every border mode. Ops that cannot be tiled
(global ones) must be processed whole, or refused with a TilingError naming them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixelmill.errors import TilingError
from pixelmill.ops import registry
from pixelmill.pipeline import Pipeline
from pixelmill.tiled import analyze, process_array_tiled
from pixelmill.tiling import origin_step

from .conftest import make_image

#: parameters for ops whose parameters are required, or whose defaults make them untileable
REQUIRED = {
    "resize": {"factor": 2.0},
    "rotate": {"angle": 90.0},
    "crop": {"x": 3, "y": 5, "width": 20, "height": 17},
    "center_crop": {"width": 20, "height": 17},
    "affine": {"matrix": [1.0, 0.0, 2.0, 0.0, 1.0, 3.0]},
}
#: non-default parameters where the halo or scale depends on them, and every border mode
NON_DEFAULT = [
    ("gaussian", {"sigma": 2.5, "truncate": 3.0}),
    ("gaussian", {"sigma": 1.5, "mode": "mirror"}),
    ("gaussian", {"sigma": 1.5, "mode": "nearest"}),
    ("gaussian", {"sigma": 1.5, "mode": "constant"}),
    ("gaussian", {"sigma": 1.5, "mode": "wrap"}),
    ("median", {"size": 5}),
    ("box", {"size": 7, "mode": "wrap"}),
    ("bilateral", {"diameter": 9}),
    ("dilate", {"size": 5, "shape": "ellipse"}),
    ("opening", {"size": 5, "shape": "cross", "mode": "constant"}),
    ("tophat", {"size": 7}),
    ("laplacian", {"ksize": 5}),
    ("harris", {"block_size": 5, "ksize": 5}),
    ("unsharp_mask", {"radius": 2.0, "amount": 1.5}),
    ("threshold", {"method": "fixed", "value": 0.5}),
    ("threshold", {"method": "adaptive_mean", "block_size": 11}),
    ("rescale_intensity", {"in_low": 0.1, "in_high": 0.8}),
    ("resize", {"factor": 3.0, "method": "bicubic"}),
    ("resize", {"factor": 2.0, "method": "nearest"}),
    ("resize", {"factor": 0.5, "method": "area"}),
    ("resize", {"factor": 0.75, "method": "area"}),  # the block-matrix area path (periods 4→3)
    ("resize", {"factor": 0.6, "method": "area"}),
    ("resize", {"factor": 1.5, "method": "bilinear"}),
    ("sobel", {"direction": "x"}),
]
PIPELINES = [
    [{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask", "radius": 1.0, "amount": 1.0}],
    [{"op": "median", "size": 3}, {"op": "resize", "factor": 2.0, "method": "bilinear"},
     {"op": "sobel"}],
    [{"op": "resize", "factor": 0.5}, {"op": "dilate", "size": 3},
     {"op": "resize", "factor": 2.0, "method": "bicubic"}],
    [{"op": "gaussian", "sigma": 1.5}, {"op": "threshold", "method": "fixed", "value": 100.0},
     {"op": "opening", "size": 3}],
]
DTYPES = ("uint8", "uint16", "float32")
#: ops that compute an integer result from a float32 intermediate made by OpenCV, whose SIMD
#: sums are ordered by position: a value within 1e-7 of .5 may round either way, so their
#: integer outputs may differ by 1 in a few pixels ("within float rounding")
FLOAT_INTERMEDIATE: set[str] = set()
#: costly ops (neural networks, non-local means): one dtype, RGB, two tile sizes
SLOW = {"super_resolve", "nl_means"}
TILES = (7, 16, 33)


def _cases():
    seen = []
    for name in registry():
        params = REQUIRED.get(name, {})
        seen.append((name, params))
    return seen + NON_DEFAULT


def _build(name: str, params: dict, dtype: str) -> Pipeline | None:
    params = dict(params)
    top = 1.0 if dtype == "float32" else float(np.iinfo(dtype).max)
    for key in ("value", "in_low", "in_high"):
        if isinstance(params.get(key), float) and params[key] <= 1.0:
            params[key] = params[key] * top
    return Pipeline.from_steps([{"op": name, **params}])


def _tileable(name: str, params: dict) -> bool:
    try:
        return analyze(_build(name, params, "float32")).tileable
    except Exception:
        return False


def _image_shape(pipeline: Pipeline, channels: int) -> tuple[int, ...]:
    step = analyze(pipeline).step
    h, w = 61, 47
    h, w = -(-h // step) * step, -(-w // step) * step  # whole output pixels after resampling
    return (h, w) if channels == 1 else (h, w, channels)


def _assert_same(tiled: np.ndarray, whole: np.ndarray, what: str, lsb: bool = False) -> None:
    assert tiled.shape == whole.shape, f"{what}: shape {tiled.shape} != {whole.shape}"
    assert tiled.dtype == whole.dtype, f"{what}: dtype {tiled.dtype} != {whole.dtype}"
    if whole.dtype.kind in "uib" and lsb:
        diff = np.abs(tiled.astype(np.int64) - whole.astype(np.int64))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= max(1, diff.size // 1000), (
            f"{what}: {np.count_nonzero(diff)} pixels differ, by up to {diff.max()}")
    elif whole.dtype.kind in "uib":
        diff = np.argwhere(tiled != whole)
        assert diff.size == 0, (f"{what}: {len(diff)} pixels differ, first at {diff[0].tolist()}: "
                                f"tiled {tiled[tuple(diff[0])]} whole {whole[tuple(diff[0])]}")
    else:
        span = float(np.nanmax(np.abs(whole))) if whole.size else 1.0
        np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-5 * max(span, 1.0),
                                   err_msg=what)


TILEABLE = [c for c in _cases() if _tileable(*c)]
GLOBAL_CASES = [c for c in _cases() if not _tileable(*c)]


def _id(case):
    name, params = case
    return name + ("[" + ",".join(f"{k}={v}" for k, v in params.items()) + "]" if params else "")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TILEABLE, ids=_id)
def test_tiled_equals_whole_for_every_tileable_op(case, dtype, channels):
    name, params = case
    spec = registry()[name]
    if dtype not in spec.dtypes:
        pytest.skip(f"{name} does not take {dtype}")
    tiles = TILES
    if name in SLOW:
        if dtype != spec.dtypes[0] or channels != 3:
            pytest.skip(f"{name} is slow: tested on {spec.dtypes[0]} RGB only")
        tiles = (33,)
    pipeline = _build(name, params, dtype)
    image = make_image(_image_shape(pipeline, channels), dtype)
    try:
        whole = pipeline(image)
    except (ValueError, TypeError) as e:
        pytest.skip(f"{name} rejects a {channels}-channel {dtype} image: {e}")
    for tile in tiles:
        tiled = process_array_tiled(pipeline, image, tile=tile)
        _assert_same(tiled, whole, f"{_id(case)} {dtype} {channels}ch tile={tile}",
                     lsb=name in FLOAT_INTERMEDIATE)


@pytest.mark.parametrize("steps", PIPELINES, ids=lambda s: "+".join(x["op"] for x in s))
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiled_equals_whole_for_pipelines(steps, dtype):
    pipeline = Pipeline.from_steps(steps)
    plan = analyze(pipeline)
    assert plan.tileable, plan.problem
    assert plan.halo >= math.ceil(pipeline.halo)
    image = make_image(_image_shape(pipeline, 3), dtype, seed=11)
    whole = pipeline(image)
    for tile in (*TILES, 512):
        _assert_same(process_array_tiled(pipeline, image, tile=tile), whole,
                     f"{steps} {dtype} tile={tile}",
                     lsb=any(s["op"] in FLOAT_INTERMEDIATE for s in steps))


def test_large_tile_on_larger_image():
    pipeline = Pipeline.from_steps([{"op": "gaussian", "sigma": 2.0}, {"op": "unsharp_mask"}])
    image = make_image((1100, 700, 3), "uint8", seed=3)
    _assert_same(process_array_tiled(pipeline, image, tile=512), pipeline(image), "512 tiles",
                 lsb=True)


@pytest.mark.parametrize("case", GLOBAL_CASES, ids=_id)
def test_untileable_ops_run_whole_or_are_refused_by_name(case):
    name, params = case
    try:
        pipeline = _build(name, params, "uint8")
    except Exception as e:  # an op that needs a resource (a model) to even be built
        pytest.skip(f"{name} cannot be built with test parameters: {e}")
    plan = analyze(pipeline)
    assert not plan.tileable and name in plan.problem
    image = make_image((40, 30, 3), "uint8")
    try:
        whole = pipeline.run(image).image
    except (ValueError, TypeError, ImportError) as e:
        pytest.skip(f"{name} rejects this image: {e}")
    _assert_same(process_array_tiled(pipeline, image, tile=8, memory="4GB"), whole, name)
    with pytest.raises(TilingError, match=name):
        process_array_tiled(pipeline, image, tile=8, memory=1000)


def test_resampling_to_a_fraction_of_a_pixel_is_processed_whole():
    pipeline = Pipeline.from_steps([{"op": "resize", "factor": 0.5}])
    image = make_image((61, 47), "uint8")
    assert "fraction of a pixel" in analyze(pipeline).size_problem(61, 47)
    _assert_same(process_array_tiled(pipeline, image, tile=8), pipeline(image), "odd ×0.5")
    with pytest.raises(TilingError, match="resize"):
        process_array_tiled(pipeline, image, tile=8, memory=1000)


@pytest.mark.parametrize("factor", [1.5, 0.75, 3.0])
def test_lanczos_by_a_factor_tiles_cannot_reproduce_is_processed_whole(factor):
    # OpenCV rounds Lanczos weights by the pixel's position: tiles differed from the whole
    # image by up to 3 levels (uint16) at most pixels; such a step runs whole, or is refused
    pipeline = Pipeline.from_steps([{"op": "resize", "factor": factor, "method": "lanczos"}])
    assert "lanczos" in analyze(pipeline).problem
    image = make_image((40, 200, 3), "uint16", seed=4)
    _assert_same(process_array_tiled(pipeline, image, tile=32), pipeline(image), "lanczos")
    with pytest.raises(TilingError, match="lanczos"):
        process_array_tiled(pipeline, image, tile=32, memory=1000)
    for exact in (2.0, 0.5):  # a power-of-two factor tiles exactly
        assert analyze(Pipeline.from_steps(
            [{"op": "resize", "factor": exact, "method": "lanczos"}])).tileable


def test_wrap_border_is_never_clamped_context():
    # the registry declares wrap-around borders global (a tile's edge is not the image's);
    # whatever an op declares, a wrap border must never be tiled with clamped halos
    pipeline = Pipeline.from_steps([{"op": "gaussian", "mode": "wrap"}, {"op": "median"}])
    plan = analyze(pipeline)
    assert not plan.tileable or plan.wrap
    image = make_image((30, 20), "uint8")
    _assert_same(process_array_tiled(pipeline, image, tile=8), pipeline(image), "wrap")


def test_wrapped_windows_match_numpy_wrap_padding():
    from pixelmill.tiled._array import window_of

    image = make_image((13, 9, 3), "uint16")
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="wrap")
    assert np.array_equal(window_of(image, (-4, 17, -4, 13)), padded)
    assert np.array_equal(window_of(image, (-2, 5, 6, 12)), padded[2:9, 10:16])


def test_origin_step_of_resampling_pipeline():
    pipeline = Pipeline.from_steps([{"op": "resize", "factor": 0.5}, {"op": "resize", "factor": 2.0}])
    plan = analyze(pipeline)
    assert plan.scale == 1 and plan.step == 2 and origin_step(plan.scale) == 1
