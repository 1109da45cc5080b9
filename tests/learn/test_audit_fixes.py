"""Fixes from an audit of ``learn`` and ``index``: a corrupt or incomplete model or index
directory is a usage error naming the file (never a traceback, never an unpickle), an empty
``--images`` folder is "no input", macro F1 over the classes present, precision@k divided by
k, and an image an op cannot take recorded as ``invalid`` rather than ``failed``."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelmill.cli import main
from pixelmill.errors import (
    InvalidParameterError,
    NoInputError,
    UnsuitableImageError,
    UsageError,
)
from pixelmill.learn.datasets import color_classes, write_labelled
from tests.learn.test_edge_cases import _blobs as _edge_blobs
from tests.learn.test_edge_cases import _table

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

MOMENTS = {"steps": [{"op": "color_moments", "space": "rgb"}]}


def _blobs(n_per_class=12, classes=("cat", "dog", "fox"), dim=9, seed=0):
    return _edge_blobs(n_per_class, classes, dim, seed)


def _train_rf(table, out):
    from pixelmill.learn.models import train

    return train(table, "random_forest", str(out), grid={"n_estimators": [10]}, workers=1)


# ---- 6: a corrupt or incomplete model / index directory is a usage error ---------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A feature table, a random-forest model, a tiny CNN, an exact and an HNSW index."""
    from pixelmill.learn.cnn import CNNConfig, train_cnn
    from pixelmill.learn.index import build_index
    from pixelmill.learn.models import FORMAT, TrainedModel

    root = tmp_path_factory.mktemp("built")
    X, y, split = _blobs()
    table = _table(root / "f.parquet", X, y, split, MOMENTS)
    _train_rf(table, root / "model")
    images, labels = color_classes(4, size=16, seed=3)
    config = CNNConfig(input_size=16, channels=(4, 8), epochs=1, batch_size=16, augment=(),
                       device="cpu")
    net = train_cnn(images, labels, config=config, threads=1)
    meta = {**net.metadata(), "format": FORMAT, "model": "cnn", "features": [],
            "pipeline": None}
    TrainedModel("cnn", meta, cnn=net).save(str(root / "cnn"))
    build_index(table, str(root / "index"))
    build_index(table, str(root / "hnsw"), kind="hnsw", threads=1)
    return {"root": root, "table": table}


class _Marker:
    """Unpickling this creates the file ``path``: proof that a loader unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _json_edit(name, change):
    def edit(d):
        path = os.path.join(d, name)
        with open(path) as f:
            meta = json.load(f)
        change(meta)
        with open(path, "w") as f:
            json.dump(meta, f)
    return edit


def _write(name, data):
    def edit(d):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return edit


def _remove(name):
    return lambda d: os.remove(os.path.join(d, name))


def _truncate(name, size):
    return lambda d: os.truncate(os.path.join(d, name), size)


def _npy(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


MODEL_DAMAGE = {
    "skops-not-a-zip": ("model", _write("model.skops", b"not a zip\n"), "model.skops"),
    "skops-missing": ("model", _remove("model.skops"), "model.skops"),
    "json-no-kind": ("model", _json_edit("model.json", lambda m: m.pop("kind")), "'kind'"),
    "json-a-list": ("model", _write("model.json", b"[1, 2]"), "model.json"),
    "json-other-classes": ("model", _json_edit("model.json", lambda m: m.update(
        classes=["x", "y", "z"])), "model.skops"),
    "json-no-features": ("model", _json_edit("model.json", lambda m: m.pop("features")),
                         "'features'"),
    "weights-garbage": ("cnn", _write("weights.safetensors", b"garbage\n"),
                        "weights.safetensors"),
    "weights-missing": ("cnn", _remove("weights.safetensors"), "weights.safetensors"),
    "weights-other-net": ("cnn", _json_edit("model.json", lambda m: m["config"].update(
        channels=[4, 16])), "weights.safetensors"),
    "cnn-no-config": ("cnn", _json_edit("model.json", lambda m: m.pop("config")), "'config'"),
    "cnn-no-mean": ("cnn", _json_edit("model.json", lambda m: m.pop("mean")), "model.json"),
}


def _damaged_copy(built, tmp_path, cases: dict, case: str) -> tuple[str, str]:
    """A copy of a built model or index with one case's damage done; (its path, the name the
    error must give)."""
    source, damage, named = cases[case]
    where = str(tmp_path / f"d-{case}")
    shutil.copytree(built["root"] / source, where)
    damage(where)
    return where, named


@pytest.mark.parametrize("case", sorted(MODEL_DAMAGE))
def test_a_damaged_model_directory_is_a_usage_error_naming_the_file(built, tmp_path, capsys,
                                                                    case):
    from pixelmill.learn.models import load_model

    model, named = _damaged_copy(built, tmp_path, MODEL_DAMAGE, case)
    with pytest.raises(UsageError, match="not a pixelmill model directory") as info:
        load_model(model)
    assert model in str(info.value) and named in str(info.value)
    capsys.readouterr()
    assert main(["learn", "evaluate", model, built["table"], "--no-report"]) == 2
    err = capsys.readouterr().err
    assert model in err and named in err and "Traceback" not in err
    assert main(["learn", "predict", model, str(tmp_path), "--out",
                 str(tmp_path / "p.parquet")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()


INDEX_DAMAGE = {
    "vectors-junk": ("index", _write("vectors.npy", b"junk\n"), "vectors.npy"),
    "vectors-missing": ("index", _remove("vectors.npy"), "vectors.npy"),
    "vectors-truncated": ("index", _truncate("vectors.npy", 200), "vectors.npy"),
    "vectors-other-shape": ("index", _write("vectors.npy", _npy(np.zeros((3, 9), np.float32))),
                            "vectors.npy"),
    "json-no-metric": ("index", _json_edit("index.json", lambda m: m.pop("metric")), "'metric'"),
    "json-no-kind": ("index", _json_edit("index.json", lambda m: m.pop("kind")), "'kind'"),
    "json-no-columns": ("index", _json_edit("index.json", lambda m: m.pop("columns")),
                        "'columns'"),
    "json-short-mean": ("index", _json_edit("index.json", lambda m: m.update(mean=[0.0])),
                        "'mean'"),
    "rows-missing": ("index", _remove("rows.parquet"), "rows.parquet"),
    "rows-other-count": ("index", lambda d: pq.write_table(pa.table({"key": ["a"]}), os.path.join(
        d, "rows.parquet")), "rows.parquet"),
    "hnsw-junk": ("hnsw", _write("hnsw.bin", b"junk\n"), "hnsw.bin"),
    "hnsw-missing": ("hnsw", _remove("hnsw.bin"), "hnsw.bin"),
}


@pytest.mark.parametrize("case", sorted(INDEX_DAMAGE))
def test_a_damaged_index_directory_is_a_usage_error_naming_the_file(built, tmp_path, capsys,
                                                                    case):
    from pixelmill.learn.index import load_index

    index, named = _damaged_copy(built, tmp_path, INDEX_DAMAGE, case)
    with pytest.raises(UsageError, match="not a pixelmill index") as info:
        load_index(index)
    assert index in str(info.value) and named in str(info.value)
    capsys.readouterr()
    assert main(["index", "eval", index]) == 2
    err = capsys.readouterr().err
    assert index in err and named in err and "Traceback" not in err


def test_pickled_vectors_are_refused_without_being_unpickled(built, tmp_path, capsys):
    from pixelmill.learn.index import load_index

    index = str(tmp_path / "index")
    shutil.copytree(built["root"] / "index", index)
    marker = tmp_path / "unpickled"
    payload = np.empty(1, dtype=object)
    payload[0] = _Marker(str(marker))
    _write("vectors.npy", _npy(payload, allow_pickle=True))(index)
    with pytest.raises(UsageError, match=r"vectors\.npy: holds pickled"):
        load_index(index)
    assert main(["index", "query", index, str(tmp_path / "any.png")]) == 2
    assert "vectors.npy" in capsys.readouterr().err
    assert not marker.exists()


def test_the_undamaged_directories_still_load(built):
    from pixelmill.learn.index import load_index
    from pixelmill.learn.models import load_model

    root = built["root"]
    assert load_model(str(root / "model")).classes == ["cat", "dog", "fox"]
    assert load_model(str(root / "cnn")).kind == "cnn"
    assert load_model("textures").kind == "cnn"  # the bundled CNN
    assert len(load_index(str(root / "index"))) == 36
    assert load_index(str(root / "hnsw")).hnsw.get_current_count() == 36


# ---- 9: an empty --images folder is "no input" (4), as learn extract's ---------------------

def test_cnn_from_an_empty_image_folder_is_no_input(tmp_path, capsys):
    from pixelmill.learn.models import train

    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = str(tmp_path / "cnn")
    with pytest.raises(NoInputError, match="no image files"):
        train(None, "cnn", out, images=str(tmp_path / "empty"))
    assert main(["learn", "train", "--model", "cnn", "--images", str(tmp_path / "empty"),
                 "--out", out]) == 4
    assert "--images" in capsys.readouterr().err
    assert not os.path.exists(out)


# ---- 10: macro F1 over the classes present in the split (or predicted) -----------------------

def test_macro_f1_leaves_out_classes_absent_from_the_split_and_the_predictions():
    from sklearn.metrics import f1_score

    from pixelmill.learn.evaluation import classification_metrics

    classes = ["cat", "dog", "fox"]
    y = ["cat", "cat", "dog", "dog", "dog"]
    proba = np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1],
                      [0.0, 1.0, 0.0]])
    acc, macro_f1, per_class, confusion, _, _ = classification_metrics(y, proba, classes)
    assert acc == 1.0 and macro_f1 == pytest.approx(1.0)  # a perfect classifier
    assert macro_f1 == pytest.approx(f1_score(y, ["cat", "cat", "dog", "dog", "dog"],
                                              average="macro"))
    assert list(per_class) == classes and per_class["fox"]["support"] == 0  # table: all classes
    assert np.asarray(confusion).shape == (3, 3)

    rng = np.random.default_rng(4)  # mistakes, a predicted class absent from the truth
    classes = ["a", "b", "c", "d", "e"]
    y = list(rng.choice(["a", "b", "c"], 60))
    proba = rng.dirichlet(np.ones(5), 60)
    pred = [classes[i] for i in proba.argmax(1)]
    assert set(pred) - set(y)  # the case sklearn counts: predicted but never true
    _, macro_f1, per_class, _, _, _ = classification_metrics(y, proba, classes)
    assert macro_f1 == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert list(per_class) == classes


def test_evaluate_reports_sklearn_macro_f1_on_a_split_missing_a_class(built, tmp_path):
    from sklearn.metrics import f1_score

    from pixelmill.learn.evaluation import evaluate
    from pixelmill.learn.models import load_model

    X, y, split = _blobs()
    keep = y != "fox"  # the model knows fox; this table's test split has none
    table = _table(tmp_path / "two.parquet", X[keep], y[keep], split[keep], MOMENTS)
    ev = evaluate(str(built["root"] / "model"), table)
    assert ev.classes == ["cat", "dog", "fox"] and ev.per_class["fox"]["support"] == 0
    test = split[keep] == "test"
    model = load_model(str(built["root"] / "model"))
    pred = np.asarray(model.classes)[model.predict_proba(X[keep][test]).argmax(1)]
    assert ev.macro_f1 == pytest.approx(f1_score(y[keep][test], pred, average="macro"))
    assert ev.accuracy == 1.0 and ev.macro_f1 == pytest.approx(1.0)


# ---- 13: precision@k = relevant among the k nearest / k -------------------------------------

def _precision_by_hand(vectors, labels, queries, database, k):
    """Cosine distances by brute force, the k nearest of ``database``, relevant / k."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for q in queries:
        others = [j for j in database if j != q]
        dist = 1.0 - unit[others] @ unit[q]
        nearest = [others[j] for j in np.argsort(dist, kind="stable")[:k]]
        out.append(sum(labels[j] == labels[q] for j in nearest) / k)
    return float(np.mean(out))


def test_precision_at_k_divides_by_k_beyond_the_database_size():
    from pixelmill.learn.index import evaluate_index, make_index

    rng = np.random.default_rng(7)
    labels = ["a"] * 5 + ["b"] * 4 + ["c"] * 3
    X = rng.normal(size=(12, 6)).astype(np.float32) + np.repeat(np.eye(6)[:3] * 2, [5, 4, 3], 0)
    rows = [{"key": str(i), "label": v, "split": "train"} for i, v in enumerate(labels)]
    index = make_index(X, rows, normalize=False)
    everyone = list(range(12))  # leave one out: each row among the 11 others
    for k in (3, 8, 11, 50, 1000):
        m = evaluate_index(index, k)
        assert m[f"precision@{k}"] == pytest.approx(
            _precision_by_hand(X, labels, everyone, everyone, k))
    assert evaluate_index(index, 50)["precision@50"] == pytest.approx(
        np.mean([(labels.count(v) - 1) / 50 for v in labels]))  # all 11 others returned
    assert evaluate_index(index, 1000)["precision@1000"] < evaluate_index(index,
                                                                          50)["precision@50"]

    split = ["test" if i % 3 == 0 else "train" for i in range(12)]  # test rows vs the rest
    rows = [{"key": str(i), "label": v, "split": s}
            for i, (v, s) in enumerate(zip(labels, split, strict=True))]
    index = make_index(X, rows, normalize=False)
    queries = [i for i in range(12) if split[i] == "test"]
    database = [i for i in range(12) if split[i] != "test"]
    for k in (2, 8, 20):
        assert evaluate_index(index, k)[f"precision@{k}"] == pytest.approx(
            _precision_by_hand(X, labels, queries, database, k))


# ---- 14: an image an op cannot take is invalid, not failed -----------------------------------

def test_a_grid_larger_than_the_image_is_a_property_of_the_image():
    from pixelmill.learn.regions import region_windows
    from pixelmill.ops import get_op

    with pytest.raises(UnsuitableImageError, match="grid: 64×64 regions") as info:
        region_windows((32, 32), (64, 64))
    assert isinstance(info.value, InvalidParameterError) and info.value.field == "grid"
    with pytest.raises(UnsuitableImageError):
        get_op("color_histogram")(np.zeros((8, 8, 3), np.uint8), grid=(16, 1))
    with pytest.raises(InvalidParameterError) as bad:  # a bad parameter is still no image's
        region_windows((32, 32), (2, 2), overlap=1.5)
    assert not isinstance(bad.value, UnsuitableImageError)


def test_extract_records_images_smaller_than_the_grid_as_invalid(tmp_path, capsys):
    from pixelmill.learn import extract

    images, labels = color_classes(2, size=16, seed=2)
    big, _ = color_classes(1, size=48, seed=2)
    write_labelled(str(tmp_path / "img"), [*images[:2], big[0]], [*labels[:2], "big"])
    pipeline = {"steps": [{"op": "color_histogram", "bins": 4, "grid": [32, 32],
                           "pool": "mean"}]}
    summary = extract(pipeline, str(tmp_path / "img"), str(tmp_path / "f.parquet"),
                      label_from="parent", workers=1)
    assert (summary.ok, summary.invalid, summary.failed) == (1, 2, 0)
    rows = pq.read_table(tmp_path / "f.parquet").to_pylist()
    bad = [r for r in rows if r["status"] != "ok"]
    assert all(r["status"] == "invalid" and "32×32 regions do not fit" in r["reason"]
               for r in bad)
    # a pipeline no image can take is still refused before any work (exit 2)
    (tmp_path / "never.yaml").write_text("steps:\n  - op: color_histogram\n    grid: [65, 1]\n")
    assert main(["learn", "extract", str(tmp_path / "never.yaml"), str(tmp_path / "img"),
                 "--out", str(tmp_path / "n.parquet")]) == 2
    assert "grid" in capsys.readouterr().err and not (tmp_path / "n.parquet").exists()


def test_predict_records_an_image_of_another_feature_length_as_invalid(tmp_path, capsys):
    from pixelmill.learn import predict
    from pixelmill.learn.models import load_model
    from pixelmill.ops import get_op

    pipeline = {"steps": [{"op": "hog", "pixels_per_cell": [4, 4], "cells_per_block": [2, 2]}]}
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(12)]
    X = np.stack([get_op("hog")(im, pixels_per_cell=(4, 4), cells_per_block=(2, 2))
                  for im in images])
    _train_rf(_table(tmp_path / "f.parquet", X, ["x", "y"] * 6, ["train"] * 12, pipeline,
                     column="vec_hog"), tmp_path / "m")
    other = np.zeros((24, 24), np.uint8)
    with pytest.raises(UnsuitableImageError, match="900 feature values per row, the model "
                       "was trained on 324"):
        load_model(str(tmp_path / "m")).classify_image(other)  # still a UsageError too
    write_labelled(str(tmp_path / "new"), [images[0], other], ["x", "x"])
    summary = predict(str(tmp_path / "m"), str(tmp_path / "new"), str(tmp_path / "p.parquet"),
                      workers=1)
    assert (summary.ok, summary.invalid, summary.failed) == (1, 1, 0)
    bad = [r for r in pq.read_table(tmp_path / "p.parquet").to_pylist() if r["status"] != "ok"]
    assert bad[0]["status"] == "invalid" and "trained on 324" in bad[0]["reason"]


def test_index_query_of_an_image_smaller_than_the_grid_is_a_clear_usage_error(tmp_path, capsys):
    from pixelmill.images import write_image
    from pixelmill.learn.index import make_index
    from pixelmill.ops import get_op

    op = {"op": "color_histogram", "bins": 4, "space": "rgb", "grid": [8, 8], "pool": "mean"}
    images, labels = color_classes(2, size=16, seed=6)
    X = np.stack([get_op("color_histogram")(im, bins=4, space="rgb", grid=(8, 8), pool="mean")
                  for im in images])
    rows = [{"key": str(i), "uri": f"{i}.png", "label": v, "split": "train"}
            for i, v in enumerate(labels)]
    make_index(X, rows, columns=["vec_color_histogram"], pipeline={"steps": [op]}).save(
        str(tmp_path / "index"))
    write_image(str(tmp_path / "small.png"), np.zeros((4, 4, 3), np.uint8))
    capsys.readouterr()
    assert main(["index", "query", str(tmp_path / "index"), str(tmp_path / "small.png")]) == 2
    err = capsys.readouterr().err
    assert "8×8 regions do not fit an image of 4×4 pixels" in err and "Traceback" not in err
