"""Inputs above tile_threshold go to the tiled runner, with the job's engine and manifest."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pixelmill import codecs
from pixelmill.jobs import run
from pixelmill.manifest import read_manifest

tiled = pytest.importorskip("pixelmill.tiled")


def test_big_inputs_are_tiled_and_equal_the_untiled_result(collection, tmp_path, engine,
                                                            blur_pipeline):
    import tifffile

    root, _ = collection
    out = tmp_path / "out"
    summary = run(blur_pipeline, str(root), str(out), engine=engine, progress=False,
                  report=False, tile_threshold=200_000, memory="1GB")
    rows = {r["relpath"]: r for r in read_manifest(str(out / "manifest.parquet"))
            if "#" not in r["key"]}
    # astronaut 512x512 and coffee 600x400 are above 200k pixels; chelsea 451x300 is not
    assert rows["people/astronaut.jpg"]["tiled"] and rows["coffee.jpg"]["tiled"]
    assert not rows["cats/chelsea.jpg"].get("tiled")
    assert rows["coffee.jpg"]["output"].endswith("coffee.tif")
    assert (summary.ok, summary.invalid, summary.failed) == (5, 2, 0)
    src = codecs.decode((root / "coffee.jpg").read_bytes())
    expected = cv2.GaussianBlur(src, (13, 13), 1.5, borderType=cv2.BORDER_REFLECT)
    got = tifffile.imread(out / "coffee.tif")
    np.testing.assert_array_equal(got, expected)
