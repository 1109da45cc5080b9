"""The ``pixelmill learn`` and ``pixelmill index`` commands end to end, and their usage errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pixelmill.cli import main
from pixelmill.learn.datasets import color_classes, write_labelled

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("colours")
    images, labels = color_classes(10, size=24, seed=5)
    write_labelled(str(root / "images"), images, labels)
    (root / "features.yaml").write_text(
        "steps:\n  - op: color_histogram\n    bins: 6\n  - op: color_moments\n    space: rgb\n")
    return str(root)


def test_extract_train_evaluate_predict_index(colours, capsys, tmp_path):
    images = os.path.join(colours, "images")
    table = str(tmp_path / "f.parquet")
    assert main(["learn", "extract", os.path.join(colours, "features.yaml"), images, "--out",
                 table, "--label-from", "parent", "--workers", "1", "-q"]) == 0
    t = pq.read_table(table)
    assert t.num_rows == 50 and {"vec_color_histogram", "vec_color_moments", "split"} <= set(
        t.column_names)
    model = str(tmp_path / "model")
    assert main(["learn", "train", table, "--model", "logistic_regression", "--out", model,
                 "--grid", "C=0.1,1", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["classes"] == sorted(["red", "green", "blue", "yellow", "purple"])
    assert trained["params"]["C"] in (0.1, 1)
    again = ["learn", "train", table, "--model", "logistic_regression", "--out", model]
    assert main(again) == 2  # a trained model is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main([*again, "--overwrite", "--json"]) == 0
    capsys.readouterr()
    assert main(["learn", "evaluate", model, table, "--split", "all", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["accuracy"] >= 0.9 and os.path.exists(os.path.join(model, "report.html"))
    preds = str(tmp_path / "pred.parquet")
    assert main(["learn", "predict", model, images, "--out", preds, "--workers", "1", "--limit",
                 "5", "-q"]) == 0
    assert {"predicted", "confidence", "prob_red"} <= set(pq.read_table(preds).column_names)
    index = str(tmp_path / "index")
    assert main(["index", "build", table, "--out", index, "--features", "color_histogram"]) == 0
    assert main(["index", "build", table, "--out", index, "--features", "color_histogram"]) == 2
    assert main(["index", "build", table, "--out", index, "--features", "color_histogram",
                 "--overwrite"]) == 0
    query = os.path.join(images, "red", sorted(os.listdir(os.path.join(images, "red")))[0])
    capsys.readouterr()
    assert main(["index", "query", index, query, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and hits[0]["uri"].endswith(os.path.basename(query))
    assert hits[1]["label"] == "red" and hits[0]["distance"] <= hits[2]["distance"]
    assert main(["index", "eval", index, "-k", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recall@5"] >= 0.9

    # a --report path that exists (here: one of the user's images) is replaced only with
    # --overwrite; both commands wrote over it without a word (README walkthrough)
    victim = os.path.join(images, "blue", sorted(os.listdir(os.path.join(images, "blue")))[0])
    before = Path(victim).read_bytes()
    for argv in (["learn", "evaluate", model, table, "--report", victim],
                 ["index", "query", index, query, "-k", "3", "--report", victim]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--report" in err and "already exists" in err and "--overwrite" in err, err
        assert Path(victim).read_bytes() == before
    page = str(tmp_path / "q.html")
    for argv in (["index", "query", index, query, "-k", "3", "--report", page],
                 ["learn", "evaluate", model, table, "--report", page, "--overwrite"]):
        assert main(argv) == 0, argv
    assert main(["learn", "evaluate", model, table]) == 0  # MODEL/report.html is renewed
    # 5 classes: the text says the one-vs-rest macro AUC it computed (only --json did)
    assert "one-vs-rest macro ROC AUC" in capsys.readouterr().out


def test_usage_errors_exit_2_and_name_the_field(colours, tmp_path, capsys):
    images = os.path.join(colours, "images")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - op: hog\n    grid: [2, 2]\n")
    assert main(["learn", "extract", str(bad), images, "--out", str(tmp_path / "x.parquet")]) == 2
    assert "steps[0]" in capsys.readouterr().err
    nofeat = tmp_path / "nofeat.yaml"
    nofeat.write_text("steps:\n  - op: color_histogram\n")
    assert main(["learn", "extract", str(nofeat), images, "--out", str(tmp_path / "y.parquet"),
                 "--ratios", "7:1"]) == 2
    assert "ratios" in capsys.readouterr().err
    table = str(tmp_path / "never-read.parquet")  # the grid is checked before the table is read
    for grid, message in [("C=abc", "could not convert"), ("bogus=1,2", "not a hyperparameter")]:
        assert main(["learn", "train", table, "--model", "linear_svm", "--out",
                     str(tmp_path / "m"), "--grid", grid]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["learn", "train", "--images", images, "--model", "cnn", "--out",
                 str(tmp_path / "m"), "--grid", "C=1"]) == 2
    assert "--grid searches the feature-table models" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert main(["learn", "train", str(tmp_path / "missing.parquet"), "--model", "rbf_svm",
                 "--out", str(tmp_path / "m")]) == 2
    assert main(["learn", "train", "x.parquet", "--model", "deep_forest", "--out",
                 str(tmp_path / "m")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["learn", "train", "--model", "rbf_svm", "--images", images, "--out",
                 str(tmp_path / "m")]) == 2
    assert "--images" in capsys.readouterr().err
    assert main(["learn", "train", "--model", "cnn", "--images", images, "--device", "gpu",
                 "--out", str(tmp_path / "m")]) == 2  # was torch's RuntimeError, after reading
    assert "--device: 'gpu' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert main(["index", "query", str(tmp_path / "nowhere"), "img.png"]) == 2
