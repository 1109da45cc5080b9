"""One root error, mixed with builtins, and the CLI's exit codes.

Every error pixelmill raises on purpose derives from :class:`PixelmillError` *and* the builtin
a Python user would expect (``ValueError``, ``OSError``, ``ImportError``), so callers can catch
either. The CLI turns them into a clean message and the exit code each class carries.
"""

from __future__ import annotations

import enum

__all__ = [
    "DecodeError",
    "ExitCode",
    "InvalidParameterError",
    "MissingDependencyError",
    "NoInputError",
    "PixelLimitError",
    "PixelmillError",
    "StorageError",
    "TilingError",
    "UsageError",
]


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``pixelmill`` command (documented in the README)."""

    OK = 0  #: every item ok
    ERROR = 1  #: the job could not run (storage unreachable, unexpected error)
    USAGE = 2  #: a wrong flag, argument or spec field; nothing was started
    PARTIAL = 3  #: the job ran, but some items were invalid or failed (see the manifest)
    NO_INPUT = 4  #: the input held no images at all


class PixelmillError(Exception):
    """Root of every error pixelmill raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(PixelmillError, ValueError):
    """A user's mistake in a command, argument or spec; raised before any work starts."""

    exit_code = ExitCode.USAGE


class InvalidParameterError(UsageError):
    """A parameter (of an op, a pipeline step, a CLI flag) outside what is allowed.

    ``field`` names where the bad value is (``steps[2].sigma``), so messages can say it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StorageError(PixelmillError, OSError):
    """A storage URL that cannot be listed, read or written."""


class NoInputError(PixelmillError, FileNotFoundError):
    """A listing matched no image files."""

    exit_code = ExitCode.NO_INPUT


class DecodeError(PixelmillError, ValueError):
    """A file that is not a readable image: the reason ends up in a manifest row."""


class PixelLimitError(DecodeError):
    """An image whose header claims more pixels than the configured limit (decompression bomb)."""


class UnsuitableImageError(PixelmillError, ValueError):
    """A readable image that an op cannot take (smaller than one HOG block, say): a property of
    the input, so its manifest row is ``invalid`` with the reason, not ``failed``."""


class TilingError(UsageError):
    """A pipeline that cannot be run tile by tile (a global op on an image too big to hold)."""


class MissingDependencyError(PixelmillError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package} is required{what}; install it with: pip install 'pixelmill[{extra}]'"
        )
        self.package = package
        self.extra = extra
