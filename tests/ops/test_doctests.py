"""The examples in the op docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.ops.conftest import FAMILY_MODULES


@pytest.mark.parametrize("family", FAMILY_MODULES)
def test_docstring_examples(family):
    module = importlib.import_module(f"pixelmill.ops.{family}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
