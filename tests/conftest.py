"""Shared fixtures: seeded RNG, small sample images, loopback-only services."""

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
