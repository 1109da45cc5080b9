"""The local engine: a pool of worker processes on this machine (the default engine).

Unlike ``concurrent.futures.ProcessPoolExecutor``, a worker that dies (segfault, out-of-memory
kill, ``os._exit``) costs only the unit it was running: the driver knows which unit each worker
holds, respawns the worker, retries the units of a dead batch one by one to find the culprit,
and reports that one unit as a :class:`UnitFailure`. A unit that runs past ``timeout`` has its
worker killed and is reported the same way. Workers are started with the ``spawn`` method (no
forked copies of threads) and with glibc told to keep freed memory, since faulting fresh pages
for every decoded image costs milliseconds per image on small VMs.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from pixelmill.engines import UnitFailure, crash_reason, default_workers, plan_batches
from pixelmill.errors import PixelmillError

__all__ = ["LocalEngine", "RemoteError", "keep_freed_memory", "release_memory"]

#: environment of worker processes: glibc keeps freed memory instead of returning it to the OS
#: (a fresh page fault per decoded image costs milliseconds here), and OpenCV runs one thread per
#: worker — the pool is the parallelism; OpenCV's own threads only add contention.
WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "1073741824",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
    "OPENCV_FOR_THREADS_NUM": "1",
}


class RemoteError(Exception):
    """Carries a worker's traceback text for an exception raised by the mapped function."""


_READY = "ready"
_BEGIN = "begin"

#: seconds a worker may take to start and warm up before its first batch's timeout clock runs
START_GRACE = 60.0

#: seconds between a worker's checks that its driver is still alive
_PARENT_POLL_S = 0.2

#: seconds a worker waits for its next batch before it gives the memory glibc keeps for it
#: (``WORKER_ENV``) back to the system: a worker left idle (the end of a job, a long unit on
#: another worker) would otherwise hold the peak of its last batch. Busy workers never wait
#: this long, so the fast path of reusing kept memory stays.
IDLE_RELEASE_S = 1.0


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (None where the C library is not glibc, or cannot be loaded)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # musl and others: no such function
            return None
        import ctypes

        fn = ctypes.CDLL(None).malloc_trim
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
        return fn
    except (AttributeError, OSError, ValueError):
        return None


def release_memory() -> bool:
    """Give the memory this process's C heap keeps free back to the system (glibc
    ``malloc_trim(0)``: every free page, not only the top of the heap). Local workers run with
    glibc told to keep freed memory (``pixelmill.engines.local.WORKER_ENV``), so without this a
    worker stays at the peak of the largest image it ever processed. Never raises; False where
    there is nothing to call."""
    try:
        fn = _malloc_trim()
        if fn is None:
            return False
        fn(0)
        return True
    except Exception:  # pragma: no cover - never fail a unit over this
        return False


#: glibc ``mallopt`` parameters, and its default thresholds (128 KiB each)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD = -1, -3, 128 * 1024


@functools.cache
def _mallopt() -> Any:
    """glibc's ``mallopt`` (None where ``malloc_trim`` is not there: not glibc)."""
    if _malloc_trim() is None:
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None).mallopt
        fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        return fn
    except (AttributeError, OSError, ValueError):  # pragma: no cover - glibc has it
        return None


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Within it, this process's C heap keeps freed memory for its next allocations, as local
    workers' does (:data:`WORKER_ENV`); yields whether that could be set (glibc only).

    For work done in the command's own process that allocates and frees large arrays over and
    over (a network's feature maps, image after image in ``sr eval``, tile after tile in
    ``upscale``): glibc otherwise maps each block over 128 KiB afresh and unmaps it when
    freed, and every page of it faults in again (EDSR on a 1-megapixel image: 1.4 s instead of
    2.0). On exit the memory kept is given back (``malloc_trim``) and glibc's default
    thresholds are set again (fixed at 128 KiB: without the adaptive threshold it starts with)."""
    fn = _mallopt()
    global _kept_depth, _kept
    with _KEPT_LOCK:  # nested or concurrent uses: the first sets it, the last one out restores
        if _kept_depth == 0:
            _kept = bool(fn is not None and fn(_M_MMAP_THRESHOLD, 1 << 30)
                         and fn(_M_TRIM_THRESHOLD, 2**31 - 1))
        _kept_depth += 1
        done = _kept
    try:
        yield done
    finally:
        with _KEPT_LOCK:
            _kept_depth -= 1
            if _kept_depth == 0 and fn is not None:
                fn(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
                fn(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
                release_memory()


_KEPT_LOCK = threading.Lock()
_kept_depth, _kept = 0, False


def _exit_with_parent() -> None:
    """Exit this worker as soon as the driver that started it is gone (killed, crashed): an
    orphan would otherwise go on writing outputs under a job that a resumed run now owns."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="pixelmill-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """A Ctrl-C is held back while a worker is spawned, and neither side prints a traceback.

    The child starts with SIGINT blocked (this thread's mask is inherited through fork and
    exec), so a Ctrl-C that lands while its interpreter imports stays pending there until
    :func:`_worker_main` ignores it (a pending signal set to SIG_IGN is discarded). The driver
    records a Ctrl-C that lands meanwhile (in any of its threads) and raises it again once the
    spawn is complete: interrupted between starting the child and sending it its start-up data,
    the driver left a child that printed an EOFError traceback."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    import threading
    from multiprocessing import resource_tracker

    # started first: its own start-up blocks and then *unblocks* SIGINT around its spawn
    resource_tracker.ensure_running()
    caught: list[int] = []
    swap = threading.current_thread() is threading.main_thread()
    if swap:  # only the main thread may set handlers; it is where Python runs them
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # one held here is recorded now
        if swap:
            signal.signal(signal.SIGINT, previous)
            if caught:  # delivered again, to the handler that was there (KeyboardInterrupt)
                signal.raise_signal(signal.SIGINT)


def _worker_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when to stop
    if hasattr(signal, "pthread_sigmask"):  # blocked by _sigint_held: a pending one is dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with_parent()
    with contextlib.suppress(BrokenPipeError, OSError):
        conn.send(_READY)  # started: a death from now on is the unit's, not the start-up's
    fn_cache: dict[bytes, Callable] = {}
    worked = False  # since the last time it gave its kept memory back
    while True:
        try:
            if worked and not conn.poll(IDLE_RELEASE_S):
                worked = False  # idle: what the last units left is not needed now
                release_memory()
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, fn_blob, units = msg
        try:
            fn = fn_cache.get(fn_blob)
            if fn is None:
                fn = fn_cache[fn_blob] = pickle.loads(fn_blob)  # imports: not the units' time
                warm_up = getattr(fn, "warm_up", None)
                if callable(warm_up):  # a first call's imports and caches: not a unit's time
                    with contextlib.suppress(Exception):
                        warm_up()
            conn.send((_BEGIN, task_id))  # the batch's timeout starts now
            worked = True
            results = [fn(u) for u in units]
            reply = (task_id, True, results)
        except BaseException as e:  # report everything, the driver decides
            tb = traceback.format_exc()
            try:
                pickle.dumps(e)
                err: Any = e
            except Exception:
                err = RemoteError(f"{type(e).__name__}: {e}")
            reply = (task_id, False, (err, tb))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        with _sigint_held():
            self.proc.start()
        child.close()
        #: (task id, unit indices, seconds allowed or None, deadline once begun or None)
        self.task: tuple[int, list[int], float | None, float | None] | None = None
        self.started = False  #: the worker has said it is ready (it got past its imports)
        self.begun = False  #: the worker has begun its current task (its timeout clock runs)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


def _describe_exit(code: int | None) -> str:
    """How the worker ended (``signal SIGKILL``): what only this engine knows of a crash."""
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _start_failure(code: int) -> PixelmillError:
    return PixelmillError(
        f"the local engine's worker processes could not start (exit code {code}; their error "
        "is printed above). Workers are spawned and import the main module: a script that "
        "runs pixelmill jobs needs the `if __name__ == \"__main__\":` guard, and code read "
        "from stdin cannot be imported by them (save it to a file)")


class LocalEngine:
    """Run units on ``workers`` local processes; see the module docstring for the guarantees."""

    name = "local"

    def __init__(self, workers: int | None = None, retries: int = 1) -> None:
        self.workers = workers or default_workers()
        self.retries = retries
        self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []

    # -- pool management -----------------------------------------------------------------
    def _spawn(self) -> _Worker:
        saved = {k: os.environ.get(k) for k in WORKER_ENV}
        os.environ.update({k: v for k, v in WORKER_ENV.items() if saved[k] is None})
        try:
            return _Worker(self._ctx)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)

    def _ensure_pool(self, n: int) -> None:
        # a dead worker that still holds a task stays until map() has seen its death and
        # requeued or failed that task; dropping it here would lose the task (and hang the job)
        self._pool = [w for w in self._pool if w.proc.is_alive() or w.task is not None]
        while len(self._pool) < n:
            self._pool.append(self._spawn())

    def close(self) -> None:
        for w in self._pool:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 5
        for w in self._pool:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            w.kill()
        self._pool = []

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    # -- the protocol ----------------------------------------------------------------------
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
        fn_blob = pickle.dumps(fn)
        pending: deque[list[int]] = deque(
            plan_batches(len(units), self.workers, batch_size, timeout=timeout))
        attempts: dict[int, int] = {}
        remaining = len(units)
        self._ensure_pool(min(self.workers, len(pending)))
        next_task = 0
        try:
            while remaining:
                # hand out work to idle, live workers
                for w in self._pool:
                    if w.task is None and pending and w.proc.is_alive():
                        batch = pending.popleft()
                        allowed = timeout * len(batch) if timeout else None
                        # the clock starts at "begin"; a worker that never gets there (stuck
                        # starting or warming up) is given up after START_GRACE seconds more
                        deadline = (time.monotonic() + START_GRACE + allowed) if allowed else None
                        w.task = (next_task, batch, allowed, deadline)
                        w.begun = False
                        w.conn.send((next_task, fn_blob, [units[i] for i in batch]))
                        next_task += 1
                busy = [w for w in self._pool if w.task is not None]
                deadlines = [w.task[3] for w in busy if w.task[3] is not None]
                wait_for = None
                if deadlines:
                    wait_for = max(0.0, min(deadlines) - time.monotonic())
                ready = wait(
                    [w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=wait_for
                )
                for w in busy:
                    if w.task is None:
                        continue
                    task_id, batch, allowed, deadline = w.task
                    if w.conn in ready:
                        try:
                            msg = w.conn.recv()
                            while msg == _READY or (isinstance(msg, tuple) and len(msg) == 2
                                                    and msg[0] == _BEGIN):
                                if msg == _READY:
                                    w.started = True
                                elif msg[1] == task_id:
                                    w.begun = True
                                    if allowed is not None:
                                        deadline = time.monotonic() + allowed
                                        w.task = (task_id, batch, allowed, deadline)
                                if not w.conn.poll():
                                    msg = False  # nothing more yet: the batch runs
                                    break
                                msg = w.conn.recv()  # its result, or EOF if it died on it
                        except (EOFError, OSError):
                            msg = None
                        if msg is False:
                            if w.proc.sentinel not in ready:
                                continue
                            msg = None  # it said something and died
                        _, ok, payload = msg if msg is not None else (None, None, None)
                        if ok is True:
                            w.task = None
                            for i, res in zip(batch, payload, strict=True):
                                remaining -= 1
                                yield i, res
                            continue
                        if ok is False:
                            err, tb = payload
                            if isinstance(err, BaseException):
                                err.add_note(f"in a pixelmill worker process:\n{tb}")
                            raise err
                    expired = deadline is not None and time.monotonic() >= deadline
                    if w.proc.sentinel in ready or w.conn in ready or expired:
                        # the worker died or timed out while holding this batch
                        if expired:
                            w.proc.kill()
                        w.proc.join(timeout=5)
                        if not w.started and (w.proc.exitcode or 0) > 0:
                            raise _start_failure(w.proc.exitcode)
                        if expired and not w.begun:
                            reason = f"its worker did not start within {START_GRACE:g} s"
                        elif expired:
                            reason = f"timed out after {timeout:g} s"
                        else:
                            reason = _describe_exit(w.proc.exitcode)
                        w.task = None
                        w.kill()
                        if len(batch) > 1 and not expired:
                            pending.extendleft([i] for i in reversed(batch))
                        else:
                            for i in batch:
                                attempts[i] = attempts.get(i, 0) + 1
                                if expired or attempts[i] > self.retries:
                                    remaining -= 1
                                    yield i, (UnitFailure(reason, "timeout") if expired else
                                              UnitFailure(crash_reason(attempts[i], reason)))
                                else:
                                    pending.appendleft([i])
                self._ensure_pool(min(self.workers, len(pending) + sum(
                    1 for w in self._pool if w.task is not None)))
        finally:
            if remaining:  # cancelled or failed: stop whatever is still running
                for w in self._pool:
                    if w.task is not None:
                        w.kill()
                self._pool = [w for w in self._pool if w.task is None and w.proc.is_alive()]
