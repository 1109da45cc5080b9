"""The ``pixelmill`` command: a thin click group; one module per command, loaded lazily.

Errors are turned into messages and exit codes in one place (:func:`main`): a
:class:`~pixelmill.errors.PixelmillError` prints ``error: <message>`` and exits with the code
its class carries (see :class:`~pixelmill.errors.ExitCode`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

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


@contextlib.contextmanager
def staged_folder(uri: str, storage_options=None, *, meta: str,
                  known: tuple[str, ...]) -> Iterator[str]:
    """Where a command writes a folder output (a model, an index), so that Ctrl-C, SIGTERM or
    a crash never leaves a half-written one at ``uri``, nor (with ``--overwrite``) an earlier
    one mixed with new files that still loads: on a local disk the output is written in a
    hidden folder beside ``uri`` (``.NAME.*.tmp``, ignored by a rerun), then moved in file by
    file with SIGINT/SIGTERM held back — ``meta``, the file that makes the folder loadable,
    removed first and moved last — and the ``known`` files the new output did not write
    (an earlier output's) removed. Other storage: ``uri`` itself, as before."""
    import os
    import shutil
    import signal
    import tempfile
    import threading

    from pixelmill import storage

    fs, path = storage.get_fs(uri, storage_options)
    if not storage.is_local(fs) or os.path.isfile(path):  # a file: the writer says why not
        yield uri
        return
    parent = os.path.dirname(os.path.abspath(path))
    made = []  # folders created here, deepest first: removed again if nothing is written
    p = parent
    while not os.path.exists(p):
        made.append(p)
        p = os.path.dirname(p)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError:  # not writable here: the writer fails on ``uri`` with its own message
        for d in made:
            with contextlib.suppress(OSError):
                os.rmdir(d)
        yield uri
        return
    done = False
    try:
        yield tmp
        hold = threading.current_thread() is threading.main_thread()
        if hold:  # delivered once the folder is whole: the command then exits 130 / 143
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            os.makedirs(path, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, meta))
            names = sorted(os.listdir(tmp), key=lambda n: n == meta)
            for name in names:
                os.replace(os.path.join(tmp, name), os.path.join(path, name))
            for name in known:
                if name not in names:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(path, name))
            done = True
        except OSError as e:
            from pixelmill.errors import StorageError

            raise StorageError(f"{uri}: cannot write: {e}") from e
        finally:
            if hold:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for d in made:
                with contextlib.suppress(OSError):
                    os.rmdir(d)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
