"""Picklable unit functions used by the engine tests (workers import them by name)."""

from __future__ import annotations

import os
import signal
import time


def square(x: int) -> int:
    return x * x


def crash_on_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def sleep_on_two(x: int) -> int:
    if x == 2:
        time.sleep(30)
    return x


class SlowToStartSleepOnTwo:
    """:func:`sleep_on_two` with a slow start: unpickling it (a fresh worker's imports) and its
    ``warm_up()`` (a first call's caches) take ``delay`` seconds each."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __getstate__(self) -> dict:
        return {"delay": self.delay}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        time.sleep(self.delay)

    def warm_up(self) -> None:
        time.sleep(self.delay)

    def __call__(self, x: int) -> int:
        return sleep_on_two(x)


def raise_on_five(x: int) -> int:
    if x == 5:
        raise KeyError(f"bad unit {x}")
    return x


def kill_once(marker_dir: str, x: int) -> int:
    """Unit 3 SIGKILLs its own worker process the first time it runs anywhere; returns x*x."""
    if x == 3:
        try:
            fd = os.open(os.path.join(marker_dir, "killed-3"), os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def kill_executor_once(marker_dir: str, x: int) -> int:
    """Unit 3 SIGKILLs the Spark executor JVM that runs it, the first time; returns x*x."""
    if x == 3:
        try:
            fd = os.open(os.path.join(marker_dir, "killed-3"), os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            import psutil

            for parent in psutil.Process().parents():
                if "java" in parent.name():
                    parent.kill()
                    break
            os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def mark_slowly(marker_dir: str, x: int) -> int:
    """Sleep 0.3 s, then leave a marker file: counts the units that actually ran."""
    time.sleep(0.3)
    with open(os.path.join(marker_dir, f"done-{x}"), "w"):
        pass
    return x


def fail_with_value_error(x: int) -> int:
    if x == 7:
        raise ValueError(f"unit {x} is bad")
    return x


class KillOnce:
    """Wraps a job function: the first call anywhere SIGKILLs its own worker process first."""

    def __init__(self, fn, marker_dir: str) -> None:
        self.fn = fn
        self.marker_dir = marker_dir

    def __call__(self, unit):
        try:
            fd = os.open(os.path.join(self.marker_dir, "killed"), os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return self.fn(unit)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        return None  # not reached


class KillingEngine:
    """An engine proxy whose workers each job's first unit kills (a real SIGKILL mid-job)."""

    def __init__(self, inner, marker_dir: str) -> None:
        self.inner = inner
        self.marker_dir = marker_dir
        self.name = inner.name
        self.workers = inner.workers

    def map(self, fn, units, **kw):
        return self.inner.map(KillOnce(fn, self.marker_dir), units, **kw)

    def close(self) -> None:
        """The wrapped engine belongs to the test fixture."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stuck_on_two(x: int) -> int:
    """Unit 2 stays in 'native code' for 6 s: SIGALRM (the worker's unit clock) is blocked, so
    only the driver's backstop can stop it."""
    if x == 2:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(6)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    return x
