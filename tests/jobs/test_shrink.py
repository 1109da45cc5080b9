"""Shrink-on-load: JPEGs decoded at 1/2, 1/4, 1/8 in the DCT domain when a leading area resize
allows it; the output size is exactly the full-decode one and the pixels stay close."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pixelmill import codecs
from pixelmill.jobs import JobSpec, WorkUnit, plan_shrink, process_unit
from pixelmill.pipeline import Pipeline


def _pipe(**resize):
    return Pipeline.from_steps([{"op": "resize", "method": "area", **resize},
                                {"op": "gaussian", "sigma": 1.0}])


@pytest.mark.parametrize(
    ("resize", "size", "reduce", "target"),
    [
        ({"long_side": 512}, (1920, 1080), 2, (512, 288)),
        ({"long_side": 200}, (1920, 1080), 8, (200, 112)),
        ({"long_side": 480}, (1920, 1080), 4, (480, 270)),
        ({"long_side": 961}, (1920, 1080), 1, None),
        ({"width": 300, "height": 300}, (1924, 1082), 2, (300, 300)),
        # 1923 is no multiple of 2: a reduced decode would shift the grid by 0.27 px
        ({"long_side": 512}, (1923, 1081), 1, None),
        # ... but 5 px of 6001 at 1/8 shift a 100 px target by 0.08 px, at 1/4 by 0.05 px
        ({"long_side": 100}, (6001, 4000), 4, (100, 67)),
        ({"factor": 0.25}, (1920, 1080), 4, (480, 270)),
        ({"height": 100}, (640, 480), 4, (133, 100)),
    ],
)
def test_plan_shrink_choices(resize, size, reduce, target):
    pipe = _pipe(**resize)
    r, pinned = plan_shrink(pipe, *size, "jpg")
    assert r == reduce
    if reduce == 1:
        assert pinned is pipe
        return
    kw = pinned.steps[0].kwargs
    assert (kw["width"], kw["height"]) == target
    assert pinned.steps[1:] == pipe.steps[1:]
    # the pinned size is what the op itself gives on the full-size image
    full = pipe.steps[0].spec.func(np.zeros(size[::-1], np.uint8), **pipe.steps[0].kwargs)
    assert full.shape == target[::-1]


def test_no_shrink_for_other_methods_formats_or_first_steps():
    assert plan_shrink(_pipe(long_side=100).__class__.from_steps(
        [{"op": "resize", "long_side": 100, "method": "bilinear"}]), 1920, 1080, "jpg")[0] == 1
    assert plan_shrink(_pipe(long_side=100), 1920, 1080, "png")[0] == 1
    blur_first = Pipeline.from_steps([{"op": "gaussian", "sigma": 1},
                                      {"op": "resize", "long_side": 100}])
    assert plan_shrink(blur_first, 1920, 1080, "jpg")[0] == 1


@pytest.fixture(scope="module")
def photo_jpegs(tmp_path_factory):
    """Real photographs at camera-like sizes, with sensor-like noise, as q90 JPEGs."""
    from skimage import data

    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("shrink")
    out = {}
    for name, img, size in [("coffee", data.coffee(), (1920, 1080)),
                            ("astronaut", data.astronaut(), (2048, 1536)),
                            ("chelsea", data.chelsea(), (1000, 1504))]:
        big = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC).astype(np.int16)
        big = np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)
        path = root / f"{name}.jpg"
        cv2.imwrite(str(path), big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        out[name] = path
    return out


@pytest.mark.parametrize("long_side", [512, 240])
def test_shrunk_output_is_bounded_vs_full_decode(photo_jpegs, tmp_path, long_side):
    pipe = _pipe(long_side=long_side)
    for name, path in photo_jpegs.items():
        unit = WorkUnit(0, str(path), path.name, output=str(tmp_path / f"{name}.png"),
                        format="png")
        fast = process_unit(JobSpec(pipe), unit)
        assert fast["status"] == "ok" and fast["decode_reduce"] > 1, fast
        got = codecs.decode((tmp_path / f"{name}.png").read_bytes())
        full_image = codecs.decode(path.read_bytes())  # full decode, then the same pipeline
        want = pipe(full_image)
        assert got.shape == want.shape
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
        assert diff.mean() < 1.0, (name, long_side, diff.mean())
        assert np.percentile(diff, 99.9) <= 8, (name, long_side, np.percentile(diff, 99.9))
        slow = process_unit(JobSpec(pipe, shrink_on_load=False), unit)
        assert slow["decode_reduce"] == 1
        assert (slow["out_width"], slow["out_height"]) == (fast["out_width"], fast["out_height"])
