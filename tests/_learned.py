"""A small learned setup the CLI tests share: images of colour classes, their feature table,
a trained model and an index, all made through ``pixelmill`` commands."""

from __future__ import annotations

from pathlib import Path


def build_learned(root: Path, model: list[str]) -> dict[str, str]:
    """Images of 5 colour classes under ``root``, their feature table, a model trained with
    the ``learn train`` arguments ``model`` and an index; their paths by name."""
    from pixelmill.cli import main
    from pixelmill.learn.datasets import color_classes, write_labelled

    images, labels = color_classes(6, size=24, seed=3)
    write_labelled(str(root / "images"), images, labels)
    pipe = root / "features.yaml"
    pipe.write_text("steps:\n  - op: color_moments\n    space: rgb\n")
    table, out, index = root / "f.parquet", root / "model", root / "index"
    assert main(["learn", "extract", str(pipe), str(root / "images"), "--out", str(table),
                 "--label-from", "parent", "--workers", "1", "-q"]) == 0
    assert main(["learn", "train", str(table), *model, "--out", str(out), "--json"]) == 0
    assert main(["index", "build", str(table), "--out", str(index)]) == 0
    return {"root": str(root), "images": str(root / "images"), "pipe": str(pipe),
            "table": str(table), "model": str(out), "index": str(index)}


def write_every_row_hnsw_index(folder: Path) -> None:
    """An HNSW index as pixelmill wrote them before the distinct-vector graph: a graph item for
    every row (200 cosine vectors of 4 dims, the first 20 copies of one)."""
    import json

    import hnswlib
    import numpy as np

    from pixelmill.learn.index import make_index

    X = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    X[:20] = X[0]
    ix = make_index(X, [{"key": str(i)} for i in range(200)], kind="exact")
    ix.save(str(folder))
    full = hnswlib.Index(space="cosine", dim=4)
    full.init_index(max_elements=200, M=16, ef_construction=200, random_seed=100)
    full.add_items(ix.vectors, np.arange(200), num_threads=1)
    full.save_index(str(folder / "hnsw.bin"))
    meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**meta, "kind": "hnsw"}))
