"""How the bundled CNN (``cnn_embedding(model="textures")``) was made — rerun to reproduce it.

``python -m pixelmill.learn.bundled OUT_DIR`` trains the small network on generated
colour × texture classes (:func:`pixelmill.learn.datasets.color_texture_classes`, 20 classes,
32×32 RGB) with the default :class:`~pixelmill.learn.cnn.CNNConfig` and writes ``model.json``
and ``weights.safetensors`` (about 100 kB) to OUT_DIR.
"""

from __future__ import annotations

import sys
import time

__all__ = ["train_textures"]


def train_textures(out: str, n_per_class: int = 60, epochs: int = 30, seed: int = 0) -> dict:
    """Train and save the bundled colour/texture CNN; return its metadata."""
    from pixelmill.learn.cnn import CNNConfig, train_cnn
    from pixelmill.learn.datasets import color_texture_classes
    from pixelmill.learn.models import FORMAT, TrainedModel

    t0 = time.perf_counter()
    train_x, train_y = color_texture_classes(n_per_class, seed=seed)
    val_x, val_y = color_texture_classes(max(10, n_per_class // 5), seed=seed + 1)
    net = train_cnn(train_x, train_y, val_x, val_y,
                    CNNConfig(epochs=epochs, patience=6, seed=seed), log=print)
    meta = {**net.metadata(), "format": FORMAT, "model": "cnn", "features": [], "pipeline": None,
            "source": f"pixelmill.learn.datasets.color_texture_classes({n_per_class}, "
                      f"seed={seed})", "n_train": len(train_y),
            "val_accuracy": max(h.get("val_accuracy", -1.0) for h in net.history),
            "fit_seconds": time.perf_counter() - t0}
    TrainedModel("cnn", meta, cnn=net).save(out)
    return meta


if __name__ == "__main__":  # pragma: no cover
    result = train_textures(sys.argv[1] if len(sys.argv) > 1 else "textures")
    print(f"val accuracy {result['val_accuracy']:.4f} in {result['fit_seconds']:.0f} s")
