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


@pytest.mark.parametrize("package", ["pixelmill", "pixelmill.sr", "pixelmill.learn"])
def test_public_names_are_not_shadowed_by_submodules(package):
    """Importing a submodule binds its name on the package: a public function must never share
    a name with a submodule, or ``pixelmill.sr.imresize(...)`` breaks depending on import order."""
    import importlib
    import pkgutil
    import types

    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "__main__":
            importlib.import_module(f"{package}.{info.name}")
    shadowed = [n for n in pkg.__all__ if isinstance(getattr(pkg, n), types.ModuleType)]
    assert not shadowed
