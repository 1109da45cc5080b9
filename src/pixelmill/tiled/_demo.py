"""The tiled part of ``make demo`` (filled in below)."""

from __future__ import annotations

__all__ = ["demo"]


def demo(out_dir, engine=None):  # placeholder replaced below
    raise NotImplementedError
