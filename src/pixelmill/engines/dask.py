"""The Dask engine: run work units on a ``dask.distributed`` cluster.

``DaskEngine()`` starts its own :class:`distributed.LocalCluster` (one single-threaded worker
process per core, bound to 127.0.0.1, no dashboard) and closes it on :meth:`close`;
``DaskEngine("tcp://HOST:8786")`` connects to an existing scheduler and leaves it running: the
address is checked first (:func:`check_address`: a scheme ``distributed`` knows, a port), then
probed with a plain TCP connection and asked who it is under a deadline, so a scheduler that is
not there (or a port that is something else) fails in seconds with an
:class:`~pixelmill.engines.EngineUnavailableError` rather than after Dask's 30 s timeout (or
never: Dask waits forever for a silent peer's handshake).
``workers`` is then the cluster's worker threads (at most ``workers`` when given).
When the process already has a default ``distributed.Client`` (a notebook's ``Client()``),
``DaskEngine()`` uses it as is and leaves it open on :meth:`close`, as the Spark engine does
with an active SparkSession.

Small units are batched into one task each (:func:`~pixelmill.engines.plan_batches`);
results are yielded as tasks complete. A worker process that dies is restarted by its nanny
and the scheduler runs its tasks again elsewhere, up to ``distributed.scheduler.allowed-failures``
times (``retries`` for a cluster the engine starts); a batch that still fails is split and its
units retried one by one, so only the unit that kills its worker becomes a :class:`UnitFailure`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pixelmill.engines import (
    CONNECT_TIMEOUT,
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

__all__ = ["LOCAL_CLUSTER_CONFIG", "DaskEngine", "check_address", "run_batch"]

#: address schemes whose location is HOST:PORT over TCP, probed before connecting
_TCP_SCHEMES = ("tcp", "tls", "ws", "wss")

#: Dask settings for the cluster the engine starts: one task per worker thread at a time (a dying
#: worker takes no bystanders with it), no statistical profiler, slower housekeeping ticks.
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2000ms",
    "distributed.worker.memory.monitor-interval": "1000ms",
}


#: seconds the driver waits for workers to say how long their units have run
_ASK_TIMEOUT = 5.0
_ASK_POOL = ThreadPoolExecutor(1, thread_name_prefix="pixelmill-dask-ask")

#: in a worker process: the key of each task running a unit under a timeout -> when that unit
#: began (``time.monotonic()``), read by :func:`_unit_ages` for the driver
_UNIT_BEGAN: dict[str, float] = {}


def run_batch(fn: Callable[[Any], Any], units: list[Any],
              timeout: float | None = None) -> list[Any]:
    """The task each worker runs: ``fn`` over a batch of units.

    With ``timeout``, ``fn`` is warmed up first (once per worker process) and each unit's own
    clock is kept where the driver can ask for it (:func:`_unit_ages`), so a task's unpickling
    and warm-up are not its unit's time; a unit that comes back after ``timeout`` seconds is
    timed out all the same, as on the other engines.
    """
    if not timeout:
        return [fn(u) for u in units]
    key = None
    with contextlib.suppress(Exception):
        from distributed import get_worker

        key = get_worker().get_current_task()
    warm_up_once(fn)
    results = []
    try:
        for u in units:
            began = time.monotonic()
            if key is not None:
                _UNIT_BEGAN[key] = began
            with unit_clock(timeout):  # a unit past it writes no output (a remote worker's
                result = fn(u)          # thread is not stopped: it would, after its row)
            if time.monotonic() - began > timeout:
                result = UnitFailure(f"timed out after {timeout:g} s", "timeout")
            results.append(result)
    finally:
        if key is not None:
            _UNIT_BEGAN.pop(key, None)
    return results


def _unit_ages(keys: list[str]) -> dict[str, float]:
    """In a worker process: seconds the unit of each of these running tasks has run so far
    (a task not in it is still unpickling its function or warming up)."""
    now = time.monotonic()
    return {k: now - t for k, t in list(_UNIT_BEGAN.items()) if k in keys}


def check_address(address: str) -> tuple[str, str | None, int | None]:
    """``(scheme, host, port)`` of a scheduler address (host and port None for non-TCP schemes).

    A scheme ``distributed`` has no backend for, or a TCP address without a port, is an
    :class:`~pixelmill.errors.InvalidParameterError` naming ``--engine`` and the valid forms.
    """
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import backends, get_backend
    except ImportError as e:  # pragma: no cover - depends on the install
        raise MissingDependencyError("distributed", "dask") from e
    field = f"--engine dask={address}"
    example = "e.g. tcp://HOST:8786"
    try:
        scheme, location = parse_address(address, strict=False)
    except ValueError as e:
        raise InvalidParameterError(f"{field}: not a scheduler address ({e}; {example})",
                                    field="engine") from None
    try:
        get_backend(scheme)
    except (ValueError, ImportError):
        raise InvalidParameterError(
            f"{field}: unknown address scheme {scheme!r} (valid: "
            f"{', '.join(s + '://' for s in sorted(backends))}; {example})",
            field="engine") from None
    if scheme not in _TCP_SCHEMES:
        return scheme, None, None
    try:
        host, port = parse_host_port(location)
    except ValueError:
        host, port = "", 0
    if not host or not 0 < port < 65536:
        raise InvalidParameterError(
            f"{field}: expected {scheme}://HOST:PORT (the scheduler's host and port, {example})",
            field="engine")
    return scheme, host, port


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__


def _identify(address: str, timeout: float) -> str | None:
    """Why ``address`` is not a Dask scheduler answering within ``timeout`` s, or None if it is.

    Runs on its own daemon thread and event loop (the caller may be inside a running loop, a
    notebook); a peer that never answers leaves at worst a parked daemon thread behind.
    """
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def ask() -> Any:
        comm = await connect(address, timeout=timeout,
                             **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["reply"] = asyncio.run(asyncio.wait_for(ask(), timeout))
        except BaseException as e:  # reported to the caller below
            outcome["error"] = e

    thread = threading.Thread(target=run, name="pixelmill-dask-identify", daemon=True)
    thread.start()
    thread.join(timeout + 2)
    error, reply = outcome.get("error"), outcome.get("reply")
    if not outcome or isinstance(error, TimeoutError):
        return f"no Dask scheduler answered within {timeout:g} s"
    if isinstance(error, OSError):  # refused, reset, closed, TLS failures
        return f"cannot connect to the Dask scheduler ({_first_line(error)})"
    if error is not None:  # something answered, but not in Dask's protocol
        return f"not a Dask scheduler (its reply could not be read: {_first_line(error)})"
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        return f"not a Dask scheduler (it answered as {kind or 'something else'})"
    return None


def _default_client() -> Any:
    """The process's default ``distributed.Client`` (a notebook's ``Client()``), when one is
    running and synchronous; else None."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return None
    if getattr(client, "status", None) != "running" or getattr(client, "asynchronous", False):
        return None
    return client


def _release_closed_servers() -> None:
    """Let the scheduler of a closed local cluster be freed: ``distributed.core`` caches, with
    no bound, a fact about every handler it was given (bound methods of the scheduler), which
    kept each closed scheduler, its state and its log handler alive for good (one per job in a
    long-lived process). Clearing that cache costs a signature lookup per handler later."""
    with contextlib.suppress(Exception):
        from distributed import core

        core._expects_comm.cache_clear()


class DaskEngine:
    """Run units on a Dask cluster (an existing one at ``address``, or a local one it owns)."""

    name = "dask"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 retries: int = 1) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as e:  # pragma: no cover - depends on the install
            raise MissingDependencyError("distributed", "dask") from e
        self.address = address
        self._cluster = None
        self._client = None
        self._borrowed = False  #: the process's own default client: used, never closed here
        self._environ: dict[str, str | None] = {}
        current = None if address else _default_client()
        if address or current is not None:
            if current is not None:
                self._client, self._borrowed = current, True
            else:
                self._client = self._connect(Client, address)
            # the worker threads the cluster has: what map() can run at once (a scheduler
            # whose workers have not joined yet keeps the number asked for)
            slots = sum(self._client.nthreads().values())
            self.workers = min(workers or slots, slots) if slots else workers or 1
        else:
            from pixelmill.engines.local import WORKER_ENV

            self.workers = workers or default_workers()
            # glibc reads its malloc settings at process start: they must be set before spawn
            pre_spawn = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            # the nannies run in this process and set their pre-spawn variables in its
            # os.environ (OMP_NUM_THREADS=1, ...) for good: put back when they are started
            # and again on close (a nanny restarting a worker sets them again)
            self._environ = saved_environ({*pre_spawn, *WORKER_ENV, "PYTHONHASHSEED"})
            try:
                with dask.config.set(LOCAL_CLUSTER_CONFIG | {
                        "distributed.scheduler.allowed-failures": retries,
                        "distributed.nanny.pre-spawn-environ": pre_spawn | WORKER_ENV}):
                    # the scheduler always serves HTTP (/health, /metrics): on a free loopback
                    # port, not the fixed 8787 that a second cluster here would collide on
                    self._cluster = LocalCluster(
                        n_workers=self.workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=50,
                    )
            finally:
                restore_environ(self._environ)
            self._client = Client(self._cluster, set_as_default=False)

    @staticmethod
    def _connect(client_class: Any, address: str) -> Any:
        """A client of the scheduler at ``address``, or a one-line error within seconds."""
        _, host, port = check_address(address)
        field = f"--engine dask={address}"
        reason = probe(host, port) if host is not None else None
        if reason:
            raise EngineUnavailableError(f"{field}: cannot reach the Dask scheduler ({reason})")
        # Dask waits forever for the handshake of a peer that accepts and stays silent: ask the
        # scheduler who it is, under a deadline, before a Client is made
        reason = _identify(address, CONNECT_TIMEOUT)
        if reason:
            raise EngineUnavailableError(f"{field}: {reason}")
        try:
            return client_class(address, set_as_default=False, timeout=2 * CONNECT_TIMEOUT)
        except Exception as e:
            raise EngineUnavailableError(
                f"{field}: cannot connect to the Dask scheduler ({_first_line(e)})") from e

    @property
    def client(self):
        """The ``distributed.Client`` (for native Dask work on the same cluster)."""
        return self._client

    def close(self) -> None:
        if self._client is not None and not self._borrowed:
            self._client.close()
        self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
            restore_environ(self._environ)
            _release_closed_servers()

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(
        self,
        fn: Callable[[Any], Any],
        units: Iterable[Any],
        *,
        timeout: float | None = None,
        batch_size: int | None = None,
    ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        units = list(units)
        if not units:
            return
        client = self._client
        batches = plan_batches(len(units), self.workers, batch_size, timeout=timeout)
        futures: dict[Any, list[int]] = {}
        started: dict[Any, float] = {}
        queue = list(reversed(batches))
        # with a timeout, hold back work so a submitted task is a running task; a unit's clock
        # starts when the scheduler has it processing on a worker (see _finished)
        limit = self.workers if timeout else len(batches)
        done = as_completed(loop=client.loop)

        def submit() -> None:
            while queue and len(futures) < limit:
                batch = queue.pop()
                fut = client.submit(run_batch, fn, [units[i] for i in batch], timeout,
                                    pure=False)
                futures[fut] = batch
                done.add(fut)

        remaining = len(units)
        try:
            submit()
            while remaining:
                finished, late = self._finished(done, futures, started, timeout)
                for fut in late:
                    for i in futures.pop(fut):
                        remaining -= 1
                        yield i, UnitFailure(f"timed out after {timeout:g} s", "timeout")
                for fut in finished:
                    batch = futures.pop(fut, None)
                    started.pop(fut, None)
                    if batch is None:  # a timed-out future, finished as cancelled
                        continue
                    try:
                        results = fut.result()
                    except KilledWorker as e:
                        if len(batch) > 1:  # find the unit that kills its worker
                            queue.extend([i] for i in reversed(batch))
                            continue
                        remaining -= 1
                        attempts = getattr(e, "allowed_failures", None)
                        yield batch[0], UnitFailure(
                            crash_reason(None if attempts is None else attempts + 1), "crash")
                        continue
                    for i, res in zip(batch, results, strict=True):
                        remaining -= 1
                        yield i, res
                submit()
        finally:
            if futures:  # cancelled early or failed: stop what is still queued or running
                client.cancel(list(futures), force=True)

    def _finished(self, done: Any, futures: dict, started: dict,
                  timeout: float | None) -> tuple[list, list]:
        """Finished futures, and (with a timeout) those past their deadline, cancelled here."""
        if not timeout:
            return done.next_batch(block=True), []
        while True:
            if done.has_ready():
                return done.next_batch(block=False), []
            now = time.monotonic()
            processing = self._client.processing()
            where = {key: addr for addr, keys in processing.items() for key in keys}
            for f in futures:
                if f.key in where:
                    started.setdefault(f, now)
                else:  # queued, or back in the queue after its worker died
                    started.pop(f, None)
            late = [f for f, t0 in started.items() if now - t0 > timeout]
            if late:  # past the deadline on the driver's clock: ask the workers for theirs
                late = self._confirm_late(late, where, started, now, timeout)
            if late:
                busy = sorted({where[f.key] for f in late})
                for f in late:
                    f.cancel(force=True)
                    started.pop(f)
                if self._cluster is not None:  # kill the stuck worker processes
                    # (their pids from the scheduler: a stuck worker may not answer itself)
                    info = self._client.scheduler_info().get("workers", {})
                    for addr in busy:  # their nannies start fresh ones
                        pid = info.get(addr, {}).get("pid")
                        if isinstance(pid, int):
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
                return [], late
            time.sleep(0.1)

    def _confirm_late(self, late: list, where: dict, started: dict, now: float,
                      timeout: float) -> list:
        """Of the futures that have been processing longer than ``timeout``, those whose unit
        has itself run longer. The driver's clock starts when the scheduler hands a task to a
        worker; the worker then unpickles ``fn`` (its imports, a model) and warms it up before
        the unit begins (:func:`run_batch`): the others get their clocks set to their unit's
        start, or restarted when their unit has not begun yet."""
        busy = sorted({where[f.key] for f in late})
        asked = _ASK_POOL.submit(self._client.run, _unit_ages, [f.key for f in late],
                                 workers=busy, on_error="return")
        try:  # a worker whose unit holds the GIL in native code cannot answer
            replies = asked.result(timeout=_ASK_TIMEOUT)
        except Exception:  # cannot ask: the driver's clock decides
            return late
        ages: dict = {}
        for reply in replies.values():
            if isinstance(reply, dict):
                ages.update(reply)
        really = []
        for f in late:
            age = ages.get(f.key)
            if age is not None and age > timeout:
                really.append(f)
            else:
                started[f] = now - (age or 0.0)
        return really
