"""The Spark engine: run work units as tasks of an Apache Spark application.

``SparkEngine()`` runs Spark in local mode (``local[workers,retries+1]``) with the driver bound to
127.0.0.1 and the web UI off; ``SparkEngine("spark://HOST:7077")`` joins a standalone cluster
(``yarn``, ``k8s://…`` work the same way). When a SparkSession is already active in the process
(a notebook, ``spark-submit``) the engine uses it and leaves it running on :meth:`close`.

A master URL is checked before anything starts (:func:`check_master`: a form Spark parses, else
an :class:`~pixelmill.errors.InvalidParameterError`); the host:port of a ``spark://`` (or
``k8s://``) master is probed with a plain TCP connection, so a master that is not there fails in
seconds, and any other failure to start Spark becomes one
:class:`~pixelmill.engines.EngineUnavailableError` line rather than a Java stack trace.

The units are put once into an RDD with one partition per batch
(:func:`~pixelmill.engines.plan_batches`); each partition then runs as its own small Spark job
from a driver thread, so results stream back as partitions finish and a job can be cancelled on
its own (timeouts, closing the iterator early). ``fn`` is shipped with Spark's cloudpickle. A
Python worker or executor that dies fails its task, which Spark retries up to
``spark.task.maxFailures`` times; a batch that still fails is split and its units retried one by
one, so only the unit that kills its worker becomes a :class:`UnitFailure`. An exception raised by
``fn`` is returned from the task (no pointless retries) and re-raised here with its type.

With a ``timeout`` the clock runs in the Python worker, around each unit (:class:`_UnitClock`):
it starts after the worker's start-up (unpickling ``fn``: imports, models) and after ``fn``'s
``warm_up()`` (once per worker process, as on the local engine), and a unit still running when
it runs out is stopped there and returned as a :class:`UnitFailure` ``timed out after S s`` —
the row the other engines give. The driver cannot see when a task's unit begins (Spark reports
active tasks late, or never for a CPU-bound one), so its own deadline is only a backstop for a
unit the worker cannot stop (stuck in native code): ``START_GRACE`` seconds more.
"""

from __future__ import annotations

import os
import re
import signal
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

from pixelmill.engines import (
    EngineUnavailableError,
    UnitFailure,
    crash_reason,
    default_workers,
    plan_batches,
    probe,
    restore_environ,
    saved_environ,
    unit_clock,
    warm_up_once,
)
from pixelmill.errors import InvalidParameterError, MissingDependencyError

__all__ = ["LOCAL_JVM_OPTIONS", "MASTER_FORMS", "SparkEngine", "check_master", "run_partition"]

#: JVM options in local mode: the JVM only moves small units and rows there, so a quick JIT and
#: a single-threaded GC leave the cores to the Python workers (3-4x less JVM CPU time)
LOCAL_JVM_OPTIONS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
#: seconds a task may take to start (a Python worker, ``fn``'s unpickling and warm-up) before
#: the driver gives up on a unit whose own clock the worker could not stop
START_GRACE = 60.0

#: most units a Spark batch (a job of its own) holds when map() chooses (see map)
SPARK_BATCH_CAP = 128
#: the master URLs Spark 4 parses (Mesos support was removed in Spark 4.0)
MASTER_FORMS = ("local", "local[N]", "local[*]", "local[N,F]", "local-cluster[N,C,M]",
                "spark://HOST:PORT[,HOST:PORT...]", "yarn", "k8s://[https://]HOST[:PORT]")
_LOCAL_MASTER = re.compile(r"local|local\[([0-9]+|\*)\]|local\[([0-9]+|\*)\s*,\s*([0-9]+)\]"
                           r"|local-cluster\[\s*([0-9]+)\s*,\s*([0-9]+)\s*,\s*([0-9]+)\s*\]")
#: environment variables a session of the engine's own sets in this process (pixelmill for a
#: local master; pyspark's SparkContext for its sockets), put back when it is stopped
_SESSION_ENVIRON = ("SPARK_LOCAL_IP", "PYSPARK_PYTHON", "SPARK_AUTH_SOCKET_TIMEOUT",
                    "SPARK_BUFFER_SIZE")

_LOOPBACK = re.compile(r"^(local(\[.*\])?|local-cluster\[.*\]|spark://(127\.0\.0\.1|localhost):\d+)$")


class _UnitTimedOut(BaseException):
    """Raised in a Spark task's Python worker when its unit runs out of time: a BaseException,
    so that the job function's own ``except Exception`` does not turn it into another row."""


def _timed_out(timeout: float) -> UnitFailure:
    return UnitFailure(f"timed out after {timeout:g} s", "timeout")


class _UnitClock:
    """Runs units in a Python worker, each stopped after ``timeout`` seconds of its own.

    In the worker's main thread (where PySpark runs tasks) a real-time interval timer raises
    :class:`_UnitTimedOut` in the unit when it runs out: a ``sleep`` or a Python loop stops at
    once, a native call (a filter in OpenCV) when it returns to Python. A unit that still comes
    back after its deadline (the timer is not available, or its exception was swallowed) is
    timed out all the same, so the row depends on the unit's run time only.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.armed = False
        self.alarm = (hasattr(signal, "setitimer") and timeout <= threading.TIMEOUT_MAX
                      and threading.current_thread() is threading.main_thread())
        self._previous: Any = None

    def __enter__(self) -> _UnitClock:
        if self.alarm:
            self._previous = signal.signal(signal.SIGALRM, self._expire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            # None: a handler set outside Python, which cannot be put back from here
            signal.signal(signal.SIGALRM,
                          signal.SIG_DFL if self._previous is None else self._previous)

    def _expire(self, signum: int, frame: Any) -> None:
        if self.armed:  # a late signal, after the unit returned, is ignored
            self.armed = False
            raise _UnitTimedOut

    def run(self, fn: Callable[[Any], Any], unit: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        try:
            try:
                self.armed = True
                if self.alarm:
                    signal.setitimer(signal.ITIMER_REAL, self.timeout)
                with unit_clock(self.timeout):  # past it, the unit writes no output
                    result = fn(unit)
            finally:
                self.armed = False
                if self.alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _UnitTimedOut:
            return _timed_out(self.timeout)
        if time.monotonic() >= deadline:
            return _timed_out(self.timeout)
        return result


def run_partition(fn: Callable[[Any], Any], batches: Iterator[list[Any]],
                  timeout: float | None = None) -> Iterator[Any]:
    """The task each partition runs: ``("ok", results)`` or ``("error", exception, traceback)``.

    With ``timeout``, ``fn`` is warmed up first and each unit that runs longer than ``timeout``
    seconds is stopped and returned as a :class:`UnitFailure` (see :class:`_UnitClock`).
    """
    for units in batches:
        try:
            if timeout:
                warm_up_once(fn)
                with _UnitClock(timeout) as clock:
                    results = [clock.run(fn, u) for u in units]
            else:
                results = [fn(u) for u in units]
            yield ("ok", results)
        except Exception as e:
            from pixelmill.engines.local import RemoteError

            tb = traceback.format_exc()
            try:
                import cloudpickle

                cloudpickle.dumps(e)
            except Exception:
                e = RemoteError(f"{type(e).__name__}: {e}")
            yield ("error", e, tb)


def _host_port(text: str, default_port: int | None = None) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` too), or None when it is not one."""
    host, colon, port = text.rpartition(":")
    if not colon or "]" in port:  # no port at all (a bare host, or a bracketed IPv6 address)
        host, port = text, ""
    host = host.strip("[]")
    if not port:
        port = str(default_port or "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        return None
    return host, int(port)


def check_master(master: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs to probe for a Spark master URL (none for local modes, yarn).

    A URL of no form Spark parses (see :data:`MASTER_FORMS`) is an
    :class:`~pixelmill.errors.InvalidParameterError` naming ``--engine`` and the valid forms.
    """
    field = f"--engine spark={master}"
    forms = f"valid: {', '.join(MASTER_FORMS)}"
    found = _LOCAL_MASTER.fullmatch(master)
    if found:
        counts = [g for g in found.groups() if g is not None and g != "*"]
        if any(int(n) < 1 for n in counts):
            raise InvalidParameterError(f"{field}: thread, failure and worker counts must be "
                                        f">= 1 ({forms})", field="engine")
        return []
    if master == "yarn":
        return []
    scheme, sep, rest = master.partition("://")
    if sep and scheme == "spark":
        hosts = [_host_port(h.strip()) for h in rest.split(",")]
        if hosts and all(hosts):
            return hosts
        raise InvalidParameterError(
            f"{field}: expected spark://HOST:PORT, or spark://HOST1:PORT1,HOST2:PORT2 for "
            "masters with standby (the port is usually 7077)", field="engine")
    if sep and scheme == "k8s":
        api = rest.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        default = 80 if rest.startswith("http://") else 443
        hosts = [_host_port(api, default)]
        if hosts[0]:
            return hosts
        raise InvalidParameterError(
            f"{field}: expected k8s://[https://]HOST[:PORT] (the Kubernetes API server)",
            field="engine")
    if sep and scheme == "mesos":
        raise InvalidParameterError(f"{field}: Spark 4 no longer runs on Mesos ({forms})",
                                    field="engine")
    raise InvalidParameterError(f"{field}: not a Spark master URL ({forms})", field="engine")


def _start_error(err: BaseException) -> str:
    """The first meaningful line of an error raised while Spark starts (no Java stack)."""
    java = getattr(err, "java_exception", None)
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:
            text = str(err)
    else:
        text = str(err)
    for line in text.splitlines():
        line = line.strip().lstrip(":").strip()
        if not line or line.startswith("at ") or line.startswith("An error occurred while"):
            continue
        # "org.apache.spark.SparkException: Could not parse ..." -> "Could not parse ..."
        return re.sub(r"^(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error): ", "", line)[:300]
    return type(err).__name__


def _crash_reason(err: BaseException) -> str:
    """A short reason from a failed Spark job's (very long) Java error text."""
    text = str(err)
    found = re.search(r"failed (\d+) times", text)
    attempts = int(found.group(1)) if found else None
    if "Python worker exited unexpectedly" in text:  # the words of the other engines
        return crash_reason(attempts)
    tries = f" ({attempts} attempts)" if found else ""
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
        given = master
        field = f"--engine spark={given}" if given else "--engine spark"
        targets = check_master(master) if master else []
        active = SparkSession.getActiveSession()
        self._owned = active is None
        #: what starting a session of our own changes in this process, put back on close():
        #: variables set here and by pyspark, and pyspark's SIGINT handler (which holds the
        #: stopped context and cancels its jobs, a failure, on every later Ctrl-C)
        self._environ = saved_environ(_SESSION_ENVIRON) if self._owned else {}
        self._sigint: Any = None
        self._spark_sigint: Any = None
        if active is not None:
            self.session = active
        else:
            if targets:  # a standalone master (any of a standby list) or a k8s API server
                reasons = [probe(host, port) for host, port in targets]
                if all(reasons):
                    why = (reasons[0] if len(targets) == 1 else "; ".join(
                        f"{h}:{p}: {r}" for (h, p), r in zip(targets, reasons, strict=True)))
                    what = "Kubernetes API server" if master.startswith("k8s") else "Spark master"
                    raise EngineUnavailableError(f"{field}: cannot reach the {what} ({why})")
            if master == "yarn" and not (os.environ.get("HADOOP_CONF_DIR")
                                         or os.environ.get("YARN_CONF_DIR")):
                raise EngineUnavailableError(  # spark-submit would say so with a Java stack
                    f"{field}: set HADOOP_CONF_DIR or YARN_CONF_DIR to the folder holding the "
                    "YARN cluster's configuration")
            n = workers or default_workers()
            if not master:
                master = f"local[{n},{retries + 1}]"
            elif re.fullmatch(r"local\[(\d+|\*)\]", master):  # local mode only retries this way
                master = f"{master[:-1]},{retries + 1}]"
            builder = (SparkSession.builder.master(master).appName("pixelmill")
                       .config("spark.log.level", log_level)  # also while the context starts
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
                main = threading.current_thread() is threading.main_thread()
                self._sigint = signal.getsignal(signal.SIGINT) if main else None
                try:
                    self.session = builder.getOrCreate()
                except Exception as e:
                    self._restore()
                    raise EngineUnavailableError(
                        f"{field}: Spark could not start ({_start_error(e)})") from e
                if main and signal.getsignal(signal.SIGINT) is not self._sigint:
                    self._spark_sigint = signal.getsignal(signal.SIGINT)
            self.session.sparkContext.setLogLevel(log_level)
        self.sc = self.session.sparkContext
        self.master = self.sc.master
        # the task slots Spark reports: what map() can run at once. Exact in local mode; a
        # cluster's executors may still be registering, so there an asked number is kept
        slots = max(1, self.sc.defaultParallelism)
        if workers and re.match(r"local(\[|$)", self.master):
            workers = min(workers, slots)
        self.workers = workers or slots

    def close(self) -> None:
        if self._owned and self.session is not None:
            self.session.stop()
            self._restore()
        self.session = None

    def _restore(self) -> None:
        """Put back what starting our own session changed in this process (see __init__)."""
        restore_environ(self._environ)
        self._environ = {}
        if (self._spark_sigint is not None and self._sigint is not None
                and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is self._spark_sigint):  # not set since
            signal.signal(signal.SIGINT, self._sigint)
        self._spark_sigint = None

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        # a Spark job costs ~50 ms of driver time: fewer, larger batches than other engines;
        # with a timeout too, since each unit's clock runs in the worker (one job per unit made
        # a --timeout job of 600 tiny images 3.5x slower: 28.8 s against 8.4 s). Up to 128
        # units a batch, and a tail that stops shrinking at a quarter of that: the thumbnail job
        # of 2,000 photos ran 45 jobs with batches of 64 shrinking to 1, 21 now (277 -> 307
        # images/s, interleaved runs on 2 cores)
        batches = plan_batches(len(units), self.workers, batch_size, per_worker_tasks=4,
                               cap=SPARK_BATCH_CAP, tail_floor=4)
        tag = f"pixelmill-{uuid.uuid4().hex[:12]}"
        task = partial(run_partition, fn, timeout=timeout)  # the units' clocks run in the task
        rdd = (self.sc.parallelize([[units[i] for i in b] for b in batches], len(batches))
               .mapPartitions(task))
        queue: list[tuple[Any, int, list[int]]] = [(rdd, k, b) for k, b in enumerate(batches)]
        queue.reverse()
        # with a timeout, one job per slot, so a submitted job is a running job
        pool = ThreadPoolExecutor(max_workers=self.workers if timeout else 2 * self.workers)
        running: dict[Future, tuple[str, list[int]]] = {}
        submitted: dict[str, float] = {}
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
                    submitted[group] = time.monotonic()
                finished, _ = wait(list(running), timeout=0.1 if timeout else None,
                                   return_when=FIRST_COMPLETED)
                if timeout and not finished:  # the worker times units out; this is a backstop
                    now = time.monotonic()
                    for fut, (group, batch) in list(running.items()):
                        if now - submitted[group] >= START_GRACE + timeout * len(batch):
                            self.sc.cancelJobGroup(group)
                            del running[fut]
                            if len(batch) > 1:  # which unit is stuck: each on its own
                                queue.extend(_singles(self.sc, units, batch, task))
                                continue
                            remaining -= 1
                            yield batch[0], _timed_out(timeout)
                    continue
                for fut in finished:
                    group, batch = running.pop(fut)
                    try:
                        [reply] = fut.result()
                    except Exception as e:  # the task failed maxFailures times: a worker died
                        if len(batch) > 1:
                            queue.extend(_singles(self.sc, units, batch, task))
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


def _singles(sc: Any, units: list[Any], batch: list[int], task: Any
             ) -> list[tuple[Any, int, list[int]]]:
    """The queue entries that run each unit of ``batch`` as a batch of its own (in order)."""
    single = sc.parallelize([[units[i]] for i in batch], len(batch)).mapPartitions(task)
    return [(single, k, [i]) for k, i in reversed(list(enumerate(batch)))]


class _Cancelled(Exception):
    """A batch not started because the map was closed."""


def _identity(rows: Iterator[Any]) -> Iterator[Any]:
    return rows
