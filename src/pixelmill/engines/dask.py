"""The Dask engine: run work units on a ``dask.distributed`` cluster.

``DaskEngine()`` starts its own :class:`distributed.LocalCluster` (one single-threaded worker
process per core, bound to 127.0.0.1, no dashboard) and closes it on :meth:`close`;
``DaskEngine("tcp://HOST:8786")`` connects to an existing scheduler and leaves it running.

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
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pixelmill.engines import UnitFailure, default_workers, plan_batches
from pixelmill.errors import MissingDependencyError

__all__ = ["LOCAL_CLUSTER_CONFIG", "DaskEngine", "run_batch"]

#: Dask settings for the cluster the engine starts: one task per worker thread at a time (a dying
#: worker takes no bystanders with it), no statistical profiler, slower housekeeping ticks.
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2000ms",
    "distributed.worker.memory.monitor-interval": "1000ms",
}


def run_batch(fn: Callable[[Any], Any], units: list[Any]) -> list[Any]:
    """The task each worker runs: ``fn`` over a batch of units."""
    return [fn(u) for u in units]


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
        if address:
            self._client = Client(address, set_as_default=False)
            self.workers = workers or max(1, sum(
                w.get("nthreads", 1) for w in self._client.scheduler_info()["workers"].values()))
        else:
            from pixelmill.engines.local import WORKER_ENV

            self.workers = workers or default_workers()
            # glibc reads its malloc settings at process start: they must be set before spawn
            pre_spawn = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            with dask.config.set(LOCAL_CLUSTER_CONFIG | {
                    "distributed.scheduler.allowed-failures": retries,
                    "distributed.nanny.pre-spawn-environ": pre_spawn | WORKER_ENV}):
                # the scheduler always serves HTTP (/health, /metrics): on a free loopback port,
                # not the fixed 8787 that a second cluster on this machine would collide on
                self._cluster = LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=50,
                )
            self._client = Client(self._cluster, set_as_default=False)

    @property
    def client(self):
        """The ``distributed.Client`` (for native Dask work on the same cluster)."""
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

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
                fut = client.submit(run_batch, fn, [units[i] for i in batch], pure=False)
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
                        why = "worker process died while running it"
                        attempts = getattr(e, "allowed_failures", None)
                        if attempts is not None:
                            why += f" ({attempts + 1} attempts)"
                        yield batch[0], UnitFailure(why, "crash")
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
            if late:
                busy = sorted({where[f.key] for f in late})
                for f in late:
                    f.cancel(force=True)
                    started.pop(f)
                if self._cluster is not None:  # kill the stuck worker processes
                    pids = self._client.run(os.getpid, workers=busy, on_error="return")
                    for pid in pids.values():  # their nannies start fresh ones
                        if isinstance(pid, int):
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
                return [], late
            time.sleep(0.1)
