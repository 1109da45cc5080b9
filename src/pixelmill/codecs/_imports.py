"""Heavy imports (OpenCV, NumPy, Pillow) made on first use, so header-only work starts fast."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LazyModule", "lazy_modules"]


class LazyModule:
    """A module imported on first attribute access; it then replaces itself in ``namespace``."""

    def __init__(self, namespace: dict, alias: str, name: str, setup: Any = None) -> None:
        self._namespace, self._alias, self._name, self._setup = namespace, alias, name, setup

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        if self._setup is not None:
            self._setup(module)
        self._namespace[self._alias] = module
        return getattr(module, attr)


def _no_pillow_limit(module: Any) -> None:
    # pixelmill enforces its own limit (``max_pixels``) before Pillow decodes anything.
    module.MAX_IMAGE_PIXELS = None


def lazy_modules(namespace: dict) -> tuple[Any, Any, Any]:
    """``cv2, np, Image`` placeholders for a module's globals."""
    return (LazyModule(namespace, "cv2", "cv2"), LazyModule(namespace, "np", "numpy"),
            LazyModule(namespace, "Image", "PIL.Image", _no_pillow_limit))
