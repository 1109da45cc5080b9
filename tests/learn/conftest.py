"""Fixtures of the learning tests: scikit-learn's digits written as PNGs, and their features."""

from __future__ import annotations

import pytest

#: HOG of the digits resized to 32×32 (8×8 cells, 2×2 blocks: 324 values)
DIGITS_PIPELINE = [{"op": "hog", "size": [32, 32], "pixels_per_cell": [8, 8],
                    "cells_per_block": [2, 2]}]


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_pool():
    """Two cores shared by many processes: OpenMP/BLAS pools spin-wait badly when oversubscribed
    (HistGradientBoosting ran 8x slower with 2 threads than with 1), so the tests use one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    from pixelmill.learn.datasets import write_digits

    root = tmp_path_factory.mktemp("digits")
    write_digits(str(root))
    return str(root)


@pytest.fixture(scope="session")
def digits_features(digits_dir, tmp_path_factory) -> str:
    """The digits' HOG table, extracted as a batch job on the local engine."""
    from pixelmill.learn import extract

    out = str(tmp_path_factory.mktemp("digits_features") / "features.parquet")
    summary = extract(DIGITS_PIPELINE, digits_dir, out, label_from="parent", workers=2)
    assert summary.ok == 1797 and summary.failed == 0 and summary.invalid == 0
    return out
