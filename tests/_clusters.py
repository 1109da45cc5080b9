"""Real Dask and Spark clusters on 127.0.0.1 for tests, started from each project's own launchers.

``dask_cluster()`` starts ``dask scheduler`` + ``dask worker --nworkers 2`` (two worker processes
under nannies); ``spark_standalone()`` starts a Spark standalone master and one worker (2 cores)
with ``$SPARK_HOME/bin/spark-class`` (SPARK_HOME = pyspark's package directory). Both are
context managers yielding the cluster's address; they wait until the workers have registered,
and on exit kill every process they started (whole process groups, then any stray descendant).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

__all__ = ["dask_cluster", "free_port", "loopback_env", "spark_home", "spark_standalone"]

REPO_ROOT = str(Path(__file__).resolve().parents[1])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(**extra: str) -> dict[str, str]:
    """This process's environment, pinned to loopback, with the repository importable."""
    env = dict(os.environ)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


class _Group:
    """Processes started in their own sessions, killed together with all their descendants."""

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(os.path.join(self.logdir, f"{name}.log"), "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        with contextlib.suppress(OSError):
            return Path(self.logdir, f"{name}.log").read_text(errors="replace")[-4000:]
        return ""

    def kill_all(self) -> None:
        victims: list[psutil.Process] = []
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                victims += psutil.Process(proc.pid).children(recursive=True)
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for v in victims:  # anything that left the group (daemons, executors)
            with contextlib.suppress(psutil.Error):
                v.kill()
        psutil.wait_procs(victims, timeout=10)


def _wait_for(check, what: str, group: _Group, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in group.procs:
            if proc.poll() is not None:
                logs = "\n".join(group.log(n) for n in names)
                raise RuntimeError(f"{what}: a process exited early ({proc.args[:4]})\n{logs}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout} s\n"
                       + "\n".join(group.log(n) for n in names))


@contextlib.contextmanager
def dask_cluster(workers: int = 2, allowed_failures: int = 1) -> Iterator[str]:
    """A Dask scheduler and ``workers`` single-threaded worker processes; yields its address."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = loopback_env(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures),
                       DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")
    with tempfile.TemporaryDirectory(prefix="pixelmill-dask-") as logdir:
        group = _Group(logdir)
        try:
            group.start("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler",
                                      "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], env)
            group.start("workers", [sys.executable, "-m", "distributed.cli.dask_worker", address,
                                    "--nworkers", str(workers), "--nthreads", "1",
                                    "--host", "127.0.0.1", "--no-dashboard",
                                    "--local-directory", logdir], env)

            def ready() -> bool:
                with Client(address, timeout=5, set_as_default=False) as c:
                    return len(c.scheduler_info()["workers"]) >= workers

            _wait_for(ready, "dask cluster", group, ["scheduler", "workers"])
            yield address
        finally:
            group.kill_all()


@contextlib.contextmanager
def spark_standalone(cores: int = 2, memory: str = "1g") -> Iterator[str]:
    """A Spark standalone master and one worker; yields ``spark://127.0.0.1:PORT``."""
    home = spark_home()
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    master = f"spark://127.0.0.1:{port}"
    env = loopback_env(SPARK_HOME=home, SPARK_NO_DAEMONIZE="1")
    spark_class = os.path.join(home, "bin", "spark-class")
    with tempfile.TemporaryDirectory(prefix="pixelmill-spark-") as logdir:
        group = _Group(logdir)
        try:
            group.start("master", [spark_class, "org.apache.spark.deploy.master.Master",
                                   "--host", "127.0.0.1", "--port", str(port),
                                   "--webui-port", str(ui_port)], env)
            group.start("worker", [spark_class, "org.apache.spark.deploy.worker.Worker", master,
                                   "--host", "127.0.0.1", "--cores", str(cores),
                                   "--memory", memory, "--webui-port", str(worker_ui),
                                   "--work-dir", os.path.join(logdir, "work")], env)

            def ready() -> bool:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
                    state = json.load(r)
                return state.get("aliveworkers", 0) >= 1

            _wait_for(ready, "spark standalone cluster", group, ["master", "worker"])
            yield master
        finally:
            group.kill_all()
