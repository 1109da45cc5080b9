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
