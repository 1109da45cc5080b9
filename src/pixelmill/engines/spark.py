"""The Spark engine: run work units as tasks of an Apache Spark application.

``SparkEngine()`` runs Spark in local mode (``local[workers,retries+1]``) with the driver bound to
127.0.0.1 and the web UI off; ``SparkEngine("spark://HOST:7077")`` joins a standalone cluster
(``yarn``, ``k8s://…`` work the same way). When a SparkSession is already active in the process
(a notebook, ``spark-submit``) the engine uses it and leaves it running on :meth:`close`.

The units are put once into an RDD with one partition per batch
(:func:`~pixelmill.engines.plan_batches`); each partition then runs as its own small Spark job
from a driver thread, so results stream back as partitions finish and a job can be cancelled on
its own (timeouts, closing the iterator early). ``fn`` is shipped with Spark's cloudpickle. A
Python worker or executor that dies fails its task, which Spark retries up to
``spark.task.maxFailures`` times; a batch that still fails is split and its units retried one by
one, so only the unit that kills its worker becomes a :class:`UnitFailure`. An exception raised by
``fn`` is returned from the task (no pointless retries) and re-raised here with its type.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any

from pixelmill.engines import UnitFailure, default_workers, plan_batches
from pixelmill.errors import MissingDependencyError

__all__ = ["LOCAL_JVM_OPTIONS", "SparkEngine", "run_partition"]

#: JVM options in local mode: the JVM only moves small units and rows there, so a quick JIT and
#: a single-threaded GC leave the cores to the Python workers (3-4x less JVM CPU time)
LOCAL_JVM_OPTIONS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
_LOOPBACK = re.compile(r"^(local(\[.*\])?|local-cluster\[.*\]|spark://(127\.0\.0\.1|localhost):\d+)$")


def run_partition(fn: Callable[[Any], Any], batches: Iterator[list[Any]]) -> Iterator[Any]:
    """The task each partition runs: ``("ok", results)`` or ``("error", exception, traceback)``."""
    for units in batches:
        try:
            yield ("ok", [fn(u) for u in units])
        except Exception as e:
            from pixelmill.engines.local import RemoteError

            tb = traceback.format_exc()
            try:
                import cloudpickle

                cloudpickle.dumps(e)
            except Exception:
                e = RemoteError(f"{type(e).__name__}: {e}")
            yield ("error", e, tb)


def _crash_reason(err: BaseException) -> str:
    """A short reason from a failed Spark job's (very long) Java error text."""
    text = str(err)
    found = re.search(r"failed (\d+) times", text)
    tries = f" ({found.group(1)} attempts)" if found else ""
    if "Python worker exited unexpectedly" in text:
        return "Python worker exited unexpectedly (crashed)" + tries
    found = re.search(r"most recent failure: ([^\n]{0,200})", text)
    return (found.group(1) if found else text.strip().splitlines()[0][:200]) + tries


class SparkEngine:
    """Run units as Spark tasks (local mode by default, or on the cluster at ``master``)."""

    name = "spark"

    def __init__(self, master: str | None = None, workers: int | None = None, retries: int = 1,
                 conf: dict[str, str] | None = None, log_level: str = "FATAL") -> None:
        try:
            from pyspark.sql import SparkSession
        except ImportError as e:  # pragma: no cover - depends on the install
            raise MissingDependencyError("pyspark", "spark") from e
        active = SparkSession.getActiveSession()
        self._owned = active is None
        if active is not None:
            self.session = active
        else:
            n = workers or default_workers()
            if not master:
                master = f"local[{n},{retries + 1}]"
            elif re.fullmatch(r"local\[(\d+|\*)\]", master):  # local mode only retries this way
                master = f"{master[:-1]},{retries + 1}]"
            builder = (SparkSession.builder.master(master).appName("pixelmill")
                       .config("spark.ui.enabled", "false")
                       .config("spark.ui.showConsoleProgress", "false")
                       .config("spark.task.maxFailures", str(retries + 1))
                       .config("spark.python.worker.reuse", "true")
                       .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
            if _LOOPBACK.match(master):  # everything on this machine: stay on loopback
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers: this Python
                builder = (builder.config("spark.driver.host", "127.0.0.1")
                           .config("spark.driver.bindAddress", "127.0.0.1"))
                if master.startswith("local"):  # workers see the driver's modules
                    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
                    builder = (builder.config("spark.executorEnv.PYTHONPATH", path)
                               .config("spark.driver.extraJavaOptions", LOCAL_JVM_OPTIONS))
            from pixelmill.engines.local import WORKER_ENV

            for key, value in WORKER_ENV.items():  # Python workers keep freed memory
                builder = builder.config(f"spark.executorEnv.{key}", value)
            for key, value in (conf or {}).items():
                builder = builder.config(key, value)
            with warnings.catch_warnings():  # pyspark lags pandas releases; say it once in docs
                warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
                self.session = builder.getOrCreate()
            self.session.sparkContext.setLogLevel(log_level)
        self.sc = self.session.sparkContext
        self.master = self.sc.master
        self.workers = workers or max(1, self.sc.defaultParallelism)

    def close(self) -> None:
        if self._owned and self.session is not None:
            self.session.stop()
        self.session = None

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _task_running(self, group: str) -> bool:
        """Whether a task of the job group ``group`` is running on an executor."""
        tracker = self.sc.statusTracker()
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else ():
                stage = tracker.getStageInfo(stage_id)
                if stage and stage.numActiveTasks > 0:
                    return True
        return False

    def _run_job(self, rdd: Any, partition: int, group: str, stop: threading.Event) -> list[Any]:
        if stop.is_set():
            raise _Cancelled
        self.sc.setJobGroup(group, "pixelmill batch", interruptOnCancel=True)
        return self.sc.runJob(rdd, _identity, [partition])

    def map(
        self,
        fn: Callable[[Any], Any],
        units: Iterable[Any],
        *,
        timeout: float | None = None,
        batch_size: int | None = None,
    ) -> Iterator[tuple[int, Any]]:
        units = list(units)
        if not units:
            return
        # a Spark job costs ~50 ms of driver time: fewer, larger batches than other engines
        batches = plan_batches(len(units), self.workers, batch_size, timeout=timeout,
                               per_worker_tasks=4)
        tag = f"pixelmill-{uuid.uuid4().hex[:12]}"
        rdd = (self.sc.parallelize([[units[i] for i in b] for b in batches], len(batches))
               .mapPartitions(partial(run_partition, fn)))
        queue: list[tuple[Any, int, list[int]]] = [(rdd, k, b) for k, b in enumerate(batches)]
        queue.reverse()
        # with a timeout, one job per slot, so a submitted job is a running job
        pool = ThreadPoolExecutor(max_workers=self.workers if timeout else 2 * self.workers)
        running: dict[Future, tuple[str, list[int]]] = {}
        started: dict[str, float] = {}
        remaining, seq = len(units), 0
        stop = threading.Event()
        try:
            while remaining:
                while queue and len(running) < pool._max_workers:
                    job_rdd, part, batch = queue.pop()
                    seq += 1
                    group = f"{tag}-{seq}"
                    fut = pool.submit(self._run_job, job_rdd, part, group, stop)
                    running[fut] = (group, batch)
                finished, _ = wait(list(running), timeout=0.1 if timeout else None,
                                   return_when=FIRST_COMPLETED)
                if timeout and not finished:  # a unit's clock starts when its task runs
                    now = time.monotonic()
                    for fut, (group, batch) in list(running.items()):
                        if group not in started and self._task_running(group):
                            started[group] = now
                        if now - started.get(group, now) >= timeout:
                            self.sc.cancelJobGroup(group)
                            del running[fut]
                            for i in batch:
                                remaining -= 1
                                yield i, UnitFailure(f"timed out after {timeout:g} s", "timeout")
                    continue
                for fut in finished:
                    group, batch = running.pop(fut)
                    try:
                        [reply] = fut.result()
                    except Exception as e:  # the task failed maxFailures times: a worker died
                        if len(batch) > 1:
                            single = (self.sc.parallelize([[units[i]] for i in batch], len(batch))
                                      .mapPartitions(partial(run_partition, fn)))
                            queue.extend((single, k, [i]) for k, i in reversed(list(enumerate(batch))))
                            continue
                        remaining -= 1
                        yield batch[0], UnitFailure(_crash_reason(e), "crash")
                        continue
                    if reply[0] == "error":
                        _, err, tb = reply
                        err.add_note(f"in a pixelmill Spark task:\n{tb}")
                        raise err
                    for i, res in zip(batch, reply[1], strict=True):
                        remaining -= 1
                        yield i, res
        finally:
            stop.set()  # cancelled early or failed: stop the rest before returning
            pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + 30
            while running and time.monotonic() < deadline:
                for group, _ in running.values():  # a job may start just after a cancel
                    self.sc.cancelJobGroup(group)
                finished, _ = wait(list(running), timeout=0.2)
                for fut in finished:
                    del running[fut]


class _Cancelled(Exception):
    """A batch not started because the map was closed."""


def _identity(rows: Iterator[Any]) -> Iterator[Any]:
    return rows
