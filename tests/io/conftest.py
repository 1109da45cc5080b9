"""Fixtures for the I/O tests: small real photographs, crafted bad files, one shared engine."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image


def pil_bytes(array: np.ndarray, fmt: str, mode: str | None = None, **save_kw) -> bytes:
    """Encode with Pillow (an encoder independent of the one under test)."""
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **save_kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real RGB photograph, 96×128 (scikit-image's astronaut, area-downscaled)."""
    from skimage import data

    return cv2.resize(data.astronaut(), (128, 96), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def gray_photo() -> np.ndarray:
    """A real gray photograph, 96×128 (scikit-image's camera, area-downscaled)."""
    from skimage import data

    return cv2.resize(data.camera(), (128, 96), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def engine():
    """One local engine (2 workers) shared by the scan tests, closed at the end."""
    from pixelmill.engines.local import LocalEngine

    eng = LocalEngine(workers=2)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def spark():
    """A local[1] SparkSession on 127.0.0.1 for one test module (an active one is used as is
    and left running)."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    already = pyspark_sql.SparkSession.getActiveSession()
    session = (pyspark_sql.SparkSession.builder.master("local[1]")
               .appName("pixelmill-io-tests")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "1")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    if already is None:  # only stop what this module started
        session.stop()
