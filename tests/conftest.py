"""Shared fixtures: seeded RNG, small sample images, loopback-only services (session-wide
Dask and Spark standalone clusters on 127.0.0.1, started when a test first asks for one)."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Nothing in the suite may reach beyond loopback.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", "") or __import__("sys").executable)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real RGB photograph (scikit-image's bundled sample), 512×512 uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    """A real gray photograph (scikit-image's bundled sample), 512×512 uint8."""
    from skimage import data

    return data.camera()


@pytest.fixture(scope="session")
def dask_address():
    """``tcp://127.0.0.1:PORT`` of a Dask scheduler with two single-threaded worker processes."""
    pytest.importorskip("distributed")
    from tests._clusters import dask_cluster

    with dask_cluster(workers=2) as address:
        yield address


@pytest.fixture(scope="session")
def spark_master():
    """``spark://127.0.0.1:PORT`` of a standalone master with one 2-core worker (shared by
    tests/engines and tests/test_readme_cli.py)."""
    pytest.importorskip("pyspark")
    from tests._clusters import spark_standalone

    with spark_standalone(cores=2, memory="1g") as master:
        yield master
