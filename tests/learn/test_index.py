"""Retrieval: exact search against scikit-learn's brute force, HNSW recall, the metrics by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from pixelmill.errors import InvalidParameterError
from pixelmill.learn.index import make_index, retrieval_metrics


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_equals_brute_force(metric, rng):
    X = rng.normal(size=(500, 16)).astype(np.float32)
    rows = [{"key": str(i), "uri": str(i), "label": None, "split": "train"} for i in range(500)]
    index = make_index(X, rows, metric=metric, kind="exact")
    Q = index.vectors[:50] + 0.01
    idx, dist = index.search(Q, 7)
    ref = NearestNeighbors(n_neighbors=7, metric="cosine" if metric == "cosine" else "sqeuclidean",
                           algorithm="brute").fit(index.vectors)
    ref_dist, ref_idx = ref.kneighbors(Q)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-4)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_hnsw_agrees_with_exact(rng):
    X = rng.normal(size=(3000, 24)).astype(np.float32)
    rows = [{"key": str(i)} for i in range(3000)]
    exact = make_index(X, rows, kind="exact")
    approx = make_index(X, rows, kind="auto", exact_threshold=1000)
    assert approx.kind == "hnsw"
    ie, _ = exact.search(exact.vectors[:300], 10)
    ia, _ = approx.search(exact.vectors[:300], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ie, ia, strict=True)])
    assert recall >= 0.95


def test_metrics_by_hand():
    # query A: neighbours A, B, A -> relevant at ranks 1 and 3; 2 relevant items in all
    # AP@3 = (1/1 + 2/3) / min(3, 2) = 0.8333; query B: none relevant -> AP 0, no hit
    m = retrieval_metrics(["A", "B"], np.array([["A", "B", "A"], ["A", "C", "C"]], dtype=object),
                          [2, 5], k=3)
    assert m["recall@3"] == 0.5
    assert m["precision@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["mAP@3"] == pytest.approx((1 + 2 / 3) / 2 / 2)


def test_bad_settings_name_the_field():
    X = np.zeros((3, 2), np.float32)
    with pytest.raises(InvalidParameterError, match="metric"):
        make_index(X, [{}] * 3, metric="manhattan")
    with pytest.raises(InvalidParameterError, match="kind"):
        make_index(X, [{}] * 3, kind="faiss")


def test_query_image_of_another_vector_length_is_a_usage_error():
    from pixelmill.errors import UsageError
    from pixelmill.ops import get_op
    from pixelmill.pipeline import Pipeline

    pipe = Pipeline.from_steps([{"op": "hog", "pixels_per_cell": [8, 8]}])
    X = np.stack([get_op("hog")(np.full((32, 32), v, np.uint8)) for v in range(5)])
    index = make_index(X, [{"key": str(i)} for i in range(5)], columns=["vec_hog"],
                       pipeline=pipe.to_dict())
    assert len(index.query_image(np.zeros((32, 32), np.uint8), k=2)) == 2
    with pytest.raises(UsageError, match="fixed size"):
        index.query_image(np.zeros((48, 48), np.uint8), k=2)
