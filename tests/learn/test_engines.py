"""Feature extraction is engine-agnostic: Dask gives the local engine's table, row for row."""

from __future__ import annotations

import numpy as np
import pytest

from pixelmill import learn
from pixelmill.learn.datasets import color_classes, write_labelled

pytestmark = [pytest.mark.dask, pytest.mark.filterwarnings("ignore:Port .* is already in use")]


def test_dask_extraction_equals_local(tmp_path):
    pytest.importorskip("distributed")
    images, labels = color_classes(3, size=16, seed=7)
    write_labelled(str(tmp_path / "images"), images, labels)
    steps = [{"op": "color_histogram", "bins": 4}, {"op": "glcm", "levels": 8}]
    tables = {}
    for engine in ("local", "dask"):
        out = str(tmp_path / f"{engine}.parquet")
        summary = learn.extract(steps, str(tmp_path / "images"), out, label_from="parent",
                                engine=engine, workers=1)
        assert summary.ok == 15
        tables[engine] = learn.load_features(out)
    a, b = tables["local"], tables["dask"]
    ia, ib = np.argsort(a.keys), np.argsort(b.keys)
    np.testing.assert_array_equal(a.X[ia], b.X[ib])
    assert list(a.split[ia]) == list(b.split[ib]) and list(a.labels[ia]) == list(b.labels[ib])
