"""The public surface of pixelmill.learn: every name resolves to a function/class, not a module."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pixelmill.learn as learn


def test_public_names_survive_submodule_imports():
    for info in pkgutil.iter_modules(learn.__path__):
        importlib.import_module(f"pixelmill.learn.{info.name}")  # sets package attributes
    for name in learn.__all__:
        value = getattr(learn, name)
        assert not isinstance(value, types.ModuleType), name
    assert callable(learn.demo) and callable(learn.predict)
    assert learn.MODEL_NAMES == ("linear_svm", "rbf_svm", "random_forest", "gradient_boosting",
                                 "logistic_regression")


def test_feature_op_snapshot():
    """Names, outputs and parameter names of the feature ops: a rename must edit the snapshot."""
    import json
    from pathlib import Path

    from pixelmill.ops import registry

    current = {name: {"family": spec.family, "output": spec.output, "params": list(spec.params)}
               for name, spec in registry().items() if spec.family == "features"}
    snapshot = Path(__file__).with_name("registry_snapshot.json")
    assert current == json.loads(snapshot.read_text())
