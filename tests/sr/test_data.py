"""Training data: pairs follow the evaluation's degradation; patches stay aligned; images
smaller than a patch are never drawn; the held-out split is a fixed function of the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelmill.metrics import rgb_to_y
from pixelmill.sr.data import PairSet, sample_patches, split_files, to_luma
from pixelmill.sr.resample import imresize


def test_patches_are_aligned_and_small_images_never_drawn(astronaut, rng):
    hr = to_luma(astronaut[:96, :96])
    lr = to_luma(imresize(astronaut[:96, :96], 0.5))
    tiny_lr = np.full((3, 2), 0.5, np.float32)  # smaller than the patch on both sides
    pairs = PairSet(2, [tiny_lr, lr], [np.zeros((6, 4), np.float32), hr], ["tiny", "a"])
    lr_b, hr_b = sample_patches(pairs, rng, 256, 12)
    assert lr_b.shape == (256, 1, 12, 12) and hr_b.shape == (256, 1, 24, 24)
    # each LR patch is the luma of the bicubic-degraded HR patch's neighbourhood: aligned
    # patches correlate strongly with the 2x2 means of their HR patches
    means = hr_b.reshape(256, 12, 2, 12, 2).mean(axis=(2, 4))
    assert np.corrcoef(means.ravel(), lr_b.ravel())[0, 1] > 0.95
    with pytest.raises(ValueError, match="at least"):
        sample_patches(PairSet(2, [tiny_lr], [hr], ["tiny"]), rng, 4, 12)


def test_luma_is_bt601_and_split_is_stable():
    rgb = np.array([[[255, 0, 0], [0, 255, 255]]], np.uint8)
    np.testing.assert_allclose(to_luma(rgb), rgb_to_y(rgb, 255.0) / 255, rtol=1e-6)
    files = [Path("root") / f"img{i}.png" for i in range(200)]
    val = split_files(files, "root", "val")
    train = split_files(files, "root", "train")
    assert sorted(val + train) == sorted(files) and 5 <= len(val) <= 40
    assert split_files(files[::-1], "root", "val") == val[::-1]


def test_pair_cache_is_not_reused_across_degradations(tmp_path, astronaut, monkeypatch):
    """Training caches LR/HR pairs on disk; pairs made by an earlier degradation (before
    imresize mirrored its border taps) must not be loaded by a later one."""
    import pixelmill.sr.data as sr_data

    f = tmp_path / "a.png"
    Image.fromarray(astronaut[:48, :64]).save(f)
    cache = tmp_path / "cache"
    first = sr_data.load_pairs([f], 2, cache_dir=cache)
    np.testing.assert_array_equal(first.lr[0], to_luma(imresize(astronaut[:48, :64], 0.5)))
    monkeypatch.setattr(sr_data, "degrade", lambda hr, s: hr[::s, ::s].copy())
    second = sr_data.load_pairs([f], 2, cache_dir=cache)
    np.testing.assert_array_equal(second.lr[0], to_luma(astronaut[:48:2, :64:2]))
