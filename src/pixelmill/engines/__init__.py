"""Engines: thin adapters that run a function over work units and yield results as they finish.

The protocol (see :class:`Engine`) is deliberately small, so an adapter is ~100 lines:

``map(fn, units, *, timeout=None, batch_size=None)``
    yields ``(index, result)`` for every unit exactly once, in completion order. ``result`` is
    what ``fn(unit)`` returned, or a :class:`UnitFailure` when the unit's worker died (after the
    engine's retries) or the unit ran past ``timeout`` seconds. An exception raised by ``fn``
    itself propagates to the caller (the rest of the map is cancelled): job functions catch
    their own per-item errors and turn them into manifest rows. Units and results must be
    small picklable values (URIs, tile windows, rows) — never decoded pixels.
``close()``
    releases workers; engines are also context managers.

``get_engine("local" | "dask" | "dask=tcp://HOST:8786" | "spark" | "spark=spark://HOST:7077"
| "spark=local[4]", workers=N)`` parses the CLI's ``--engine`` value. A malformed value is an
:class:`~pixelmill.errors.InvalidParameterError` (exit 2) raised before anything starts
(:func:`parse_engine_spec` checks it alone); a cluster that cannot be reached is an
:class:`EngineUnavailableError` (exit 1), raised within seconds (:func:`probe`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pixelmill.errors import InvalidParameterError, PixelmillError

__all__ = [
    "CRASH_REASON",
    "ENGINE_NAMES",
    "Engine",
    "EngineUnavailableError",
    "InlineEngine",
    "UnitFailure",
    "crash_reason",
    "default_workers",
    "get_engine",
    "memory_store_here",
    "parse_engine_spec",
    "probe",
    "restore_environ",
    "saved_environ",
    "unit_clock",
    "unit_timed_out",
    "warm_up_once",
]

ENGINE_NAMES = ("local", "dask", "spark")

#: seconds a TCP connection to a scheduler or master may take before it counts as unreachable
CONNECT_TIMEOUT = 5.0


class EngineUnavailableError(PixelmillError, ConnectionError):
    """A cluster named by ``--engine`` that cannot be reached or started: the job could not run."""


def probe(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why a TCP connection to ``host:port`` fails (``"connection refused"``, ...), or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"unknown host {host!r}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return (e.strerror or str(e)).lower()


@dataclass(frozen=True)
class UnitFailure:
    """A unit that could not complete for reasons outside ``fn``: its worker died or it timed out."""

    reason: str
    kind: str = "crash"  #: "crash" (worker died) or "timeout"


#: what every engine says of a unit that kept killing the worker process running it
CRASH_REASON = "worker process died while running it"


def crash_reason(attempts: int | None = None, detail: str | None = None) -> str:
    """The reason of a unit whose worker died on every attempt, worded alike on every engine
    (the manifest is the same on every engine): ``worker process died while running it
    (2 attempts)``. ``detail`` is what only some engines know (the local engine: the signal),
    put before the attempts."""
    extra = [t for t in (detail, None if attempts is None else
                         f"{attempts} attempt{'s' if attempts != 1 else ''}") if t]
    return CRASH_REASON + (f" ({'; '.join(extra)})" if extra else "")


def memory_store_here(uris: Iterable[str], engine: Any) -> bool:
    """Whether a job reading or writing these URIs must run in this process: a ``memory://``
    store exists only here, so on the local engine (named or default) its work runs
    in-process (True); a Dask or Spark engine is refused before any work (its workers would
    read and write stores of their own); an engine of the caller's own is used as given."""
    mem = next((u for u in map(str, uris) if u.startswith("memory://")), None)
    if mem is None:
        return False
    kind = (parse_engine_spec(engine)[0] if engine is None or isinstance(engine, str)
            else getattr(engine, "name", None))
    if kind in ("dask", "spark"):
        from pixelmill.errors import UsageError

        raise UsageError(
            f"--engine {kind}: {mem} is in a memory:// store, which exists only in this process; "
            f"{kind} workers cannot read or write it: use --engine local (it runs memory:// jobs "
            "in this process) or a shared store (a folder, s3://)")
    return kind == "local"


def saved_environ(keys: Iterable[str]) -> dict[str, str | None]:
    """These environment variables as they are now (None: unset), for :func:`restore_environ`
    once a cluster library that sets them in this process for good has started."""
    return {k: os.environ.get(k) for k in keys}


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put back the variables of :func:`saved_environ` (unset those that were unset)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


#: in a worker: the deadline (``time.monotonic()``) and timeout of the unit each thread runs
_UNIT_CLOCK = threading.local()


@contextlib.contextmanager
def unit_clock(timeout: float | None) -> Iterator[None]:
    """In a Dask or Spark worker: the unit run inside has ``timeout`` seconds from now. A unit
    that runs past them is a ``failed`` (timeout) row whatever it does after, so the job
    function checks :func:`unit_timed_out` before it writes its output: a unit the engine
    cannot stop (a remote Dask worker's thread, native code that Spark's alarm cannot
    interrupt) wrote its output after its row said it timed out (or after the job ended),
    where the local engine kills the worker at the deadline and no output is written."""
    if not timeout:
        yield
        return
    previous = getattr(_UNIT_CLOCK, "value", None)
    _UNIT_CLOCK.value = (time.monotonic() + timeout, timeout)
    try:
        yield
    finally:
        _UNIT_CLOCK.value = previous


def unit_timed_out() -> float | None:
    """The timeout of the unit this thread runs when it has run out (else None)."""
    clock = getattr(_UNIT_CLOCK, "value", None)
    if clock is not None and time.monotonic() >= clock[0]:
        return clock[1]
    return None


@runtime_checkable
class Engine(Protocol):
    name: str
    workers: int

    def map(
        self,
        fn: Callable[[Any], Any],
        units: Iterable[Any],
        *,
        timeout: float | None = None,
        batch_size: int | None = None,
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


class InlineEngine:
    """Runs units one by one in this process: for ``memory://`` stores, which a worker process
    cannot see (each process has its own). No crash isolation, no timeout."""

    name, workers = "inline", 1

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any], *, timeout: float | None = None,
            batch_size: int | None = None) -> Iterator[tuple[int, Any]]:
        for i, unit in enumerate(units):
            yield i, fn(unit)

    def close(self) -> None:
        pass

    def __enter__(self) -> InlineEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: keys of the unit functions whose ``warm_up()`` has run in this (reused) worker process
_WARMED_UP: set[str] = set()
_WARM_UP_LOCK = threading.Lock()


def warm_up_once(fn: Callable[[Any], Any]) -> None:
    """In a Spark or Dask worker: call ``fn.warm_up()`` once per process, before any unit's
    clock starts (a first call's imports and caches are not a unit's time; the local engine
    warms a fresh worker up the same way). ``fn`` arrives unpickled anew with every task, so it
    is known by the digest of its pickle."""
    warm_up = getattr(fn, "warm_up", None)
    if not callable(warm_up):
        return
    try:
        import hashlib

        import cloudpickle

        key: str | None = hashlib.sha256(cloudpickle.dumps(fn)).hexdigest()
    except Exception:
        key = None
    with _WARM_UP_LOCK:  # a Dask worker runs tasks in threads
        if key is not None and key in _WARMED_UP:
            return
        with contextlib.suppress(Exception):
            warm_up()
        if key is not None:
            _WARMED_UP.add(key)


def default_workers() -> int:
    """CPU cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def auto_batch_size(n_units: int, workers: int, per_worker_tasks: int = 8, cap: int = 64) -> int:
    """Units per task: enough tasks to balance load, few enough to amortise scheduling."""
    if n_units <= 0:
        return 1
    return max(1, min(cap, n_units // max(1, workers * per_worker_tasks)))


def plan_batches(n_units: int, workers: int, batch_size: int | None = None, *,
                 timeout: float | None = None, per_worker_tasks: int = 8, cap: int = 64,
                 tail_floor: int = 0) -> list[list[int]]:
    """Indices ``0..n_units-1`` cut into the batches an engine hands out, in order.

    An explicit ``batch_size`` is honoured exactly; with a timeout every unit is its own batch
    (its clock is its own). Otherwise batches of :func:`auto_batch_size` units (at most ``cap``)
    shrink towards the end (guided scheduling: a batch is at most ``1/(2·workers)`` of what is
    left), so no worker idles through the last large batch of another; with ``tail_floor`` F
    they shrink to no fewer than 1/F of the first batches' size (an engine whose every batch
    costs a job of its own: Spark).
    """
    if batch_size is not None or timeout:
        size = batch_size or 1
        return [list(range(i, min(i + size, n_units))) for i in range(0, n_units, size)]
    cap = auto_batch_size(n_units, workers, per_worker_tasks, cap=cap)
    floor = max(1, cap // tail_floor) if tail_floor else 1
    batches, start = [], 0
    while start < n_units:
        size = max(floor, min(cap, -(-(n_units - start) // (2 * max(1, workers)))))
        batches.append(list(range(start, min(start + size, n_units))))
        start += size
    return batches


def parse_engine_spec(spec: str | None) -> tuple[str, str | None]:
    """``(name, address or None)`` from an ``--engine`` value, checked without starting anything.

    Raises :class:`~pixelmill.errors.InvalidParameterError` for an unknown engine, an empty
    address after ``=``, or an address the engine cannot take (a Dask address with an unknown
    scheme, a Spark master URL of no known form).
    """
    name, sep, address = (spec or "local").partition("=")
    name, address = name.strip().lower(), address.strip()
    if name not in ENGINE_NAMES:
        raise InvalidParameterError(
            f"--engine: unknown engine {name!r} (valid: {', '.join(ENGINE_NAMES)}, "
            "optionally with =ADDRESS)",
            field="engine",
        )
    if name == "local":
        if sep:
            raise InvalidParameterError("--engine: the local engine takes no address",
                                        field="engine")
        return name, None
    if sep and not address:
        what = "a scheduler address" if name == "dask" else "a master URL"
        local = "a local cluster" if name == "dask" else "Spark in local mode"
        raise InvalidParameterError(
            f"--engine {name}=: give {what} after '=' or use --engine {name} for {local}",
            field="engine")
    if address and name == "dask":
        from pixelmill.engines.dask import check_address

        check_address(address)
    elif address:
        from pixelmill.engines.spark import check_master

        check_master(address)
    return name, address or None


def get_engine(spec: str = "local", workers: int | None = None, **options: Any) -> Engine:
    """An engine from the CLI's ``--engine`` value (``name`` or ``name=address``)."""
    if workers is not None and workers < 1:
        raise InvalidParameterError(f"--workers: expected an integer >= 1, got {workers}",
                                    field="workers")
    name, address = parse_engine_spec(spec)
    if name == "local":
        from pixelmill.engines.local import LocalEngine

        return LocalEngine(workers=workers, **options)
    if name == "dask":
        from pixelmill.engines.dask import DaskEngine

        return DaskEngine(address=address, workers=workers, **options)
    from pixelmill.engines.spark import SparkEngine

    return SparkEngine(master=address, workers=workers, **options)
