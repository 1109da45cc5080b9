"""Edge cases found by an audit: labels that sanitise alike, a model fed other features, NaN
vectors, query vectors of the wrong length, tiny or one-class CNN sets, grid values as text,
Windows relative paths in the split, and the warnings of ``train`` (untrainable classes,
duplicates across splits)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from pixelmill.errors import InvalidParameterError, UsageError
from pixelmill.learn.datasets import color_classes, write_labelled
from pixelmill.learn.features import write_table
from pixelmill.learn.split import split_of

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

MOMENTS = {"steps": [{"op": "color_moments", "space": "rgb"}]}


def _table(path, X, labels, split, pipeline=None, column="vec_color_moments", uris=None):
    """A feature table as ``learn extract`` writes it, without running a job."""
    n = len(X)
    uris = uris or [f"img/{i}.png" for i in range(n)]
    table = pa.table({
        "key": uris, "uri": uris, "relpath": uris, "status": ["ok"] * n,
        "label": [str(v) for v in labels], "split": list(split),
        column: pa.array([list(map(float, row)) for row in X], pa.list_(pa.float32())),
    })
    if pipeline is not None:
        table = table.replace_schema_metadata(
            {b"pixelmill.pipeline": json.dumps(pipeline).encode()})
    write_table(str(path), table)
    return str(path)


def _blobs(n_per_class=12, classes=("a", "b", "c"), dim=9, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(i * 3.0, 1.0, (n_per_class, dim)) for i in range(len(classes))])
    y = np.repeat(np.asarray(classes, dtype=object), n_per_class)
    split = np.tile(["train", "train", "train", "val", "test", "test"], len(y) // 6 + 1)[:len(y)]
    return X.astype(np.float32), y, split


def _train_rf(table, out, **kw):
    from pixelmill.learn.models import train

    return train(table, "random_forest", str(out), grid={"n_estimators": [10]}, workers=1, **kw)


# ---- predictions: one probability column per class -------------------------------------------

def test_prob_columns_are_distinct_for_labels_that_sanitise_alike(tmp_path):
    from pixelmill.learn.models import load_model, prob_columns

    labels = ["緑", "青", "a b", "a-b", "rouge foncé"]
    assert len(set(prob_columns(labels))) == len(labels)
    assert prob_columns(["red", "a b"]) == ["prob_red", "prob_a_b"]  # ascii names unchanged
    images, _ = color_classes(4, size=8, seed=1)
    from pixelmill.ops import get_op

    X = np.stack([get_op("color_moments")(im, space="rgb") for im in images])
    y = np.resize(np.asarray(labels, dtype=object), len(X))
    table = _table(tmp_path / "f.parquet", X, y, ["train"] * len(X), MOMENTS)
    _train_rf(table, tmp_path / "m")
    row = load_model(str(tmp_path / "m")).classify_image(images[0])
    probs = {k: v for k, v in row.items() if k.startswith("prob_")}
    assert len(probs) == len(labels)  # none overwritten by a namesake
    assert sum(probs.values()) == pytest.approx(1.0)


# ---- a model only takes the features it was trained on ---------------------------------------

def test_evaluate_refuses_features_extracted_another_way(tmp_path):
    from pixelmill.learn.evaluation import evaluate

    X, y, split = _blobs()
    model = tmp_path / "m"
    _train_rf(_table(tmp_path / "f.parquet", X, y, split, MOMENTS), model)
    # same column, same length, other parameters: used to give silent nonsense
    hsv = {"steps": [{"op": "color_moments", "space": "hsv"}]}
    other = _table(tmp_path / "hsv.parquet", X, y, split, hsv)
    with pytest.raises(UsageError, match="space"):
        evaluate(str(model), other, report=None)
    # another length: used to be sklearn's ValueError (a traceback, exit 1)
    longer = _table(tmp_path / "long.parquet", np.hstack([X, X]), y, split)
    with pytest.raises(UsageError, match=r"18 feature values.*trained on 9"):
        evaluate(str(model), longer, report=None)
    missing = _table(tmp_path / "other.parquet", X, y, split, column="vec_hog")
    with pytest.raises(UsageError, match="trained on vec_color_moments"):
        evaluate(str(model), missing, report=None)
    assert evaluate(str(model), str(tmp_path / "f.parquet")).n == int((split == "test").sum())


def test_classify_an_image_of_another_size_is_a_clear_error(tmp_path):
    from pixelmill.learn.models import load_model
    from pixelmill.ops import get_op

    pipeline = {"steps": [{"op": "hog", "pixels_per_cell": [4, 4], "cells_per_block": [2, 2]}]}
    hog = get_op("hog")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(12)]
    X = np.stack([hog(im, pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for im in images])
    _train_rf(_table(tmp_path / "f.parquet", X, ["x", "y"] * 6, ["train"] * 12, pipeline,
                     column="vec_hog"), tmp_path / "m")
    model = load_model(str(tmp_path / "m"))
    assert set(model.classify_image(images[0])) >= {"predicted", "prob_x", "prob_y"}
    with pytest.raises(UsageError, match="fixed size"):
        model.classify_image(np.zeros((24, 24), np.uint8))


# ---- NaN vectors ---------------------------------------------------------------------------

def test_nan_vectors_are_a_usage_error_naming_the_rows(tmp_path):
    from pixelmill.learn.features import load_features
    from pixelmill.learn.index import build_index, make_index

    X, y, split = _blobs()
    X[5, 2] = np.nan
    table = _table(tmp_path / "f.parquet", X, y, split)
    with pytest.raises(UsageError, match=r"img/5\.png"):
        load_features(table)
    with pytest.raises(UsageError, match="NaN"):
        build_index(table)  # used to give an index of NaN vectors: every query answered junk
    with pytest.raises(UsageError, match="NaN"):
        make_index(X, [{"key": str(i)} for i in range(len(X))])


# ---- index -------------------------------------------------------------------------------

def test_index_queries_of_the_wrong_length_or_nan_are_usage_errors():
    from pixelmill.learn.index import evaluate_index, make_index

    X, y, _ = _blobs()
    rows = [{"key": str(i), "uri": str(i), "label": str(v), "split": "train"}
            for i, v in enumerate(y)]
    index = make_index(X, rows)
    with pytest.raises(UsageError, match=r"10 values.*vectors of 9"):
        index.search(np.ones((1, 10), np.float32), 3)
    with pytest.raises(UsageError, match="10 values"):
        index.transform(np.ones((2, 10), np.float32))
    with pytest.raises(UsageError, match="NaN"):
        index.search(np.full((1, 9), np.nan, np.float32), 3)
    idx, _ = index.search(index.transform(X[:2]), 1000)  # k beyond the index: every row
    assert idx.shape == (2, len(X))
    one = make_index(X[:1], rows[:1])
    with pytest.raises(UsageError, match="at least two rows"):
        evaluate_index(one, k=5)  # used to be an IndexError


# ---- CNN -----------------------------------------------------------------------------------

def test_cnn_settings_and_class_counts_fail_before_training(tmp_path):
    from pixelmill.learn.cnn import CNNConfig, train_cnn
    from pixelmill.learn.models import train

    images, labels = color_classes(3, size=8, seed=0)
    too_deep = CNNConfig(input_size=8, channels=(4, 4, 4, 4), epochs=1, device="cpu")
    with pytest.raises(InvalidParameterError, match="--size"):
        train_cnn(images, labels, config=too_deep)  # used to be torch's RuntimeError
    root = tmp_path / "imgs"
    write_labelled(str(root), images, labels)
    with pytest.raises(InvalidParameterError, match="--size"):
        train(None, "cnn", str(tmp_path / "m0"), images=str(root), cnn_config=too_deep)
    one = [labels[0]] * len(images)
    small = CNNConfig(input_size=8, channels=(4,), epochs=1, device="cpu")
    with pytest.raises(UsageError, match="two classes"):
        train_cnn(images, one, config=small)  # used to train a 1-class net, always "right"


def test_cnn_without_val_rows_has_no_val_accuracy(tmp_path):
    from pixelmill.learn.cnn import CNNConfig
    from pixelmill.learn.models import train

    images, labels = color_classes(2, size=8, seed=0)
    paths = write_labelled(str(tmp_path / "imgs"), images, labels)
    table = _table(tmp_path / "f.parquet", np.zeros((len(paths), 1)), labels,
                   ["train"] * len(paths), uris=paths)
    model = train(table, "cnn", str(tmp_path / "m"), workers=1,
                  cnn_config=CNNConfig(input_size=8, channels=(4,), epochs=1, device="cpu"))
    assert model.meta["val_accuracy"] is None  # was -1


# ---- grid, split, warnings ---------------------------------------------------------------

def test_grid_numbers_written_as_text_are_numbers():
    from pixelmill.learn.classifiers import search_grid

    # YAML 1.1 (which reads --grid values) gives '1e-2' as a string
    grid = search_grid("gradient_boosting", {"learning_rate": ["1e-2", "2E-1"],
                                             "max_iter": ["5"]})
    assert [c["learning_rate"] for c in grid] == [0.01, 0.2]
    assert grid[0]["max_iter"] == 5 and isinstance(grid[0]["max_iter"], int)
    assert search_grid("random_forest", {"max_features": ["sqrt", "0.5"]})[1] == {
        "max_features": 0.5}


def test_relpath_split_is_the_same_with_windows_separators():
    from pixelmill.learn.features import add_split

    rels = [f"class{i % 3}/sub/{i:04d}.png" for i in range(200)]
    posix = pa.table({"key": rels, "relpath": rels})
    windows = pa.table({"key": rels, "relpath": [r.replace("/", "\\") for r in rels]})
    a = add_split(posix).column("split").to_pylist()
    b = add_split(windows).column("split").to_pylist()
    assert a == b == [split_of(r) for r in rels]


def test_train_warns_of_untrainable_classes_and_duplicates_across_splits(tmp_path):
    X, y, split = _blobs()
    y = y.copy()
    y[4] = "lonely"  # its only image is in test: no model can predict it
    split = split.copy()
    X[10] = X[0]  # a copy of a train row, in test
    assert split[0] == "train" and split[10] == "test" and split[4] == "test"
    lines: list[str] = []
    _train_rf(_table(tmp_path / "f.parquet", X, y, split), tmp_path / "m", log=lines.append)
    text = "\n".join(lines)
    assert "'lonely'" in text and "no train image" in text
    assert "1 val/test rows have the same feature vector as a train row" in text


def test_cnn_from_a_folder_leaves_a_corrupt_file_out(tmp_path):
    from pixelmill.learn.cnn import CNNConfig
    from pixelmill.learn.models import train
    from pixelmill.learn.split import assign_split

    images, labels = color_classes(4, size=8, seed=0)
    root = tmp_path / "imgs"
    write_labelled(str(root), images, labels)
    names = [f"red/zz_broken_{i}.png" for i in range(40)]
    bad = next(n for n, s in zip(names, assign_split(names), strict=True) if s == "train")
    (root / bad).write_bytes(b"not an image")  # used to end the training (exit 1)
    lines: list[str] = []
    model = train(None, "cnn", str(tmp_path / "m"), images=str(root), workers=1, log=lines.append,
                  cnn_config=CNNConfig(input_size=8, channels=(4,), epochs=1, device="cpu"))
    assert model.meta["n_unreadable"] == 1 and bad in model.meta["unreadable"][0]["uri"]
    assert any("could not be read" in line for line in lines)


# ---- images without a label (files directly in a --label-from parent folder) ----------------

def test_unlabelled_rows_are_left_out_of_training_and_scoring_not_made_a_class(tmp_path):
    from pixelmill.learn.evaluation import evaluate

    X, y, split = _blobs()
    path = _table(tmp_path / "f.parquet", X, y, split)
    table = pa.parquet.read_table(path)
    labels = table.column("label").to_pylist()
    gone = [0, 1, 4, 5]  # two train rows, two test rows: no label (as extract writes None)
    assert [split[i] for i in gone] == ["train", "train", "test", "test"]
    labels = [None if i in gone else v for i, v in enumerate(labels)]
    write_table(path, table.set_column(table.column_names.index("label"), "label",
                                       pa.array(labels, pa.string())))
    lines: list[str] = []
    model = _train_rf(path, tmp_path / "m", log=lines.append)
    assert model.meta["classes"] == ["a", "b", "c"]  # was ['None', 'a', 'b', 'c']
    assert model.meta["n_train"] == int((split == "train").sum()) - 2
    assert any("4 images" in line and "no label" in line for line in lines), lines
    ev = evaluate(str(tmp_path / "m"), path, split="test", report=None)
    assert ev.unlabelled == 2 and ev.n == int((split == "test").sum()) - 2
    assert "None" not in ev.classes


def test_unlabelled_table_is_refused_with_its_reason(tmp_path):
    X, y, split = _blobs()
    path = _table(tmp_path / "f.parquet", X, y, split)
    table = pa.parquet.read_table(path)
    write_table(path, table.set_column(table.column_names.index("label"), "label",
                                       pa.nulls(table.num_rows, pa.string())))
    with pytest.raises(UsageError, match="no row has a label"):
        _train_rf(path, tmp_path / "m")


def test_cnn_from_a_folder_does_not_learn_a_none_class_from_its_top_level_files(tmp_path):
    from pixelmill.learn.cnn import CNNConfig
    from pixelmill.learn.models import train

    images, labels = color_classes(4, size=8, seed=0)
    root = tmp_path / "imgs"
    write_labelled(str(root), images, labels)
    for i, image in enumerate(images[:12]):  # files directly in the folder: no label
        from pixelmill import write_image

        write_image(str(root / f"loose_{i}.png"), image)
    lines: list[str] = []
    model = train(None, "cnn", str(tmp_path / "m"), images=str(root), workers=1, log=lines.append,
                  cnn_config=CNNConfig(input_size=8, channels=(4,), epochs=1, device="cpu"))
    assert "None" not in model.classes and sorted(model.classes) == sorted(set(labels))
    assert any("12 images" in line and "no label" in line for line in lines), lines
