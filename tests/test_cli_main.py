"""The console entry point maps outcomes to the documented exit codes (README: exit codes)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from pixelmill.cli import main
from pixelmill.errors import ExitCode


def _folder(tmp_path, bad: bool):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    if bad:
        (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    return tmp_path


def test_all_valid_exits_0(tmp_path):
    assert main(["scan", str(_folder(tmp_path, bad=False)), "--no-progress"]) == ExitCode.OK


def test_invalid_files_exit_partial_through_the_console_script(tmp_path):
    folder = _folder(tmp_path, bad=True)
    assert main(["scan", str(folder), "--no-progress"]) == ExitCode.PARTIAL
    proc = subprocess.run(
        [sys.executable, "-m", "pixelmill", "scan", str(folder), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == ExitCode.PARTIAL, proc.stderr


def test_empty_folder_exits_no_input(tmp_path):
    assert main(["scan", str(tmp_path), "--no-progress"]) == ExitCode.NO_INPUT


def test_unknown_flag_is_a_usage_error(tmp_path):
    assert main(["scan", str(tmp_path), "--no-such-flag"]) == ExitCode.USAGE


def test_unknown_command_is_a_usage_error():
    assert main(["scna"]) == ExitCode.USAGE
