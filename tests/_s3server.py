"""A local S3 (moto's server) on 127.0.0.1 for tests of ``s3://`` URLs.

Usage::

    from tests._s3server import s3_server

    with s3_server(buckets=["photos"]) as so:       # so: storage_options for s3fs
        fs = fsspec.filesystem("s3", **so)
        fs.pipe("photos/a.png", data)
        pixelmill.scan("s3://photos", storage_options=so)

or the ``s3_storage_options`` pytest fixture (session-scoped; import it into a conftest).
Nothing listens beyond loopback; credentials are moto's dummies.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

__all__ = ["s3_server", "s3_storage_options"]


@contextlib.contextmanager
def s3_server(buckets: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Start moto's S3 server on 127.0.0.1 (a free port); yield s3fs storage options."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {"key": "testing", "secret": "testing",
                   "client_kwargs": {"endpoint_url": endpoint},
                   "use_listings_cache": False}
        # moto keeps its backends in process-wide state: start every server empty
        import urllib.request

        import s3fs

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset",
                                                      method="POST"), timeout=30).close()
        # a fresh client: a cached one may belong to an earlier server on the same port
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        for bucket in buckets:
            with contextlib.suppress(FileExistsError):
                fs.mkdir(bucket)
        yield options
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_storage_options() -> Iterator[dict[str, Any]]:
    """Storage options of a session-wide local S3 server (buckets are the test's to make)."""
    with s3_server() as options:
        yield options
