"""A model records its split settings; evaluate refuses a table split with other settings."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from pixelmill.cli import main
from pixelmill.errors import UsageError
from pixelmill.learn.datasets import color_classes, write_labelled

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PIPELINE = [{"op": "color_histogram", "bins": 4}]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """50 colour images, a table split 7:1:2 and one with another salt, a model of the first."""
    from pixelmill.learn import extract
    from pixelmill.learn.models import train

    root = tmp_path_factory.mktemp("split_settings")
    images, labels = color_classes(10, size=16, seed=7)
    write_labelled(str(root / "images"), images, labels)
    tables = {}
    for name, salt in (("own", ""), ("salted", "other")):
        tables[name] = str(root / f"{name}.parquet")
        extract(PIPELINE, str(root / "images"), tables[name], label_from="parent", salt=salt,
                workers=1)
    model = str(root / "model")
    train(tables["own"], "logistic_regression", model)
    return {"root": root, "images": str(root / "images"), "model": model, **tables}


def _meta(model: str) -> dict:
    with open(os.path.join(model, "model.json")) as f:
        return json.load(f)


def test_model_json_records_the_tables_split(built):
    split = _meta(built["model"])["split"]
    assert split["ratios"] == pytest.approx([0.7, 0.1, 0.2])
    assert (split["split_by"], split["salt"]) == ("relpath", "")
    assert (split["source"], split["uri"]) == ("table", built["own"])


def test_evaluate_refuses_another_split_unless_allowed(built, capsys):
    model, salted = built["model"], built["salted"]
    assert main(["learn", "evaluate", model, salted, "--no-report", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "salt 'other'" in err and "salt ''" in err and "trained on" in err
    assert "--allow-other-split" in err
    assert main(["learn", "evaluate", model, salted, "--no-report", "--json",
                 "--allow-other-split"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["split"] == "test" and "warning:" in out.err
    # the model's own table, and train / all rows, are scored without a word
    for args in ([built["own"]], [salted, "--split", "all"]):
        assert main(["learn", "evaluate", model, *args, "--no-report", "--json"]) == 0
        assert "warning" not in capsys.readouterr().err


def test_unrecorded_settings_warn_once(built, tmp_path, capsys):
    old = str(tmp_path / "old-model")
    shutil.copytree(built["model"], old)
    meta = _meta(old)
    del meta["split"]
    with open(os.path.join(old, "model.json"), "w") as f:
        json.dump(meta, f)
    assert main(["learn", "evaluate", old, built["salted"], "--no-report", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "records no split settings" in err
    bare = str(tmp_path / "bare.parquet")  # a table written without the split metadata
    table = pq.read_table(built["own"])
    pq.write_table(table.replace_schema_metadata({
        k: v for k, v in table.schema.metadata.items() if k != b"pixelmill.split"}), bare)
    assert main(["learn", "evaluate", built["model"], bare, "--no-report", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "records no split settings" in err


def test_cnn_records_its_split(built, tmp_path):
    from pixelmill.learn import evaluate
    from pixelmill.learn.cnn import CNNConfig
    from pixelmill.learn.models import train

    config = CNNConfig(input_size=16, channels=(4,), epochs=1, batch_size=16, augment=(),
                       device="cpu")
    from_images = str(tmp_path / "cnn-images")
    train(None, "cnn", from_images, images=built["images"], ratios="5:2:3", salt="s",
          cnn_config=config, workers=1)
    split = _meta(from_images)["split"]
    assert split["ratios"] == pytest.approx([0.5, 0.2, 0.3]) and split["salt"] == "s"
    assert (split["source"], split["uri"]) == ("images", built["images"])
    with pytest.raises(UsageError, match="--images"):
        evaluate(from_images, built["own"])
    from_table = str(tmp_path / "cnn-table")
    train(built["own"], "cnn", from_table, cnn_config=config, workers=1)
    assert _meta(from_table)["split"]["uri"] == built["own"]
    assert evaluate(from_table, built["own"]).n > 0
    with pytest.raises(UsageError, match="salt 'other'"):
        evaluate(from_table, built["salted"])
    assert evaluate(from_table, built["salted"], allow_other_split=True).n > 0
