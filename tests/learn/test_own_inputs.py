"""What an audit of the learn and index commands found: outputs that destroyed the command's own
inputs (a feature table, a model, a scan inventory, a query image), resumes that mixed two
models or two labellings, CNN paths stored relative, and usage errors that were tracebacks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pixelmill.cli import main
from tests._learned import build_learned

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    """Images of 5 colour classes, their feature table, a trained model and an index."""
    return build_learned(tmp_path_factory.mktemp("own_inputs"),
                         ["--model", "random_forest", "--grid", "n_estimators=10"])


def _snapshot(*paths: str) -> dict[str, bytes]:
    out = {}
    for p in paths:
        for f in ([Path(p)] if os.path.isfile(p) else sorted(Path(p).rglob("*"))):
            if f.is_file():
                out[str(f)] = f.read_bytes()
    return out


def test_no_output_replaces_an_input_even_with_overwrite(built, tmp_path, capsys):
    model = Path(shutil.copytree(built["model"], tmp_path / "model"))
    table = str(shutil.copy(built["table"], tmp_path / "f.parquet"))
    images = str(shutil.copytree(built["images"], tmp_path / "images"))
    query = str(sorted(Path(images).rglob("*.png"))[0])
    before = _snapshot(str(model), table, images, built["index"])
    cases = [
        (["learn", "evaluate", str(model), table, "--report", table, "--overwrite"], "--report"),
        (["learn", "evaluate", str(model), table, "--report", str(model / "model.json"),
          "--overwrite"], "--report"),
        (["index", "query", built["index"], query, "--report", query, "--overwrite"], "--report"),
        (["index", "query", built["index"], query, "--report",
          os.path.join(built["index"], "index.json"), "--overwrite"], "--report"),
        (["learn", "train", table, "--model", "random_forest", "--out", table, "--overwrite"],
         "--out"),
        (["index", "build", table, "--out", table, "--overwrite"], "--out"),
        # the model's files are inputs of predict: --overwrite deleted its weights first
        (["learn", "predict", str(model), images, "--out",
          str(model / "model.skops"), "--overwrite", "-q"], "--out"),
        (["learn", "predict", str(model), images, "--out", query, "--overwrite", "-q"],
         "--out"),
    ]
    for argv, field in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{field}:" in err and "input" in err and "--manifest" not in err, (argv, err)
    assert _snapshot(str(model), table, images, built["index"]) == before
    # the model's own report is still renewed where it always was
    assert main(["learn", "evaluate", str(model), table, "--report",
                 str(model / "report.html"), "--overwrite", "--json"]) == 0


def test_a_scan_manifest_given_as_input_is_not_the_output(built, tmp_path, capsys):
    inv = str(tmp_path / "inv.parquet")
    assert main(["scan", built["images"], "--out", inv, "--label-from", "parent", "--recursive"]) == 0
    before = Path(inv).read_bytes()
    for argv in (["learn", "extract", built["pipe"], inv, "--out", inv, "--overwrite", "-q"],
                 ["run", built["pipe"], inv, str(tmp_path / "o"), "--manifest", inv,
                  "--overwrite", "-q"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert "is the INPUT" in capsys.readouterr().err
    assert Path(inv).read_bytes() == before


def test_resume_refuses_a_retrained_model_or_another_label_from(built, tmp_path, capsys):
    model = str(shutil.copytree(built["model"], tmp_path / "model"))
    preds = str(tmp_path / "p.parquet")
    assert main(["learn", "predict", model, built["images"], "--out", preds, "--limit", "10",
                 "--workers", "1", "-q"]) == 0
    assert main(["learn", "predict", model, built["images"], "--out", preds, "--resume",
                 "--workers", "1", "-q"]) == 0  # the same model: resumes
    assert main(["learn", "train", built["table"], "--model", "logistic_regression", "--out",
                 model, "--overwrite", "--json"]) == 0
    capsys.readouterr()
    assert main(["learn", "predict", model, built["images"], "--out", preds, "--resume",
                 "-q"]) == 2
    assert "different pipeline, model or --label-from" in capsys.readouterr().err

    table = str(tmp_path / "e.parquet")
    assert main(["learn", "extract", built["pipe"], built["images"], "--out", table,
                 "--label-from", "parent", "--limit", "10", "--workers", "1", "-q"]) == 0
    capsys.readouterr()
    assert main(["learn", "extract", built["pipe"], built["images"], "--out", table,
                 "--resume", "-q"]) == 2  # unlabelled rows would join labelled ones
    assert "--label-from" in capsys.readouterr().err
    assert main(["learn", "extract", built["pipe"], built["images"], "--out", table,
                 "--label-from", "parent", "--resume", "--workers", "1", "-q"]) == 0
    labels = pq.read_table(table).column("label").to_pylist()
    assert len(labels) == 30 and None not in labels


def test_cnn_paths_are_stored_absolute_and_a_missing_model_fails_before_work(
        built, tmp_path, capsys, monkeypatch):
    cnn = tmp_path / "cnn"
    assert main(["learn", "train", built["table"], "--model", "cnn", "--images",
                 built["images"], "--label-from", "parent", "--out", str(cnn), "--epochs", "1",
                 "--size", "16", "--channels", "4,8", "--json"]) == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "emb.yaml").write_text("steps:\n  - op: cnn_embedding\n    model: cnn\n")
    assert main(["learn", "extract", "emb.yaml", built["images"], "--out", "emb.parquet",
                 "--label-from", "parent", "--workers", "1", "-q"]) == 0
    stored = json.loads(pq.read_schema("emb.parquet").metadata[b"pixelmill.pipeline"])
    assert stored["steps"][0]["model"] == str(cnn)  # usable from any folder, by any worker
    assert main(["index", "build", "emb.parquet", "--out", "iemb"]) == 0
    monkeypatch.chdir(built["root"])
    query = str(next(Path(built["images"]).rglob("*.png")))
    capsys.readouterr()
    assert main(["index", "query", str(tmp_path / "iemb"), query, "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["distance"] == pytest.approx(0, abs=1e-5)

    (tmp_path / "bad.yaml").write_text("steps:\n  - op: cnn_embedding\n    model: nosuch\n")
    assert main(["learn", "extract", str(tmp_path / "bad.yaml"), built["images"], "--out",
                 str(tmp_path / "bad.parquet"), "-q"]) == 2  # not 60 failed rows
    err = capsys.readouterr().err
    assert "steps[0].model" in err and "nosuch" in err
    assert not (tmp_path / "bad.parquet").exists()


def test_grid_values_yaml_cannot_read_and_json_keeps_warnings(built, tmp_path, capsys):
    argv = ["learn", "train", built["table"], "--model", "logistic_regression", "--out",
            str(tmp_path / "m")]
    assert main([*argv, "--grid", "C=[1,2]"]) == 2
    assert "--grid C: cannot read '[1'" in capsys.readouterr().err
    # a class with no train image: the warning reaches stderr with --json too
    table = pq.read_table(built["table"])
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = pc.invert(pc.and_(pc.equal(table["label"], "red"), pc.equal(table["split"], "train")))
    pq.write_table(table.filter(keep).replace_schema_metadata(table.schema.metadata),
                   tmp_path / "t.parquet")
    assert isinstance(table, pa.Table)
    capsys.readouterr()
    assert main(["learn", "train", str(tmp_path / "t.parquet"), "--model", "logistic_regression",
                 "--out", str(tmp_path / "m2"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["model"] == "logistic_regression"
    assert "warning: 1 class with no train image ('red')" in out.err


def test_models_and_indexes_refuse_a_cnn_retrained_after_their_features(built, tmp_path,
                                                                        capsys):
    """An index or model built on cnn_embedding vectors: after the CNN was retrained at the
    same path, a query image got other vectors and found strangers (distance 0.40 for an
    indexed image), exit 0."""
    cnn = str(tmp_path / "cnn")
    train_cnn = ["learn", "train", built["table"], "--model", "cnn", "--images", built["images"],
                 "--label-from", "parent", "--out", cnn, "--epochs", "1", "--size", "16",
                 "--channels", "4,8", "--json"]
    assert main(train_cnn) == 0
    (tmp_path / "emb.yaml").write_text(f"steps:\n  - op: cnn_embedding\n    model: {cnn}\n")
    table, model, index = (str(tmp_path / n) for n in ("emb.parquet", "m", "ix"))
    assert main(["learn", "extract", str(tmp_path / "emb.yaml"), built["images"], "--out", table,
                 "--label-from", "parent", "--workers", "1", "-q"]) == 0
    assert json.loads(pq.read_schema(table).metadata[b"pixelmill.models"])[
        "steps[0].model"]["uri"] == cnn
    assert main(["learn", "train", table, "--model", "random_forest", "--out", model,
                 "--grid", "n_estimators=10", "--json"]) == 0
    assert main(["index", "build", table, "--out", index]) == 0
    query = str(sorted(Path(built["images"]).rglob("*.png"))[0])
    assert main(["index", "query", index, query, "-k", "1"]) == 0

    retrain = [*train_cnn[:-1], "--overwrite", "--json"]
    retrain[retrain.index("--epochs") + 1] = "2"  # other weights
    assert main(retrain) == 0
    capsys.readouterr()
    for argv in (["index", "query", index, query, "-k", "1"],
                 ["learn", "predict", model, built["images"], "--out",
                  str(tmp_path / "p.parquet"), "-q"]):
        assert main(argv) == 2, argv
        assert "has changed since" in capsys.readouterr().err
    # a table extracted with the retrained CNN does not fit the model trained on the old one
    assert main(["learn", "extract", str(tmp_path / "emb.yaml"), built["images"], "--out",
                 str(tmp_path / "new.parquet"), "--label-from", "parent", "--workers", "1",
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["learn", "evaluate", model, str(tmp_path / "new.parquet"), "--no-report"]) == 2
    assert "another version" in capsys.readouterr().err


def test_a_model_replaced_with_overwrite_leaves_none_of_the_old_ones_files(built, tmp_path):
    model = tmp_path / "m"
    assert main(["learn", "train", built["table"], "--model", "cnn", "--images", built["images"],
                 "--label-from", "parent", "--out", str(model), "--epochs", "1", "--size", "16",
                 "--channels", "4,8", "--json"]) == 0
    assert main(["learn", "evaluate", str(model), built["table"], "--json"]) == 0
    assert {"weights.safetensors", "report.html"} <= set(os.listdir(model))
    assert main(["learn", "train", built["table"], "--model", "random_forest", "--out",
                 str(model), "--grid", "n_estimators=10", "--overwrite", "--json"]) == 0
    assert sorted(os.listdir(model)) == ["model.json", "model.skops"]  # no stale CNN, no report
