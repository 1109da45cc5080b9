"""The ``pixelmill`` command: a thin click group; one module per command, loaded lazily.

Errors are turned into messages and exit codes in one place (:func:`main`): a
:class:`~pixelmill.errors.PixelmillError` prints ``error: <message>`` and exits with the code
its class carries (see :class:`~pixelmill.errors.ExitCode`).
"""

from __future__ import annotations

import importlib
import sys

import click

from pixelmill.errors import ExitCode, PixelmillError

__all__ = ["cli", "main"]

#: command name -> "module:attribute"; each module holds one click command or group.
COMMANDS = {
    "scan": "pixelmill.cli.scan:scan",
    "run": "pixelmill.cli.run:run",
    "ops": "pixelmill.cli.ops:ops",
    "report": "pixelmill.cli.report:report",
    "tile": "pixelmill.cli.tile:tile",
    "upscale": "pixelmill.cli.upscale:upscale",
    "sr": "pixelmill.cli.sr:sr",
    "learn": "pixelmill.cli.learn:learn",
    "index": "pixelmill.cli.index:index",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def _load(self, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # command not built yet
                return None
            raise
        return getattr(module, attr)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pixelmill")
def cli() -> None:
    """pixelmill: process image collections and huge images, locally, on Dask or on Spark."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler ending the job, ``kill``): unwound as Ctrl-C is, so that workers are
    stopped and the manifest journal is kept for ``--resume``."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _terminated(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, Terminated):
            return True
        e = e.__cause__ or e.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: run the CLI, map errors to exit codes.

    SIGTERM is handled like Ctrl-C (the job stops its workers, keeps its journal) and ends
    with exit code 143 (128 + SIGTERM), Ctrl-C with 130."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return _main(argv)  # a host that handles SIGTERM itself keeps its handler
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
    try:
        # without standalone mode, click *returns* the code of an Exit raised by a command
        rv = cli.main(args=argv, prog_name="pixelmill", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return ExitCode.USAGE
    except (click.exceptions.Abort, KeyboardInterrupt) as e:  # click turns ^C into Abort
        if _terminated(e):
            click.echo("terminated", err=True)
            return 143
        click.echo("interrupted", err=True)
        return 130
    except PixelmillError as e:
        click.echo(f"error: {e}", err=True)
        return int(e.exit_code)
    return int(rv) if isinstance(rv, int) else ExitCode.OK


def exit_with(code: int) -> None:
    """End a command with ``code`` (used for PARTIAL / NO_INPUT outcomes)."""
    raise click.exceptions.Exit(int(code))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
