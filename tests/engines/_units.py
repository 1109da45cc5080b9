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


def raise_on_five(x: int) -> int:
    if x == 5:
        raise KeyError(f"bad unit {x}")
    return x
