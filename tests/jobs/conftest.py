"""Fixtures for the job tests: a small collection with sub-folders and bad files, one engine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest


def write_collection(root: Path) -> dict[str, str]:
    """A few real photographs in nested folders, plus two files that are not images.

    Returns relpath -> kind ("ok", "invalid").
    """
    from skimage import data

    root.mkdir(parents=True, exist_ok=True)
    photos = {
        "cats/chelsea.jpg": data.chelsea(),
        "cats/deep/chelsea_small.png": cv2.resize(data.chelsea(), (150, 100),
                                                  interpolation=cv2.INTER_AREA),
        "people/astronaut.jpg": data.astronaut(),
        "coffee.jpg": data.coffee(),
        "camera.png": data.camera(),
    }
    kinds = {}
    for rel, img in photos.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        bgr = img[..., ::-1] if img.ndim == 3 else img
        assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))
        kinds[rel] = "ok"
    (root / "not_an_image.jpg").write_bytes(b"this is plain text, not a JPEG")
    (root / "empty.png").write_bytes(b"")
    kinds["not_an_image.jpg"] = kinds["empty.png"] = "invalid"
    return kinds


@pytest.fixture(scope="session")
def collection_master(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("collection") / "in"
    return root, write_collection(root)


@pytest.fixture
def collection(collection_master, tmp_path) -> tuple[Path, dict[str, str]]:
    """A private copy of the collection (tests may break files in it)."""
    src, kinds = collection_master
    dst = tmp_path / "in"
    shutil.copytree(src, dst)
    return dst, kinds


@pytest.fixture(scope="session")
def engine():
    """One local engine with 2 workers for the whole session (spawning costs seconds)."""
    from pixelmill.engines.local import LocalEngine

    with LocalEngine(workers=2) as eng:
        yield eng


@pytest.fixture
def blur_pipeline() -> dict:
    return {"steps": [{"op": "gaussian", "sigma": 1.5}]}


def has_op(name: str) -> bool:
    from pixelmill.ops import registry

    return name in registry()


def output_files(root: Path) -> dict[str, bytes]:
    """relpath -> bytes of every image file under ``root`` (not the manifest/report)."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith((".parquet", ".html", ".jsonl")):
                continue
            p = Path(folder) / name
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out
