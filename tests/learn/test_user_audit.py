"""Fixes from a user's audit of classification and retrieval: float images with NaN pixels
(every extractor, CNN training), the train warnings and val score, predicting with a model
that has no pipeline, a table whose every image failed, HNSW over duplicate vectors, and
distances below zero."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pixelmill.cli import main
from pixelmill.errors import UnsuitableImageError, UsageError
from pixelmill.learn.datasets import color_classes, write_labelled
from tests._learned import write_every_row_hnsw_index
from tests.learn.test_edge_cases import _blobs, _table

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

MOMENTS = {"steps": [{"op": "color_moments", "space": "rgb"}]}

EXTRACTORS = [
    ("color_histogram", {}),
    ("color_histogram", {"space": "lab", "joint": True, "bins": 4}),
    ("color_moments", {}),
    ("hog", {"size": [32, 32], "pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}),
    ("lbp_histogram", {}),
    ("glcm", {"levels": 8}),
    ("gradient_stats", {}),
    ("cnn_embedding", {}),
]


def _nan_image(value=np.nan):
    image = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    image[5:9, 5:9] = value  # a patch of no-data pixels
    return image


# ---- float images with NaN / infinite pixels -------------------------------------------------

@pytest.mark.parametrize(("op", "params"), EXTRACTORS, ids=lambda v: v if isinstance(v, str)
                         else None)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_every_extractor_refuses_nan_pixels_as_a_property_of_the_image(op, params, value):
    """NaN pixels gave NaN vectors (moments, HOG, CNN), finite garbage (histograms, LBP, GLCM:
    NaN cast to an integer bin) or a ValueError (gradient_stats): now UnsuitableImageError."""
    from pixelmill.ops import get_op

    fn = get_op(op).func
    fn(_nan_image(0.5), **params)  # the same image without no-data pixels is fine
    with pytest.raises(UnsuitableImageError, match="NaN or infinite"):
        fn(_nan_image(value), **params)


def test_extract_records_a_nan_image_as_invalid_with_its_reason(tmp_path):
    import tifffile

    from pixelmill.learn import extract, load_features

    images, labels = color_classes(2, size=16, seed=1)
    write_labelled(str(tmp_path / "imgs"), images, labels)
    tifffile.imwrite(tmp_path / "imgs" / "red" / "nodata.tif", _nan_image(), photometric="rgb")
    out = str(tmp_path / "f.parquet")
    summary = extract([{"op": "color_histogram", "bins": 4}, {"op": "gradient_stats"}],
                      str(tmp_path / "imgs"), out, label_from="parent", workers=1)
    assert (summary.ok, summary.invalid, summary.failed) == (10, 1, 0)
    row = next(r for r in pq.read_table(out).to_pylist() if r["uri"].endswith("nodata.tif"))
    assert row["status"] == "invalid" and "NaN or infinite" in row["reason"]
    assert np.isfinite(load_features(out).X).all()  # the table trains as it is


def test_cnn_training_leaves_a_nan_image_out_instead_of_training_nan(tmp_path):
    """One NaN image made the training mean, every loss and the saved model NaN (val accuracy
    0, and a model directory that no longer loaded)."""
    import tifffile

    from pixelmill.learn.cnn import CNNConfig
    from pixelmill.learn.models import _load, train
    from pixelmill.learn.split import assign_split

    images, labels = color_classes(4, size=8, seed=0)
    root = tmp_path / "imgs"
    write_labelled(str(root), images, labels)
    names = [f"red/nodata_{i}.tif" for i in range(40)]
    bad = next(n for n, s in zip(names, assign_split(names), strict=True) if s == "train")
    tifffile.imwrite(root / bad, _nan_image(), photometric="rgb")
    lines: list[str] = []
    model = train(None, "cnn", str(tmp_path / "m"), images=str(root), workers=1,
                  log=lines.append,
                  cnn_config=CNNConfig(input_size=8, channels=(4,), epochs=1, device="cpu"))
    assert model.meta["n_unreadable"] == 1 and bad in model.meta["unreadable"][0]["uri"]
    assert "NaN or infinite" in model.meta["unreadable"][0]["reason"]
    assert all(np.isfinite(h["loss"]) for h in model.meta["history"])
    assert _load(str(tmp_path / "m"), None).kind == "cnn"  # loads: finite mean and std


# ---- train: what the warnings and the val score say ------------------------------------------

def _val_only_table(tmp_path):
    """Classes a, b, c in every split; d only in val (two images); e only in test."""
    X, y, split = _blobs(n_per_class=12)
    rng = np.random.default_rng(5)
    X = np.concatenate([X, rng.normal(12, 1, (3, X.shape[1])).astype(np.float32)])
    y = np.concatenate([y, ["d", "d", "e"]])
    split = np.concatenate([split, ["val", "val", "test"]])
    return _table(tmp_path / "f.parquet", X, y, split, MOMENTS)


def test_a_class_with_val_images_only_is_not_said_to_be_unpredictable(tmp_path):
    """The model is refitted on train + val, so it learns (and predicts) a val-only class;
    the warning said 'the model cannot predict them' of it."""
    from pixelmill.learn.models import train

    lines: list[str] = []
    model = train(_val_only_table(tmp_path), "random_forest", str(tmp_path / "m"),
                  grid={"n_estimators": [10]}, workers=1, log=lines.append)
    assert "d" in model.classes and "e" not in model.classes
    text = "\n".join(lines)
    assert "1 class with no train image ('e') and none in val: the model cannot predict" in text
    assert "1 class with no train image ('d'): learned from val images only" in text
    assert "'d', 'e'" not in text


def test_a_single_candidate_is_scored_on_val(tmp_path):
    """With one grid candidate the search was skipped: 'val accuracy -' although the table
    has val rows (the README: every candidate is scored on val)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from pixelmill.learn.features import load_features
    from pixelmill.learn.models import train

    X, y, split = _blobs(n_per_class=12)
    y = y.copy()
    y[[3, 9, 15]] = ["b", "c", "a"]  # some val rows mislabelled: accuracy below 1
    path = _table(tmp_path / "f.parquet", X, y, split, MOMENTS)
    model = train(path, "random_forest", str(tmp_path / "m"), grid={"n_estimators": [10]},
                  workers=1)
    fs = load_features(path)
    X_tr, y_tr = fs.subset("train")
    X_va, y_va = fs.subset("val")
    ref = Pipeline([("s", StandardScaler()),
                    ("c", RandomForestClassifier(n_estimators=10, random_state=0, n_jobs=1))])
    expected = float(np.mean(ref.fit(X_tr, y_tr).predict(X_va) == y_va))
    assert model.meta["val_accuracy"] == pytest.approx(expected) and expected < 1.0
    assert model.meta["search"] == [{"params": {"n_estimators": 10}, "val_accuracy": expected}]


def test_a_grid_without_val_rows_says_nothing_was_searched(tmp_path):
    from pixelmill.learn.models import train

    X, y, split = _blobs(n_per_class=12)
    split = np.where(split == "val", "train", split)
    lines: list[str] = []
    model = train(_table(tmp_path / "f.parquet", X, y, split, MOMENTS), "logistic_regression",
                  str(tmp_path / "m"), log=lines.append)
    assert model.meta["val_accuracy"] is None
    assert any("no labelled val rows: nothing was searched" in line for line in lines), lines


def test_an_svm_refusing_a_one_image_class_names_it(tmp_path):
    from pixelmill.learn.models import train

    with pytest.raises(UsageError, match=r"one image only: 'e'"):
        X, y, split = _blobs(n_per_class=12)
        X = np.concatenate([X, X[:1] + 20])
        y = np.concatenate([y, ["e"]])
        split = np.concatenate([split, ["train"]])
        train(_table(tmp_path / "f.parquet", X, y, split, MOMENTS), "rbf_svm",
              str(tmp_path / "m"))


# ---- predict and the feature table -----------------------------------------------------------

def test_predict_refuses_a_model_without_a_pipeline_before_the_job(tmp_path, capsys):
    """Every image failed the same way: exit 3 after a whole job, not a usage error."""
    from pixelmill.learn.models import train

    X, y, split = _blobs()
    train(_table(tmp_path / "f.parquet", X, y, split), "random_forest", str(tmp_path / "m"),
          grid={"n_estimators": [5]}, workers=1)
    images, labels = color_classes(1, size=8, seed=0)
    write_labelled(str(tmp_path / "new"), images, labels)
    out = tmp_path / "p.parquet"
    assert main(["learn", "predict", str(tmp_path / "m"), str(tmp_path / "new"), "--out",
                 str(out), "-q"]) == 2
    assert "without a pipeline" in capsys.readouterr().err
    assert not out.exists()


def test_a_table_whose_every_image_failed_says_so(tmp_path, capsys):
    """It said 'no vector columns (vec_*); extract features first' after an extraction."""
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        (tmp_path / "imgs" / label / "x.png").write_bytes(b"not an image")
    table = str(tmp_path / "f.parquet")
    (tmp_path / "f.yaml").write_text("steps:\n  - op: color_moments\n")
    assert main(["learn", "extract", str(tmp_path / "f.yaml"), str(tmp_path / "imgs"), "--out", table, "--label-from", "parent", "-q"]) == 3
    capsys.readouterr()
    for argv in (["index", "build", table, "--out", str(tmp_path / "ix")],
                 ["learn", "train", table, "--model", "random_forest", "--out",
                  str(tmp_path / "m")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "none of its 2 images was extracted" in err and "extract features first" not in err


# ---- retrieval ---------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_hnsw_finds_neighbours_among_many_duplicate_vectors(metric, tmp_path):
    """A third of the rows copies of one vector (blank frames) trapped hnswlib's search:
    recall@10 against exact search fell to ~0.65 (l2). The graph now holds distinct vectors."""
    from pixelmill.learn.index import load_index, make_index

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    X[:1000] = X[0]
    rows = [{"key": str(i)} for i in range(len(X))]
    exact = make_index(X, rows, kind="exact", metric=metric)
    approx = make_index(X, rows, kind="hnsw", metric=metric, threads=1)
    Q = exact.transform(np.concatenate([
        X[:3], X[1500:1800] + rng.normal(0, 0.05, (300, 8)).astype(np.float32)]))
    _, d_exact = exact.search(Q, 10)
    idx, d_approx = approx.search(Q, 10)
    recall = np.mean([np.sum(d_approx[i] <= d_exact[i, -1] + 1e-5) / 10 for i in range(len(Q))])
    assert recall >= 0.99
    assert set(idx[0]) <= set(range(1000)) and len(set(idx[0])) == 10  # ten distinct copies
    everything, _ = approx.search(Q[:1], 5000)  # k beyond the index: every row, once
    assert sorted(everything[0]) == list(range(3000))
    approx.save(str(tmp_path / "ix"))
    loaded = load_index(str(tmp_path / "ix"))
    np.testing.assert_array_equal(loaded.search(Q, 10)[0], idx)


def test_an_hnsw_graph_of_every_row_from_before_still_loads(tmp_path):
    """Indexes written before the distinct-vector graph hold a graph of every row."""
    from pixelmill.learn.index import load_index

    write_every_row_hnsw_index(tmp_path / "ix")
    loaded = load_index(str(tmp_path / "ix"))
    assert loaded.groups is None and loaded.hnsw.get_current_count() == 200
    idx, _ = loaded.search(loaded.vectors[50:51], 3)
    assert idx[0, 0] == 50


def test_distances_are_never_below_zero():
    """1 - cos of a vector with itself came out as -1e-7: 'index query' printed -0.0000."""
    from pixelmill.learn.index import make_index

    X = np.random.default_rng(3).normal(size=(300, 21)).astype(np.float32)
    for metric in ("cosine", "l2"):
        ix = make_index(X, [{"key": str(i)} for i in range(300)], kind="exact", metric=metric)
        _, dist = ix.search(ix.vectors, 1)
        assert (dist >= 0).all()


def test_index_query_of_a_nan_image_is_a_usage_error(tmp_path, capsys):
    """A colour histogram of NaN pixels was finite garbage: a query answered with exit 0."""
    import tifffile

    from pixelmill.learn.index import make_index

    op = {"op": "color_histogram", "bins": 4, "space": "rgb"}
    images, labels = color_classes(2, size=16, seed=6)
    from pixelmill.ops import get_op

    X = np.stack([get_op("color_histogram")(im, bins=4, space="rgb") for im in images])
    rows = [{"key": str(i), "uri": f"{i}.png", "label": v, "split": "train"}
            for i, v in enumerate(labels)]
    make_index(X, rows, columns=["vec_color_histogram"], pipeline={"steps": [op]}).save(
        str(tmp_path / "index"))
    tifffile.imwrite(tmp_path / "nodata.tif", _nan_image(), photometric="rgb")
    capsys.readouterr()
    assert main(["index", "query", str(tmp_path / "index"), str(tmp_path / "nodata.tif")]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "Traceback" not in err
