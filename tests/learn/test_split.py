"""The stable split: per-item hash thresholds, stable when images are added, stratified."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pixelmill.errors import InvalidParameterError
from pixelmill.learn.split import assign_split, parse_ratios, split_fraction, split_of


def test_fraction_is_the_documented_hash():
    digest = hashlib.sha256(b"\0cats/001.jpg").digest()
    assert split_fraction("cats/001.jpg") == int.from_bytes(digest[:8], "big") / 2**64
    u = split_fraction("cats/001.jpg")
    assert split_of("cats/001.jpg") == ("train" if u < 0.7 else "val" if u < 0.8 else "test")


def test_adding_images_never_moves_an_existing_one():
    before = [f"class{i % 7}/{i:06d}.jpg" for i in range(3000)]
    first = dict(zip(before, assign_split(before), strict=True))
    added = before + [f"class{i % 9}/new_{i:06d}.png" for i in range(5000)]
    rng = np.random.default_rng(0)
    shuffled = list(rng.permutation(added))  # order of listing does not matter either
    second = dict(zip(shuffled, assign_split(shuffled), strict=True))
    assert all(second[k] == v for k, v in first.items())


def test_each_class_follows_the_ratios():
    # 4 classes of 4,000 images: each class's shares are within 2.5 points of 70/10/20
    # (the standard error of a share is sqrt(p(1-p)/n) <= 0.0073 here; 2.5 points is > 3 sigma)
    for cls in ("cat", "dog", "bird", "fish"):
        keys = [f"{cls}/{i:05d}.jpg" for i in range(4000)]
        splits = np.array(assign_split(keys))
        for name, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
            assert abs(np.mean(splits == name) - share) < 0.025, (cls, name)


def test_custom_ratios_and_salt():
    keys = [f"x/{i}.png" for i in range(5000)]
    splits = np.array(assign_split(keys, "8:0:2"))
    assert set(splits) == {"train", "test"}
    assert abs(np.mean(splits == "train") - 0.8) < 0.03
    salted = np.array(assign_split(keys, salt="other"))
    assert np.mean(salted != np.array(assign_split(keys))) > 0.2  # a different, stable split
    assert parse_ratios("7:1:2") == pytest.approx((0.7, 0.1, 0.2))
    for bad in ("7:1", "a:b:c", "-1:1:1", "0:0:0", "7:1:x"):
        with pytest.raises(InvalidParameterError, match="ratios") as e:
            parse_ratios(bad)
        assert str(e.value).endswith(f"got {bad!r}")  # what was typed ("7:1:x" read "got []")


def test_content_split_follows_the_bytes(tmp_path):
    """split_by=content: a renamed copy of an image lands in the split of the original."""
    import os
    import shutil

    import pyarrow.parquet as pq

    from pixelmill.learn import extract
    from pixelmill.learn.datasets import color_classes, write_labelled

    images, labels = color_classes(4, size=12, seed=3)
    paths = write_labelled(str(tmp_path / "images"), images, labels)
    os.makedirs(tmp_path / "images" / "copies")
    for i, path in enumerate(paths[:8]):
        shutil.copy(path, tmp_path / "images" / "copies" / f"renamed_{i}.png")
    out = str(tmp_path / "f.parquet")
    extract([{"op": "color_moments"}], str(tmp_path / "images"), out, split_by="content",
            workers=1)
    rows = pq.read_table(out).to_pylist()
    by_hash: dict[str, set] = {}
    for row in rows:
        assert row["split"] == split_of(row["content_sha256"])
        by_hash.setdefault(row["content_sha256"], set()).add(row["split"])
    assert len(rows) == 28 and len(by_hash) == 20
    assert all(len(splits) == 1 for splits in by_hash.values())  # duplicates share one split
