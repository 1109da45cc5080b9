"""A progress bar for batch work: rate per second, ETA, invalid and failed counts so far.

Drawn with rich on stderr when it is a terminal; silent otherwise (or when disabled), so logs
and captured output stay clean. Counting works either way: callers can read :attr:`counts`.

Examples
--------
>>> with Progress(3, what="images", enabled=False) as p:
...     p.advance()
...     p.advance(status="invalid")
...     p.advance(status="failed")
>>> p.counts
{'ok': 1, 'invalid': 1, 'failed': 1}
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["STATUSES", "Progress"]

#: the statuses a unit can end with (the manifest's ``status`` column)
STATUSES = ("ok", "invalid", "failed")


class Progress:
    """Count finished units and draw a live bar when stderr is a terminal.

    Parameters
    ----------
    total : int or None
        Units expected (``None`` when unknown: no ETA is shown).
    what : str
        What a unit is, for the label (``"images"``, ``"tiles"``, ``"files"``).
    enabled : bool
        ``False`` never draws (counting still works).
    force : bool
        Draw even when stderr is not a terminal (for tests of the drawing itself).
    """

    def __init__(
        self, total: int | None, what: str = "images", enabled: bool = True, *, force: bool = False
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"total: expected an integer >= 0, got {total}")
        self.total = total
        self.what = what
        self.counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self._started = time.monotonic()
        self._draw = bool(enabled) and (force or sys.stderr.isatty())
        self._bar: Any = None
        self._task: Any = None

    # -- context manager -----------------------------------------------------------------
    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self._draw:
            self._start_bar()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[bad]}"),
            console=Console(stderr=True),
            transient=False,
            refresh_per_second=4,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.what, total=self.total, rate="", bad="")

    # -- counting ------------------------------------------------------------------------
    @property
    def done(self) -> int:
        """Units finished so far, whatever their status."""
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Units finished per second since the start."""
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate (``None`` when unknown)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def advance(self, status: str = "ok", n: int = 1) -> None:
        """Record ``n`` finished units with ``status`` (``ok``, ``invalid`` or ``failed``)."""
        if status not in self.counts:
            raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        self.counts[status] += n
        if self._bar is not None:
            bad = []
            if self.counts["invalid"]:
                bad.append(f"[yellow]{self.counts['invalid']} invalid[/]")
            if self.counts["failed"]:
                bad.append(f"[red]{self.counts['failed']} failed[/]")
            self._bar.update(
                self._task, advance=n, rate=f"{self.rate:,.0f} {self.what}/s", bad=" ".join(bad)
            )

    def set_total(self, total: int | None) -> None:
        """Change the expected number of units (e.g. once a listing finishes)."""
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def close(self) -> None:
        """Stop drawing (idempotent)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __repr__(self) -> str:
        return f"Progress({self.done}/{self.total} {self.what}, {self.counts})"
