"""``--engine`` mistakes and clusters that are not there, as the shell sees them.

A malformed ``--engine`` value is a usage error (exit 2) before anything starts; a scheduler or
master that cannot be reached is exit 1 within seconds (not after Dask's 30 s timeout or Spark's
60 s of registration retries); each is one ``error: --engine ...`` line, never a traceback or a
Java stack. Against a real one-worker Dask cluster the engine reports the cluster's one thread.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from pixelmill.cli import main
from pixelmill.engines import EngineUnavailableError, get_engine, parse_engine_spec
from pixelmill.errors import ExitCode, InvalidParameterError
from tests._clusters import dask_cluster, free_port, loopback_env

FAST = 15  # seconds: far below Dask's 30 s connect timeout and Spark's 60 s of retries


@pytest.fixture
def photos(tmp_path):
    """A folder of two small PNGs and a pipeline file."""
    import cv2
    import numpy as np

    (tmp_path / "in").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), np.full((12, 10, 3), 40 * i, np.uint8))
    (tmp_path / "thumb.yaml").write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    return tmp_path


def _shell(*args: str) -> tuple[int, str, float]:
    """``pixelmill ARGS`` in a fresh process: (exit code, stderr, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pixelmill", *args], env=loopback_env(),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr, time.monotonic() - t0


def _command(command: str, photos, engine: str) -> list[str]:
    if command == "scan":
        return ["scan", str(photos / "in"), "--engine", engine]
    return ["run", str(photos / "thumb.yaml"), str(photos / "in"), str(photos / "out"),
            "--engine", engine]


def _closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return free_port()


# ---- clusters that are not there: exit 1, in seconds ---------------------------------------
@pytest.mark.parametrize("command", ["run", "scan"])
def test_unreachable_dask_scheduler_fails_fast(command, photos):
    engine = f"dask=tcp://127.0.0.1:{_closed_port()}"
    code, err, seconds = _shell(*_command(command, photos, engine))
    assert code == ExitCode.ERROR, err
    assert err.strip() == f"error: --engine {engine}: cannot reach the Dask scheduler " \
                          "(connection refused)"
    assert seconds < FAST
    assert not (photos / "out").exists()


@pytest.mark.parametrize("command", ["run", "scan"])
def test_unreachable_spark_master_fails_fast(command, photos):
    engine = f"spark=spark://127.0.0.1:{_closed_port()}"
    code, err, seconds = _shell(*_command(command, photos, engine))
    assert code == ExitCode.ERROR, err
    assert err.strip() == f"error: --engine {engine}: cannot reach the Spark master " \
                          "(connection refused)"
    assert "Traceback" not in err and "\tat " not in err
    assert seconds < FAST


def test_unreachable_spark_masters_with_standby_name_each(photos, capsys):
    first, second = _closed_port(), _closed_port()
    engine = f"spark=spark://127.0.0.1:{first},127.0.0.1:{second}"
    t0 = time.monotonic()
    code = main(_command("scan", photos, engine))
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert f"127.0.0.1:{first}: connection refused; 127.0.0.1:{second}: connection refused" in err
    assert "Traceback" not in err
    assert time.monotonic() - t0 < FAST


@contextlib.contextmanager
def _listener(reply: bytes | None):
    """A loopback port that accepts connections and stays silent (or sends ``reply``)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if reply is not None:
                conn.sendall(reply)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in conns:
            conn.close()
        server.close()


@pytest.mark.parametrize("reply,reason", [
    (None, "no Dask scheduler answered within 5 s"),  # Dask alone would wait forever
    (b"HTTP/1.0 400 Bad Request\r\n\r\nnot dask", "not a Dask scheduler"),
], ids=["silent", "http"])
def test_a_port_that_is_not_a_dask_scheduler_fails_fast(reply, reason, photos, capsys):
    with _listener(reply) as port:
        t0 = time.monotonic()
        code = main(_command("scan", photos, f"dask=tcp://127.0.0.1:{port}"))
        seconds = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR, err
    assert err.startswith(f"error: --engine dask=tcp://127.0.0.1:{port}: {reason}"), err
    assert "Traceback" not in err
    assert seconds < FAST


def test_yarn_without_its_configuration_is_named(photos, monkeypatch, capsys):
    pytest.importorskip("pyspark")
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    code = main(_command("scan", photos, "spark=yarn"))
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert err.strip() == ("error: --engine spark=yarn: set HADOOP_CONF_DIR or YARN_CONF_DIR to "
                           "the folder holding the YARN cluster's configuration")


def test_spark_that_cannot_start_is_one_line_without_java_stack():
    """An error raised while the SparkContext starts: its first line, no stack (real JVM)."""
    pytest.importorskip("pyspark")
    script = (
        "from pixelmill.engines.spark import SparkEngine\n"
        "from pixelmill.errors import PixelmillError\n"
        "try:\n"
        "    SparkEngine('local[1]', conf={'spark.task.cpus': 'abc'})\n"
        "except PixelmillError as e:\n"
        "    print(int(e.exit_code), e, sep='|')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=loopback_env(),
                          capture_output=True, text=True, timeout=120)
    code, message = proc.stdout.strip().split("|", 1)
    assert code == str(int(ExitCode.ERROR))
    assert message.startswith("--engine spark=local[1]: Spark could not start (")
    assert "'abc'" in message and "spark.task.cpus" in message and "\n" not in message
    assert "Traceback" not in proc.stderr and "\tat " not in proc.stderr, proc.stderr


# ---- malformed --engine values: exit 2, before anything starts -----------------------------
@pytest.mark.parametrize("engine,message", [
    ("dask=", "--engine dask=: give a scheduler address after '=' or use --engine dask for a "
              "local cluster"),
    ("dask=foo://", "--engine dask=foo://: unknown address scheme 'foo' (valid: inproc://, "
                    "tcp://, tls://"),
    ("dask=tcp://127.0.0.1", "--engine dask=tcp://127.0.0.1: expected tcp://HOST:PORT"),
    ("dask=tcp://127.0.0.1:99999", "--engine dask=tcp://127.0.0.1:99999: expected tcp://HOST:PORT"),
    ("spark=", "--engine spark=: give a master URL after '=' or use --engine spark for Spark "
               "in local mode"),
    ("spark=local[x]", "--engine spark=local[x]: not a Spark master URL (valid: local, local[N], "
                       "local[*], local[N,F], local-cluster[N,C,M], spark://HOST:PORT"),
    ("spark=local[0]", "--engine spark=local[0]: thread, failure and worker counts must be >= 1"),
    ("spark=spark://127.0.0.1", "--engine spark=spark://127.0.0.1: expected spark://HOST:PORT"),
    ("spark=spark://h:7077,", "--engine spark=spark://h:7077,: expected spark://HOST:PORT"),
    ("spark=mesos://h:5050", "--engine spark=mesos://h:5050: Spark 4 no longer runs on Mesos"),
    ("spark=k8s://", "--engine spark=k8s://: expected k8s://[https://]HOST[:PORT]"),
    ("local=", "--engine: the local engine takes no address"),
])
@pytest.mark.parametrize("command", ["run", "scan"])
def test_malformed_engine_is_a_usage_error(command, engine, message, photos, capsys):
    t0 = time.monotonic()
    code = main(_command(command, photos, engine))
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert err.startswith(f"error: {message}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert time.monotonic() - t0 < 5
    assert not (photos / "out").exists()


@pytest.mark.parametrize("spec,expected", [
    ("dask", ("dask", None)),
    ("dask=tcp://10.0.0.5:8786", ("dask", "tcp://10.0.0.5:8786")),
    ("dask=10.0.0.5:8786", ("dask", "10.0.0.5:8786")),
    ("dask=tls://[::1]:8786", ("dask", "tls://[::1]:8786")),
    ("spark", ("spark", None)),
    ("spark=local", ("spark", "local")),
    ("spark=local[4]", ("spark", "local[4]")),
    ("spark=local[*]", ("spark", "local[*]")),
    ("spark=local[4, 3]", ("spark", "local[4, 3]")),
    ("spark=local-cluster[2,1,1024]", ("spark", "local-cluster[2,1,1024]")),
    ("spark=spark://h1:7077,h2:7077", ("spark", "spark://h1:7077,h2:7077")),
    ("spark=yarn", ("spark", "yarn")),
    ("spark=k8s://https://10.0.0.5:6443", ("spark", "k8s://https://10.0.0.5:6443")),
])
def test_valid_engine_values_parse_without_starting_anything(spec, expected):
    assert parse_engine_spec(spec) == expected


def test_the_python_api_checks_the_same_way():
    from pixelmill.engines.dask import DaskEngine

    with pytest.raises(InvalidParameterError, match="unknown address scheme 'foo'"):
        DaskEngine("foo://x")
    with pytest.raises(EngineUnavailableError, match="connection refused") as info:
        get_engine(f"dask=tcp://127.0.0.1:{_closed_port()}")
    assert isinstance(info.value, ConnectionError) and info.value.exit_code == ExitCode.ERROR


# ---- a real cluster: the engine reports the worker slots it has ---------------------------
@pytest.fixture(scope="module")
def one_worker_dask():
    """``tcp://127.0.0.1:PORT`` of a Dask scheduler with one single-threaded worker process."""
    pytest.importorskip("distributed")
    with dask_cluster(workers=1) as address:
        yield address


def test_dask_engine_reports_the_cluster_threads(one_worker_dask):
    with get_engine(f"dask={one_worker_dask}") as eng:
        assert eng.workers == 1
        assert sorted(r for _, r in eng.map(abs, [-1, -2, -3])) == [1, 2, 3]
    with get_engine(f"dask={one_worker_dask}", workers=4) as eng:  # cannot run 4 at once
        assert eng.workers == 1


def test_a_dask_worker_address_is_not_a_scheduler(one_worker_dask, photos, capsys):
    with get_engine(f"dask={one_worker_dask}") as eng:
        worker = next(iter(eng.client.nthreads()))
    t0 = time.monotonic()
    code = main(_command("scan", photos, f"dask={worker}"))
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert err.strip() == f"error: --engine dask={worker}: not a Dask scheduler (it answered " \
                          "as Worker)"
    assert time.monotonic() - t0 < FAST


def test_tile_reports_the_cluster_workers(one_worker_dask, tmp_path, capsys):
    import json

    import numpy as np
    import tifffile

    from pixelmill.engines import default_workers

    if default_workers() < 2:
        pytest.skip("on one core the tiled job plans for one worker anyway")
    tifffile.imwrite(tmp_path / "slide.tif", np.zeros((200, 200, 3), np.uint8), tile=(64, 64),
                     photometric="rgb")
    (tmp_path / "blur.yaml").write_text("steps:\n  - op: gaussian\n    sigma: 1\n")
    code = main(["tile", str(tmp_path / "blur.yaml"), str(tmp_path / "slide.tif"),
                 str(tmp_path / "out.tif"), "--tile", "64", "--json",
                 "--engine", f"dask={one_worker_dask}"])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert json.loads(out)["workers"] == 1


def test_spark_local_engine_reports_its_slots():
    pytest.importorskip("pyspark")
    from pixelmill.engines.spark import SparkEngine

    with SparkEngine("local[1]", workers=2) as eng:  # local[1] runs one task at a time
        assert eng.workers == 1
