"""Image ops: pure functions on NumPy arrays, declared once in one registry.

The registry is built from an explicit list of family modules (no import side effects): each
module's functions carrying an :class:`OpSpec` (from the :func:`op` decorator) are collected,
and two ops with one name are an error. Everything else — pipeline validation, the CLI's
``pixelmill ops``, the JSON Schema for pipeline files — reads :func:`registry`.

dtype policy: ops take uint8, uint16 or float32 arrays (H×W or H×W×C, channels last, RGB order)
and return the same dtype unless their docstring says otherwise (edge maps return float32,
label images int32). Values are never rescaled silently: a float32 image keeps its range.
"""

from __future__ import annotations

import difflib
import importlib
import types
from collections.abc import Mapping

from pixelmill.errors import InvalidParameterError
from pixelmill.ops._registry import GLOBAL, OpSpec, ParamSpec, Range, op

__all__ = ["FAMILIES", "GLOBAL", "OpSpec", "ParamSpec", "Range", "get_op", "op", "registry"]

#: the family modules whose ops make up the registry, in display order.
FAMILIES = (
    "geometry",
    "color",
    "filters",
    "edges",
    "morphology",
    "segmentation",
    "measure",
    "features",
    "sr",
)

_REGISTRY: Mapping[str, OpSpec] | None = None


def _collect() -> Mapping[str, OpSpec]:
    found: dict[str, OpSpec] = {}
    for family in FAMILIES:
        module = importlib.import_module(f"pixelmill.ops.{family}")
        for obj in vars(module).values():
            spec = getattr(obj, "__pixelmill_op__", None)
            if spec is None or getattr(obj, "__module__", None) != module.__name__:
                continue
            if spec.name in found and found[spec.name].func is not spec.func:
                raise RuntimeError(f"two ops are named {spec.name!r}")  # a programming error
            found[spec.name] = spec
    return types.MappingProxyType(dict(sorted(found.items())))


def registry() -> Mapping[str, OpSpec]:
    """All ops, by name (read-only)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _collect()
    return _REGISTRY


def get_op(name: str, where: str = "op") -> OpSpec:
    """The op called ``name``; an unknown name raises with the closest valid names."""
    ops = registry()
    try:
        return ops[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(ops), 3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidParameterError(
            f"{where}: unknown op {name!r}{hint} (run 'pixelmill ops' for the list)",
            field=where,
        ) from None
