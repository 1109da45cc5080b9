"""Known result: scikit-learn's digits as PNG files -> HOG (batch job) -> RBF SVM and retrieval.

Published figures for the digits put SVMs on raw pixels at ~98-99 %; the issue asks HOG +
RBF SVM for >= 97 % test accuracy on our hash split, and recall@10 >= 0.95 for retrieval.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from pixelmill import learn
from pixelmill.errors import UsageError

SMALL_GRID = {"C": [1.0, 10.0], "gamma": [1.0]}


@pytest.fixture(scope="module")
def svm_dir(digits_features, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("svm"))
    learn.train(digits_features, "rbf_svm", out, grid=SMALL_GRID)
    return out


def test_feature_table_has_rows_labels_split_and_pipeline(digits_features):
    table = pq.read_table(digits_features)
    assert table.num_rows == 1797
    assert {"key", "uri", "label", "split", "vec_hog", "status"} <= set(table.column_names)
    fs = learn.load_features(digits_features)
    assert fs.X.shape == (1797, 324) and fs.columns == ["vec_hog"]
    assert sorted(set(fs.labels)) == [str(d) for d in range(10)]
    # the split column is the documented hash of each relative path
    expected = learn.assign_split(table.column("relpath").to_pylist())
    assert list(fs.split) == expected
    assert fs.pipeline["steps"][0]["op"] == "hog"


def test_hog_rbf_svm_reaches_97_percent(svm_dir, digits_features, tmp_path):
    with open(os.path.join(svm_dir, "model.json")) as f:
        meta = json.load(f)
    assert meta["params"] in ({"C": 1.0, "gamma": 1.0}, {"C": 10.0, "gamma": 1.0})
    assert len(meta["search"]) == 2  # every candidate scored on the val split
    report = str(tmp_path / "report.html")
    ev = learn.evaluate(svm_dir, digits_features, report=report)
    assert ev.split == "test" and ev.n == int(np.sum(learn.load_features(digits_features).split
                                                     == "test"))
    assert ev.accuracy >= 0.97
    assert np.trace(np.array(ev.confusion)) == round(ev.accuracy * ev.n)
    assert ev.roc_auc is None and ev.roc_auc_ovr > 0.99
    with open(report) as f:
        html = f.read()
    assert "Confusion matrix" in html and "data:image/png;base64" in html
    assert len(ev.misclassified) == ev.n - np.trace(np.array(ev.confusion))


def test_model_round_trip_and_image_classification(svm_dir, digits_features):
    from pixelmill.images import read_image
    from pixelmill.learn.models import _load

    fs = learn.load_features(digits_features)
    a = learn.load_model(svm_dir).predict_proba(fs.X[:20])
    b = _load(svm_dir, None).predict_proba(fs.X[:20])  # a fresh load from disk
    np.testing.assert_array_equal(a, b)
    row = learn.load_model(svm_dir).classify_image(read_image(fs.uris[0]))
    assert row["predicted"] == learn.load_model(svm_dir).classes[int(np.argmax(a[0]))]
    assert row["confidence"] == pytest.approx(a[0].max())
    assert not os.path.exists(os.path.join(svm_dir, "model.pkl"))


def test_untrusted_model_types_are_refused():
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from pixelmill.learn.classifiers import load_sklearn

    blob = sio.dumps(FunctionTransformer(func=os.system))  # would run a shell command
    with pytest.raises(UsageError, match=r"untrusted types .*system"):
        load_sklearn(blob)


def test_retrieval_recall_at_10(digits_features, tmp_path):
    exact = learn.build_index(digits_features, str(tmp_path / "exact"), kind="exact")
    m = learn.evaluate_index(learn.load_index(str(tmp_path / "exact")), k=10)
    assert m["mode"] == "test rows against the rest" and m["recall@10"] >= 0.95
    assert m["mAP@10"] > 0.85 and m["precision@10"] <= m["recall@10"]
    hnsw = learn.build_index(digits_features, str(tmp_path / "hnsw"), kind="hnsw")
    loaded = learn.load_index(str(tmp_path / "hnsw"))
    q = exact.vectors[:200]
    ie, _ = exact.search(q, 10)
    ia, _ = loaded.search(q, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ie, ia, strict=True)])
    assert overlap >= 0.95 and hnsw.kind == "hnsw"
    assert learn.evaluate_index(loaded, k=10)["recall@10"] >= 0.95


def test_predict_job_writes_predictions(svm_dir, digits_dir, tmp_path):
    out = str(tmp_path / "pred.parquet")
    summary = learn.predict(svm_dir, os.path.join(digits_dir, "7"), out, label_from="parent",
                            workers=1, limit=12)
    assert summary.ok == 12
    rows = pq.read_table(out).to_pylist()
    model = learn.load_model(svm_dir)
    from pixelmill.images import read_image

    for row in rows:
        expected = model.classify_image(read_image(row["uri"]))
        assert row["predicted"] == expected["predicted"]
        assert sum(row[f"prob_{c}"] for c in model.classes) == pytest.approx(1.0)
    assert np.mean([r["predicted"] == "7" for r in rows]) >= 0.9
