"""The CNN: trains from scratch on a tiny set, early-stops, round-trips through safetensors."""

from __future__ import annotations

import numpy as np
import pytest

from pixelmill.learn.cnn import CNNConfig, build_net, train_cnn
from pixelmill.learn.datasets import color_classes
from pixelmill.learn.models import FORMAT, TrainedModel, _load

TINY = CNNConfig(input_size=16, channels=(8, 16), epochs=8, patience=3, batch_size=32,
                 augment=("crop", "jitter", "flip"), seed=0, device="cpu")


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    train_x, train_y = color_classes(16, size=16, seed=10)
    val_x, val_y = color_classes(4, size=16, seed=11)
    before = torch.get_num_threads()
    model = train_cnn(train_x, train_y, val_x, val_y, TINY, threads=1 if before > 1 else 2)
    assert torch.get_num_threads() == before  # threads= is for the call, not the process
    return model, (val_x, val_y)


def test_tiny_cnn_learns_colour_classes(tiny_model):
    model, (val_x, val_y) = tiny_model
    proba = model.predict_proba(val_x)
    assert proba.shape == (20, 5) and np.allclose(proba.sum(1), 1, atol=1e-5)
    accuracy = np.mean(np.asarray(model.classes)[proba.argmax(1)] == np.asarray(val_y))
    assert accuracy >= 0.8  # chance is 0.2
    assert 1 <= len(model.history) <= TINY.epochs
    assert all("val_accuracy" in h and h["images_per_s"] > 0 for h in model.history)


def test_cnn_round_trips_through_safetensors(tiny_model, tmp_path):
    model, (val_x, _) = tiny_model
    meta = {**model.metadata(), "format": FORMAT, "model": "cnn", "features": [],
            "pipeline": None}
    TrainedModel("cnn", meta, cnn=model).save(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "weights.safetensors"]
    loaded = _load(str(tmp_path), None)
    np.testing.assert_allclose(loaded.predict_proba_images(val_x), model.predict_proba(val_x),
                               rtol=1e-5, atol=1e-6)
    emb = loaded.cnn.embed(val_x[0])
    assert emb.shape == (16,) and emb.dtype == np.float32


def test_architecture_follows_the_config():
    import torch

    config = CNNConfig(input_size=24, in_channels=1, channels=(4, 8, 12), convs_per_stage=2,
                       dropout=0.5)
    net = build_net(config, 3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 12, 12] and len(norms) == 6
    assert net.dropout.p == 0.5
    assert net(torch.zeros(2, 1, 24, 24)).shape == (2, 3)
