"""The repository's own contract: lint-clean, public API importable, no machine paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pixelmill

ROOT = Path(__file__).parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.parametrize("name", pixelmill.__all__)
def test_every_public_name_resolves(name):
    assert getattr(pixelmill, name) is not None


def test_unknown_public_name_raises_attribute_error():
    with pytest.raises(AttributeError):
        pixelmill.no_such_thing  # noqa: B018
