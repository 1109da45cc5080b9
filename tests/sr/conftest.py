"""Fixtures for the super-resolution tests: small real photographs, shipped-model lookup."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_rgb() -> np.ndarray:
    """A 96×120 crop of scikit-image's astronaut (real texture, uint8 RGB)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:196, 180:300])


def shipped(name: str, scale: int) -> bool:
    from pixelmill.sr.weights import WEIGHTS_DIR

    return (WEIGHTS_DIR / f"{name}_x{scale}.safetensors").exists()


def require_shipped(name: str, scale: int) -> None:
    """Skip (saying so) when the weights of ``name`` at ``scale`` are not shipped yet."""
    if not shipped(name, scale):
        pytest.skip(f"weights {name}_x{scale} are not shipped yet")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: the suite shares two cores with other workers (no oversubscription)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
