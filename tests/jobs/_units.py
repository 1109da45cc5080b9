"""Picklable unit functions for job tests: the real worker, with a crash or a hang injected.

No test-only op is registered: the fault is injected around :func:`process_unit`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pixelmill.jobs import JobSpec, WorkUnit, process_unit


def crash_on(spec: JobSpec, name: str, unit: WorkUnit) -> dict:
    """Kill the worker (SIGKILL, as the OOM killer does) when processing ``name``."""
    if unit.relpath.endswith(name):
        os.kill(os.getpid(), signal.SIGKILL)
    return process_unit(spec, unit)


def crash_once_on(spec: JobSpec, name: str, marker: str, unit: WorkUnit) -> dict:
    """Kill the worker the first time it processes ``name`` (``marker`` remembers it)."""
    if unit.relpath.endswith(name) and not Path(marker).exists():
        Path(marker).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return process_unit(spec, unit)


def hang_on(spec: JobSpec, name: str, unit: WorkUnit) -> dict:
    """Hang (far past any test timeout) when processing ``name``."""
    if unit.relpath.endswith(name):
        time.sleep(60)
    return process_unit(spec, unit)


class InProcessEngine:
    """A minimal engine running units in this process (for memory:// tests): the protocol only."""

    name = "in-process"
    workers = 1

    def map(self, fn, units, *, timeout=None, batch_size=None):
        for i, unit in enumerate(units):
            yield i, fn(unit)

    def close(self) -> None:
        pass


class SlowToStart:
    """A unit function whose unpickling (its imports, in a fresh worker) and warm-up each take
    ``delay`` seconds; a unit whose relpath ends with ``hang`` hangs. The units themselves are
    instant, so only a clock that counts start-up time can time them out."""

    def __init__(self, delay: float, hang: str) -> None:
        self.delay, self.hang = delay, hang

    def __getstate__(self) -> dict:
        return {"delay": self.delay, "hang": self.hang}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        time.sleep(self.delay)  # heavy imports

    def warm_up(self) -> None:
        time.sleep(self.delay)  # a first call's caches

    def __call__(self, unit: WorkUnit) -> dict:
        if unit.relpath.endswith(self.hang):
            time.sleep(60)
        return {"key": unit.key, "uri": unit.uri, "relpath": unit.relpath, "status": "ok"}


def hang_with_pid(pid_file: str, unit: WorkUnit) -> dict:
    """Say which process holds the unit (in ``pid_file``), then hang."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)
    return {"key": unit.key, "status": "ok"}


class StopAfter:
    """An engine that runs ``n`` units in this process, then is interrupted (as by Ctrl-C or
    a kill: the rows written so far stay in the journal)."""

    name = "stop-after"
    workers = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def map(self, fn, units, *, timeout=None, batch_size=None):
        for i, unit in enumerate(units):
            if i == self.n:
                raise KeyboardInterrupt
            yield i, fn(unit)

    def close(self) -> None:
        pass
