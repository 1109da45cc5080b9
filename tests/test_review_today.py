"""Review of the day's changes: defects found in the op fast paths, the HNSW distinct-vector
graph, the storage-fault handling and the SR pair cache, each pinned by a test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._learned import write_every_row_hnsw_index

# ---- ops: median's joint channels ------------------------------------------------------------


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("size", [3, 5])
def test_median_float32_with_nan_is_the_per_channel_median(channels, size):
    """Sizes 3 and 5 now run OpenCV's median on all channels at once: for float32 its SIMD
    min/max carry a NaN differently with the channels interleaved, so the medians next to a
    NaN pixel differed from the one-channel-at-a-time results of before (and of an H×W
    channel)."""
    from pixelmill.ops.filters import median

    rng = np.random.default_rng(3)
    img = rng.normal(0.5, 0.5, (17, 15, channels)).astype(np.float32)
    img.reshape(-1)[rng.integers(0, img.size, img.size // 10)] = np.nan
    got = median(img, size=size)
    want = np.stack([median(np.ascontiguousarray(img[..., c]), size=size)
                     for c in range(channels)], -1)
    np.testing.assert_array_equal(got, want)  # NaN == NaN here


# ---- learn: HNSW groups saved with the index ---------------------------------------------------


def _dup_index(n=600, dim=8):
    from pixelmill.learn.index import make_index

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X[: n // 3] = X[0]
    X[n // 3: n // 2] = X[n - 1]
    return make_index(X, [{"key": str(i)} for i in range(n)], kind="hnsw", threads=1)


def test_hnsw_load_does_not_sort_every_vector_again(tmp_path, monkeypatch):
    """load_index found the groups of copies again by np.unique over every vector at each
    load: 10 s for a million 128-d vectors, 40 s (+1.3 GB) for 512-d, on each `index query`.
    The groups are saved beside the graph."""
    from pixelmill.learn import index as mod

    ix = _dup_index()
    assert ix.groups is not None
    ix.save(str(tmp_path / "ix"))
    Q = ix.vectors[[0, 5, 300, 599]]
    want = ix.search(Q, 20)

    def boom(vectors):
        raise AssertionError("load_index sorted every vector again")

    monkeypatch.setattr(mod, "_distinct", boom)
    loaded = mod.load_index(str(tmp_path / "ix"))
    for a, b in zip(loaded.groups, ix.groups, strict=True):
        np.testing.assert_array_equal(a, b)
    got = loaded.search(Q, 20)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_hnsw_index_saved_today_without_groups_file_still_loads(tmp_path):
    """An index saved before groups.npy (graph 'distinct', no 'groups' key) is found again."""
    from pixelmill.learn.index import load_index

    ix = _dup_index()
    ix.save(str(tmp_path / "ix"))
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    del meta["groups"]
    (tmp_path / "ix" / "index.json").write_text(json.dumps(meta))
    (tmp_path / "ix" / "groups.npy").unlink()
    loaded = load_index(str(tmp_path / "ix"))
    np.testing.assert_array_equal(loaded.search(ix.vectors[:3], 10)[0],
                                  ix.search(ix.vectors[:3], 10)[0])


def test_an_older_graph_of_every_row_saved_again_still_loads(tmp_path):
    """A loaded index whose graph holds every row (built before the distinct graph) was saved
    as 'graph: distinct': loading that copy found fewer distinct vectors than graph items and
    refused the index."""

    from pixelmill.learn.index import load_index

    write_every_row_hnsw_index(tmp_path / "old")
    old = load_index(str(tmp_path / "old"))
    old.save(str(tmp_path / "again"))
    again = load_index(str(tmp_path / "again"))
    assert again.groups is None and again.hnsw.get_current_count() == 200
    assert again.search(again.vectors[50:51], 3)[0][0, 0] == 50


def test_a_damaged_groups_file_is_not_an_index(tmp_path):
    from pixelmill.errors import UsageError
    from pixelmill.learn.index import load_index

    ix = _dup_index()
    ix.save(str(tmp_path / "ix"))
    np.save(tmp_path / "ix" / "groups.npy", np.zeros(3, np.int64))
    with pytest.raises(UsageError, match=r"groups\.npy"):
        load_index(str(tmp_path / "ix"))


# ---- sr: the pair cache's file mode ------------------------------------------------------------


def test_sr_pair_cache_entry_has_an_ordinary_file_mode(tmp_path):
    """The cache entry is now written through mkstemp (mode 0600): it was 0644 (umask 022)
    before, as the checkpoint fix of the same commit restores for its own file."""
    import os
    import stat

    from PIL import Image

    from pixelmill.sr.data import load_pairs

    rng = np.random.default_rng(0)
    f = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(f)
    old = os.umask(0o022)
    try:
        load_pairs([f], 2, cache_dir=tmp_path / "cache")
    finally:
        os.umask(old)
    (entry,) = (tmp_path / "cache").glob("pairs-*.npz")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o644
