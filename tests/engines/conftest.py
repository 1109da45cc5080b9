"""Cluster fixtures for the engine tests: a Dask scheduler + 2 workers, a Spark standalone cluster."""

from __future__ import annotations

import pytest

from tests._clusters import dask_cluster, spark_standalone


@pytest.fixture(scope="session")
def dask_address():
    """``tcp://127.0.0.1:PORT`` of a Dask scheduler with two single-threaded worker processes."""
    pytest.importorskip("distributed")
    with dask_cluster(workers=2) as address:
        yield address


@pytest.fixture(scope="session")
def spark_master():
    """``spark://127.0.0.1:PORT`` of a standalone master with one 2-core worker."""
    pytest.importorskip("pyspark")
    with spark_standalone(cores=2, memory="1g") as master:
        yield master
