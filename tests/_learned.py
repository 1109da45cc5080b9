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
