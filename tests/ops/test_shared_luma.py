"""Measuring steps in a row share one luma per image (``ops._common.shared_luma``).

A measure-only job (``sharpness`` + ``brightness_contrast`` on 320×240 JPEGs) weighted the
channels twice per image, a sixth of its worker time; :meth:`Pipeline.run` now lets the
measuring steps of a run share it. The values must stay exactly what each op computes alone,
and nothing may read a luma of an image a pixel step has since changed.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from skimage import data

import pixelmill.ops._common as common
from pixelmill.ops import get_op
from pixelmill.ops._common import gray_float, luma, shared_luma
from pixelmill.pipeline import load_pipeline

MEASURES = [{"op": "sharpness"}, {"op": "brightness_contrast"}, {"op": "phash"},
            {"op": "blur_flag", "threshold": 50.0}]


def images() -> dict[str, np.ndarray]:
    rgb = data.astronaut()[::2, ::2]
    f = rgb.astype(np.float32) / 255
    f[10:20, 30:40, 1] = np.nan  # "no data": left out of every measure
    return {"uint8": rgb, "uint16": rgb.astype(np.uint16) * 257, "float32": f,
            "gray": data.camera()[::2, ::2], "rgba": np.dstack([rgb, rgb[..., :1]])}


@pytest.fixture
def counted(monkeypatch):
    calls: list[tuple[int, ...]] = []

    def counting(image):
        calls.append(image.shape)
        return gray_float(image)

    monkeypatch.setattr(common, "gray_float", counting)
    return calls


@pytest.mark.parametrize("kind", list(images()))
def test_a_run_of_measures_gives_each_op_s_own_values_from_one_luma(kind, counted):
    img = images()[kind]
    alone: dict = {}
    for step in MEASURES:
        kw = {k: v for k, v in step.items() if k != "op"}
        alone.update(get_op(step["op"]).func(img, **kw))
    assert len(counted) == 4  # alone: each op weights the channels itself
    counted.clear()
    got = load_pipeline({"steps": MEASURES}).run(img).measures
    assert len(counted) == 1
    assert got.keys() == alone.keys()
    for k, v in alone.items():
        assert got[k] == v or (v != v and got[k] != got[k]), k  # bit for bit (NaN is NaN)


def test_a_pixel_step_between_measures_gets_a_fresh_luma(counted):
    img = images()["uint8"]
    pipe = load_pipeline({"steps": [{"op": "sharpness"}, {"op": "brightness_contrast"},
                                    {"op": "gaussian", "sigma": 3.0},
                                    {"op": "sharpness"}, {"op": "brightness_contrast"}]})
    res = pipe.run(img)
    assert len(counted) == 2
    blurred = get_op("gaussian").func(img, sigma=3.0)
    assert res.measures["sharpness_3"] == get_op("sharpness").func(blurred)["sharpness"]
    assert res.measures["sharpness_3"] < res.measures["sharpness"] / 4  # not the first luma
    assert res.measures["brightness_4"] == \
        get_op("brightness_contrast").func(blurred)["brightness"]


def test_the_memo_is_cleared_before_every_pixel_step():
    """A step that changed its input in place must not leave a stale luma behind: the memo is
    emptied before any step that is not a measure, whatever that step does."""
    img = images()["uint8"].copy()
    seen: list[int] = []
    spec = get_op("flip")
    real = spec.func

    def in_place_flip(image, **kw):
        seen.append(len(common._SHARED_LUMA.get() or {}))
        image[:] = 255 - image  # a step that writes into its input (none of ours does)
        return image

    object.__setattr__(spec, "func", in_place_flip)
    try:
        pipe = load_pipeline({"steps": [{"op": "brightness_contrast"},
                                        {"op": "flip", "axis": "horizontal"},
                                        {"op": "brightness_contrast"}]})
        res = pipe.run(img)
    finally:
        object.__setattr__(spec, "func", real)
    assert seen == [0]
    assert res.measures["brightness_2"] == pytest.approx(1 - res.measures["brightness"],
                                                         abs=1e-6)


def test_luma_outside_a_run_is_a_new_writable_array_and_inside_read_only():
    img = images()["uint8"]
    a, b = luma(img), luma(img)
    assert a is not b and a.flags.writeable
    np.testing.assert_array_equal(a, gray_float(img))
    with shared_luma() as memo:
        c = luma(img)
        assert luma(img) is c and not c.flags.writeable
        with pytest.raises(ValueError):
            c[0, 0] = 1
        other = img.copy()  # equal values, another image: its own entry
        assert luma(other) is not c and len(memo) == 2
    assert not memo and common._SHARED_LUMA.get() is None


def test_a_run_keeps_no_image_alive():
    img = images()["uint8"].copy()
    ref = weakref.ref(img)
    load_pipeline({"steps": MEASURES}).run(img)
    del img
    gc.collect()
    assert ref() is None


def test_the_c_ordered_copy_of_a_view_lives_only_until_a_step_replaces_it():
    """A non-contiguous input (an EXIF-rotated decode) is copied to C order once per run; the
    copy must not stay alive through the later steps (it is a whole image of memory)."""
    img = np.ascontiguousarray(images()["uint8"])
    view = img[::-1]  # upside down: negative strides
    seen: list = []
    spec = get_op("flip")
    real = spec.func

    alive: list[bool] = []

    def recording_flip(image, **kw):
        if seen:  # a later step: is the copy the first step got still held by the run?
            gc.collect()
            alive.append(seen[0]() is not None)
        seen.append(weakref.ref(image))
        return real(image, **kw)

    object.__setattr__(spec, "func", recording_flip)
    try:
        pipe = load_pipeline({"steps": [{"op": "flip", "axis": "vertical"},
                                        {"op": "flip", "axis": "vertical"},
                                        {"op": "flip", "axis": "vertical"}]})
        out = pipe.run(view).image
    finally:
        object.__setattr__(spec, "func", real)
    np.testing.assert_array_equal(out, img)  # three vertical flips of the upside-down view
    assert alive == [False, False]  # the C-ordered copy went with the first step's result
