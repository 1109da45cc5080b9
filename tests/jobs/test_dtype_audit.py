"""The dtype policy end to end: through files, jobs and the tiled route, for every op.

The oracle is the pipeline called on the decoded array (``Pipeline.run(array).image``): an
input of each dtype (uint8, uint16, float32) and layout (gray, gray+alpha, RGB, RGBA), written
to a file that keeps it exactly (PNG 8/16-bit, TIFF 8/16-bit/float32), goes through a one-step
``pixelmill.run`` job to a format that holds the result, and must come back equal (bitwise for
integers, within a few float32 ulps for floats). Every op of the registry that makes an image
is enumerated with a few parameter settings (each choice of a choice parameter, each boolean
flipped, plus a few settings that push values past the dtype), so a new op is covered without
touching this file; one with a required parameter needs an entry in ``REQUIRED``.

Also: the registry's declared result dtype is what the op returns; a format that cannot hold
the result is refused before any work (or, when only some inputs make such a result, those
inputs fail with a reason naming it — never a silently rescaled or clipped file);
measurements reach the manifest as computed; the tiled route equals the whole-image route.
"""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

import pixelmill
from pixelmill import codecs
from pixelmill.engines import InlineEngine
from pixelmill.errors import InvalidParameterError, UnsuitableImageError
from pixelmill.manifest import read_manifest
from pixelmill.ops import registry
from pixelmill.pipeline import Pipeline

DTYPES = ("uint8", "uint16", "float32")
LAYOUTS = (1, 2, 3, 4)  # gray, gray+alpha, RGB, RGBA
SHAPE = (40, 50)

#: parameters an op cannot do without (an op with a required parameter must be listed here)
REQUIRED: dict[str, dict] = {
    "resize": {"factor": 0.5},
    "crop": {"x": 3, "y": 2, "width": 20, "height": 10},
    "center_crop": {"width": 20, "height": 10},
    "rotate": {"angle": 30.0},
    "affine": {"matrix": [1.0, 0.2, 2.0, 0.1, 0.9, -1.0]},
    "super_resolve": {"model": "bicubic", "device": "cpu"},
}
#: settings beside the enumerated ones: values pushed past the dtype's range, other sizes
EXTRA: dict[str, list[dict]] = {
    "gamma": [{"gamma": 0.5, "gain": 3.0}],
    "rescale_intensity": [{"in_low": 0.0, "in_high": 0.5, "out_low": -10.0, "out_high": 1e6}],
    "pad": [{"top": 2, "left": 3, "mode": "constant", "cval": 1e6},
            {"top": 1, "right": 2, "mode": "constant", "cval": -3.0}],
    "affine": [{"matrix": [1.0, 0.0, 3.0, 0.0, 1.0, -2.0], "cval": 1e30}],
    "rotate": [{"angle": 90.0}, {"angle": 30.0, "expand": True, "cval": 70000.0}],
    "resize": [{"factor": 2.0, "method": "bicubic"}, {"width": 17, "height": 9,
                                                      "method": "lanczos"}],
    "threshold": [{"method": "fixed", "value": 0.4}],
    "convert": [{"to": to, "source": src} for to in ("gray", "rgb", "ycbcr")
                for src in ("hsv", "lab", "ycbcr")],
    "super_resolve": [{"model": "espcn", "scale": 3, "device": "cpu"}],
    "unsharp_mask": [{"radius": 2.0, "amount": 5.0}],
}
#: ops whose enumeration would only repeat work (a model file for each setting)
SKIP = {"classify"}


def _variants(name: str) -> list[dict]:
    spec = registry()[name]
    base = dict(REQUIRED.get(name, {}))
    missing = [p for p, ps in spec.params.items() if ps.required and p not in base]
    assert not missing, f"add example parameters for op {name!r} to REQUIRED ({missing})"
    out = [base]
    for pname, p in spec.params.items():
        if pname in base and name == "super_resolve":
            continue  # each network is exercised by EXTRA; the default (edsr) is slow
        if p.choices is not None:
            out += [{**base, pname: c} for c in p.choices if c != p.default]
        elif p.type is bool:
            out.append({**base, pname: not p.default})
    out += [{**base, **extra} for extra in EXTRA.get(name, [])]
    valid = []
    for params in out:
        try:
            Pipeline.from_steps([{"op": name, **params}])
        except InvalidParameterError:
            continue  # a combination the op refuses at load (fixed threshold without value)
        valid.append(params)
    return valid


def _image_ops() -> list[str]:
    return [n for n, s in registry().items() if s.output in ("image", "labels") and n not in SKIP]


CASES = [(name, params) for name in _image_ops() for params in _variants(name)]
CASE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]
#: through files: every setting but the networks (one bicubic super_resolve is enough here)
WRITABLE = [(n, p) for n, p in CASES if registry()[n].output == "image"
            and p.get("model", "bicubic") == "bicubic"]
WRITABLE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(WRITABLE)]


def _make(dtype: str, layout: int, seed: int = 0) -> np.ndarray:
    """Smooth structure plus noise in the dtype's nominal range (float32: [0, 1])."""
    rng = np.random.default_rng(seed + 10 * layout)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    base = (np.sin(xx / 5.0) * np.cos(yy / 7.0) + 1) / 2
    size = SHAPE if layout == 1 else (*SHAPE, layout)
    x = 0.3 * rng.random(size) + 0.7 * (base if layout == 1 else base[..., None])
    if dtype == "uint8":
        return np.round(x * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.round(x * 65535).astype(np.uint16)
    return x.astype(np.float32)


def _write_exact(path: Path, image: np.ndarray) -> None:
    """Write with an encoder other than pixelmill's own: PNG via imagecodecs, TIFF via tifffile."""
    if path.suffix == ".png":
        path.write_bytes(bytes(imagecodecs.png_encode(image)))
    else:
        layout = 1 if image.ndim == 2 else image.shape[2]
        tifffile.imwrite(path, image, photometric="minisblack" if layout <= 2 else "rgb",
                         extrasamples=("unassalpha",) if layout in (2, 4) else None)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Every dtype × layout as TIFF, and as PNG for the integer dtypes; read back exactly."""
    root = tmp_path_factory.mktemp("dtype_inputs") / "in"
    root.mkdir()
    arrays = {}
    for dtype in DTYPES:
        for layout in LAYOUTS:
            image = _make(dtype, layout)
            for ext in ((".png", ".tif") if dtype != "float32" else (".tif",)):
                name = f"{dtype}_c{layout}_{ext[1:]}{ext}"  # stems differ: outputs too
                _write_exact(root / name, image)
                arrays[name] = image
    for name, image in arrays.items():
        back = pixelmill.read_image(str(root / name))
        assert back.dtype == image.dtype and back.shape == image.shape, name
        np.testing.assert_array_equal(back, image, err_msg=name)
    return root, arrays


def _expected(pipe: Pipeline, image: np.ndarray):
    """The pipeline's result on the array, or None when the op refuses this input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pipe.run(image)
        except (InvalidParameterError, UnsuitableImageError):
            return None


def _holds(dtype, shape, fmt: str) -> bool:
    try:
        codecs.check_encodable(shape, dtype, fmt)
    except InvalidParameterError:
        return False
    return True


def _assert_same(got: np.ndarray, exp: np.ndarray, what: str) -> None:
    assert got.dtype == exp.dtype, f"{what}: dtype {got.dtype}, expected {exp.dtype}"
    assert got.shape == exp.shape, f"{what}: shape {got.shape}, expected {exp.shape}"
    if exp.dtype.kind == "f":
        # OpenCV's vectorised and scalar paths round the last float bit by array position
        scale = max(1.0, float(np.nanmax(np.abs(exp))) if np.isfinite(exp).any() else 1.0)
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5 * scale, equal_nan=True,
                                   err_msg=what)
    else:
        np.testing.assert_array_equal(got, exp, err_msg=what)


def _run(pipe, root, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixelmill.run(pipe, str(root), str(out), engine=InlineEngine(), progress=False,
                             report=False, **kw)


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["uri"]).name: r for r in read_manifest(str(out / "manifest.parquet"))
            if "#tile=" not in r["key"]}


# ---- the registry declares what each op returns ----------------------------------------------
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_declared_result_dtype_is_what_the_op_returns(name, params):
    spec = registry()[name]
    pipe = Pipeline.from_steps([{"op": name, **params}])
    ran = 0
    for dtype in DTYPES:
        for layout in LAYOUTS:
            image = _make(dtype, layout, seed=1)
            result = _expected(pipe, image)
            if result is None:
                continue
            assert dtype in spec.dtypes, f"{name} took {dtype}, which it does not declare"
            out = result.image
            assert str(out.dtype) == pipe.output_dtype(dtype), (
                f"{name} {params} on {dtype} ×{layout}: returned {out.dtype}, the registry "
                f"declares {pipe.output_dtype(dtype)}")
            ran += 1
    assert ran, f"{name} {params}: no dtype/layout went through"


# ---- files in, job, files out == the pipeline on the decoded array ---------------------------
@pytest.mark.parametrize(("name", "params"), WRITABLE, ids=WRITABLE_IDS)
def test_job_output_files_equal_the_pipeline_on_the_array(name, params, inputs, tmp_path):
    root, arrays = inputs
    pipe = Pipeline.from_steps([{"op": name, **params}])
    checked = 0
    # TIFF holds every image dtype; PNG (8/16-bit) is compared for each op's first setting in
    # the next test, with jpg and webp
    for fmt in ("tif",):
        out = tmp_path / fmt
        if not any(_holds(pipe.output_dtype(d), (1, 1), fmt) for d in DTYPES):
            with pytest.raises(InvalidParameterError) as err:
                _run(pipe, root, out, format=fmt)
            assert err.value.field == "format" and "--format" in str(err.value)
            assert not out.exists()  # refused before any work
            continue
        _run(pipe, root, out, format=fmt)
        rows = _rows(out)
        assert set(rows) == set(arrays)
        for fname, image in arrays.items():
            row, result = rows[fname], _expected(pipe, image)
            what = f"{name} {params} {fname} -> {fmt}"
            if result is None:
                assert row["status"] != "ok", what
                continue
            exp = result.image
            if not _holds(exp.dtype, exp.shape, fmt):
                # never written rescaled or clipped: the input fails, saying why
                assert row["status"] == "failed", what
                assert "cannot hold" in row["reason"], (what, row["reason"])
                assert not list(out.glob(Path(fname).stem + ".*")), what
                continue
            assert row["status"] == "ok", (what, row["reason"])
            got = pixelmill.read_image(row["output"])
            _assert_same(got, exp, what)
            checked += 1
    assert checked, f"{name} {params}: nothing was compared"


# ---- formats that cannot hold the result ------------------------------------------------------
LOSSY = ("jpg", "webp")


def _as_webp(image: np.ndarray) -> np.ndarray:
    """WebP has no gray model: gray (+ alpha) is stored, and read back, as RGB(A)."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 2:
        return np.concatenate([np.repeat(image[..., :1], 3, axis=2), image[..., 1:]], axis=2)
    return image


@pytest.mark.parametrize("name", _image_ops())
def test_a_format_that_cannot_hold_the_result_is_refused_or_fails_never_rescales(
        name, inputs, tmp_path):
    root, arrays = inputs
    pipe = Pipeline.from_steps([{"op": name, **_variants(name)[0]}])
    for fmt in (*LOSSY, "png", "tif"):
        out = tmp_path / fmt
        outs = {pipe.output_dtype(d) for d in DTYPES}
        if not any(_holds(d, (1, 1), fmt) for d in outs):
            with pytest.raises(InvalidParameterError) as err:
                _run(pipe, root, out, format=fmt)
            assert err.value.field == "format", str(err.value)
            assert f"{fmt} cannot hold" in str(err.value) and "--format" in str(err.value)
            assert not out.exists()
            continue
        _run(pipe, root, out, format=fmt)
        for fname, row in _rows(out).items():
            result = _expected(pipe, arrays[fname])
            if result is None:
                continue
            exp = result.image
            if _holds(exp.dtype, exp.shape, fmt):
                assert row["status"] == "ok", (name, fname, fmt, row["reason"])
                got = pixelmill.read_image(row["output"])
                assert got.dtype == exp.dtype, (name, fname, fmt)
                if fmt == "webp":
                    exp = _as_webp(exp)
                assert got.shape == exp.shape, (name, fname, fmt)
                if fmt != "jpg":  # lossless webp, png, tif
                    _assert_same(got, exp, f"{name} {fname} {fmt}")
            else:
                assert row["status"] == "failed" and "cannot hold" in row["reason"], (
                    name, fname, fmt, row["status"], row["reason"])
                assert row.get("output") is None and not list(
                    out.glob(Path(fname).stem + ".*")), (name, fname, fmt)


def test_label_images_are_refused_by_every_format(inputs, tmp_path):
    root, _ = inputs
    for name in (n for n, s in registry().items() if s.output == "labels"):
        pipe = Pipeline.from_steps([{"op": name, **REQUIRED.get(name, {})}])
        for fmt in ("jpg", "png", "tif", "webp"):
            with pytest.raises(InvalidParameterError, match="int32") as err:
                _run(pipe, root, tmp_path / f"{name}-{fmt}", format=fmt)
            assert err.value.field == "format"
            assert not (tmp_path / f"{name}-{fmt}").exists()


# ---- measurements: the manifest holds what the op computed -------------------------------------
MEASURE_PIPELINES = [[{"op": n}] for n, s in registry().items() if s.output == "measures"
                     and n not in SKIP and n != "component_stats"] + [
    [{"op": "threshold"}, {"op": "component_stats"}],
    [{"op": "connected_components"}, {"op": "component_stats", "min_area": 3}],
    [{"op": "sobel"}, {"op": "channel_stats"}, {"op": "sharpness"}, {"op": "blur_flag"}],
    [{"op": "convert", "to": "hsv"}, {"op": "channel_stats"}, {"op": "phash"}],
]


@pytest.mark.parametrize("steps", MEASURE_PIPELINES, ids=lambda s: "+".join(x["op"] for x in s))
def test_manifest_measures_equal_direct_measures(steps, inputs, tmp_path):
    root, arrays = inputs
    pipe = Pipeline.from_steps(steps)
    manifest = tmp_path / "m.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixelmill.run(pipe, str(root), None, manifest=str(manifest), engine=InlineEngine(),
                      progress=False, report=False)
    rows = {Path(r["uri"]).name: r for r in read_manifest(str(manifest))}
    compared = 0
    for fname, image in arrays.items():
        row, result = rows[fname], _expected(pipe, image)
        if result is None:
            assert row["status"] != "ok", (steps, fname)
            continue
        assert row["status"] == "ok", (steps, fname, row["reason"])
        for key, value in result.measures.items():
            got = row[key]
            if isinstance(value, float) and math.isnan(value):
                assert got is None or (isinstance(got, float) and math.isnan(got)), (key, got)
            else:
                assert got == value and type(got) is type(value), (steps, fname, key, got, value)
            compared += 1
    assert compared


# ---- the tiled route gives the whole-image result ----------------------------------------------
TILED_INPUTS = ("uint8_c1_png.png", "uint8_c4_tif.tif", "uint16_c3_png.png",
                "uint16_c2_tif.tif", "float32_c1_tif.tif", "float32_c4_tif.tif")
TILEABLE = [(n, p) for n, p in CASES
            if Pipeline.from_steps([{"op": n, **p}]).tileable and n != "super_resolve"]
# one setting per op (the first tileable one), plus every border mode of one filter
TILED_SAMPLE = list({n: (n, p) for n, p in reversed(TILEABLE)}.values()) + [
    (n, p) for n, p in TILEABLE if n == "gaussian" and "mode" in p]


@pytest.mark.parametrize(("name", "params"), TILED_SAMPLE,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(TILED_SAMPLE)])
def test_tiled_output_equals_whole_image(name, params, inputs, tmp_path):
    from pixelmill.tiled import run_tiled

    root, arrays = inputs
    pipe = Pipeline.from_steps([{"op": name, **params}])
    for fname in TILED_INPUTS:
        result = _expected(pipe, arrays[fname])
        if result is None:
            continue
        out = tmp_path / f"{Path(fname).stem}.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = run_tiled(pipe, str(root / fname), str(out), tile=16,
                                engine=InlineEngine(), progress=False)
        assert summary.status == "ok" and summary.tiles > 1, (name, fname, summary)
        _assert_same(tifffile.imread(out), result.image, f"tiled {name} {params} {fname}")


def test_job_tiled_route_equals_whole_image_for_each_dtype(inputs, tmp_path):
    """Inputs above --tile-threshold go to the tiled runner; their outputs are the whole-image
    results, in the result's own dtype, for every input dtype and layout."""
    root, arrays = inputs
    for steps in ([{"op": "gaussian", "sigma": 1.5}], [{"op": "sobel"}],
                  [{"op": "threshold", "method": "adaptive_mean", "block_size": 7}],
                  [{"op": "resize", "factor": 0.5}], [{"op": "convert", "to": "hsv"}]):
        pipe = Pipeline.from_steps(steps)
        out = tmp_path / steps[0]["op"]
        _run(pipe, root, out, format="tif", tile_threshold=1000)
        rows = _rows(out)
        for fname, image in arrays.items():
            result, row = _expected(pipe, image), rows[fname]
            if result is None:
                continue
            assert row["status"] == "ok", (steps, fname, row["reason"])
            _assert_same(tifffile.imread(row["output"]), result.image, f"{steps} {fname}")


def test_tiled_runs_at_one_output_in_one_process_do_not_share_a_tile_store(inputs, tmp_path):
    """A worker kept the tile store it had opened for an output: a later run there (another
    pipeline, dtype or tile size; an open engine given to several jobs, an in-process one)
    wrote into the stale array: 'output dtype/channels float32 differ from the first tile's',
    or chunks of the old shape and an unreadable result."""
    from pixelmill.tiled import run_tiled

    root, arrays = inputs
    out = tmp_path / "same.tif"
    engine = InlineEngine()
    image = arrays["uint8_c3_png.png"]
    for steps, tile in (([{"op": "gaussian"}], 16), ([{"op": "sobel"}], 16),
                        ([{"op": "gaussian"}], 32), ([{"op": "convert", "to": "gray"}], 16)):
        pipe = Pipeline.from_steps(steps)
        summary = run_tiled(pipe, str(root / "uint8_c3_png.png"), str(out), tile=tile,
                            engine=engine, progress=False, overwrite=True, compression="zlib")
        assert summary.status == "ok", (steps, tile, summary)
        _assert_same(tifffile.imread(out), pipe.run(image).image, f"{steps} tile {tile}")
    # the same through jobs: each routes its input to a tile store at the same place
    for steps in ([{"op": "gaussian"}], [{"op": "sobel"}], [{"op": "resize", "factor": 0.5}]):
        pipe = Pipeline.from_steps(steps)
        _run(pipe, root, tmp_path / "job", format="tif", tile_threshold=1000,
             overwrite=True, include=["uint8_c3_png.png"])
        row = _rows(tmp_path / "job")["uint8_c3_png.png"]
        assert row["status"] == "ok", (steps, row["reason"])
        _assert_same(tifffile.imread(row["output"]), pipe.run(image).image, str(steps))


# ---- regressions found by this audit -------------------------------------------------------------
@pytest.mark.parametrize("op", ["affine", "rotate"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_warp_cval_past_the_dtype_is_clipped_not_wrapped(op, dtype):
    """cval is clipped to the dtype like every integer result: OpenCV's saturation went through
    a 32-bit int, so cval=1e30 (or 3e9) filled a uint8/uint16 border with 0, not the white."""
    image = np.full((6, 7), 100, dtype)
    params = ({"matrix": [1.0, 0.0, 3.0, 0.0, 1.0, 0.0]} if op == "affine"
              else {"angle": 45.0})
    white = np.iinfo(dtype).max
    for cval, fill in ((1e30, white), (3e9, white), (-1e30, 0), (float(white) + 0.4, white),
                       (7.0, 7)):
        out = Pipeline.from_steps([{"op": op, "cval": cval, "method": "nearest",
                                    **params}]).run(image).image
        assert out.dtype == image.dtype
        assert out[0, 0] == fill, (op, dtype, cval, np.unique(out))  # a corner is border


def test_cli_run_and_tile_keep_the_result_dtype(inputs, tmp_path, capsys):
    from pixelmill.cli import main

    root, arrays = inputs
    src = tmp_path / "in"
    src.mkdir()
    for fname in ("uint16_c3_png.png", "float32_c1_tif.tif"):
        shutil.copy(root / fname, src / fname)
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - op: sobel\n")
    for fmt in ("jpg", "png", "webp"):  # float32 results: refused before any work
        code = main(["run", str(pipe), str(src), str(tmp_path / fmt), "--format", fmt, "-q",
                     "--no-report"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"--format: this pipeline makes float32 images and {fmt} cannot hold" in err, err
        assert not (tmp_path / fmt).exists()
    code = main(["run", str(pipe), str(src), str(tmp_path / "o"), "--format", "tif",
                 "--workers", "1", "-q", "--no-report"])
    assert code == 0, capsys.readouterr()
    sobel = Pipeline.from_steps([{"op": "sobel"}])
    for fname, image in (("uint16_c3_png.png", arrays["uint16_c3_png.png"]),
                         ("float32_c1_tif.tif", arrays["float32_c1_tif.tif"])):
        got = pixelmill.read_image(str(tmp_path / "o" / (Path(fname).stem + ".tif")))
        _assert_same(got, sobel.run(image).image, f"cli run {fname}")
    gauss = tmp_path / "g.yaml"
    gauss.write_text("steps:\n  - op: unsharp_mask\n    radius: 2\n    amount: 3\n")
    code = main(["tile", str(gauss), str(src / "uint16_c3_png.png"), str(tmp_path / "t.tif"),
                 "--tile", "16", "--workers", "1", "-q"])
    assert code == 0, capsys.readouterr()
    exp = Pipeline.from_steps([{"op": "unsharp_mask", "radius": 2.0, "amount": 3.0}])
    _assert_same(tifffile.imread(tmp_path / "t.tif"), exp.run(arrays["uint16_c3_png.png"]).image,
                 "cli tile")
