"""Tiled upscaling equals whole-image inference (float rounding aside), for every architecture,
through the batched tiler and through the tiling layer's process_array_tiled with the
super_resolve op. Networks are randomly initialised (seeded) and saved to a temporary weights
folder, so these tests do not depend on shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelmill.errors import InvalidParameterError
from pixelmill.sr import weights as sr_weights
from pixelmill.sr.infer import upscale_image
from pixelmill.sr.models import build_model
from pixelmill.sr.resample import imresize
from pixelmill.sr.tiles import upscale_tiled
from pixelmill.sr.weights import LoadedModel, save_model


def random_model(arch: str, scale: int, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = build_model(arch, scale)
    with torch.no_grad():
        for p in net.parameters():  # large enough weights that every tap matters
            p.add_(torch.randn_like(p) * 0.05)
    return LoadedModel(net, {"architecture": arch, "scale": scale, "name": arch})


@pytest.mark.parametrize(("arch", "scale"), [("espcn", 2), ("fsrcnn", 3), ("edsr", 4), ("fsrcnn", 2)])
def test_tiled_equals_whole_float(arch, scale, small_rgb):
    model = random_model(arch, scale)
    image = small_rgb[:45, :61].astype(np.float32) / 255
    whole = upscale_image(image, model, scale)
    tiled = upscale_tiled(image, model, scale, tile=16, batch=3)
    assert tiled.shape == whole.shape == (45 * scale, 61 * scale, 3)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    # the network changes the image: the check above is not comparing two bicubics
    assert np.abs(whole - upscale_image(image, None, scale)).max() > 0.01


def test_tiled_equals_whole_uint8_gray_and_uint16(small_rgb):
    model = random_model("edsr", 2)
    gray = small_rgb[..., 1]
    whole = upscale_image(gray, model, 2)
    tiled = upscale_tiled(gray, model, 2, tile=20)
    assert whole.dtype == np.uint8 and whole.shape == (192, 240)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert np.mean(tiled == whole) > 0.999
    deep = small_rgb.astype(np.uint16) * 257
    out = upscale_tiled(deep, model, 2, tile=40)
    assert out.dtype == np.uint16
    assert np.abs(out.astype(int) - upscale_image(deep, model, 2).astype(int)).max() <= 1


@pytest.mark.parametrize("colour", ["gray", "rgb"])
def test_alpha_is_upscaled_bicubically_beside_the_network(colour, small_rgb):
    # gray + alpha (2 channels, PNG's LA) crashed in the YCbCr conversion before
    model = random_model("espcn", 2)
    base = small_rgb[:30, :40, :1] if colour == "gray" else small_rgb[:30, :40]
    alpha = np.ascontiguousarray(small_rgb[:30, :40, 2::-1][..., :1])
    image = np.concatenate([base, alpha], axis=2)
    out = upscale_tiled(image, model, 2, tile=16)
    assert out.shape == (60, 80, base.shape[2] + 1) and out.dtype == np.uint8
    expected = upscale_image(np.ascontiguousarray(base), model, 2)
    assert np.abs(out[..., :-1].astype(int) - expected.astype(int)).max() <= 1
    bicubic = np.clip(imresize(alpha / 255.0, 2)[..., 0] * 255, 0, 255)  # float, then rounded once
    assert np.abs(out[..., -1] - bicubic).max() <= 0.5 + 1e-6


def test_unsupported_channel_counts_are_refused_clearly(small_rgb):
    model = random_model("espcn", 2)
    five = np.concatenate([small_rgb[:20, :20]] * 2, axis=2)[..., :5]
    with pytest.raises(InvalidParameterError, match="got 5"):
        upscale_image(five, model, 2)


@pytest.fixture
def temp_weights(tmp_path, monkeypatch):
    model = random_model("fsrcnn", 2)
    save_model(model.net, {**model.card, "params": {}, "training": {"epochs": 0}}, tmp_path / "fsrcnn_x2")
    monkeypatch.setattr(sr_weights, "WEIGHTS_DIR", tmp_path)
    sr_weights._load.cache_clear()
    yield tmp_path
    sr_weights._load.cache_clear()


def test_saved_weights_have_an_ordinary_file_mode(temp_weights):
    """safetensors writes 0600: `sr export` made weights only their owner could read, beside
    a 0644 card."""
    import os
    import stat

    weights = temp_weights / "fsrcnn_x2.safetensors"
    card = weights.with_suffix(".json")
    assert stat.S_IMODE(os.stat(weights).st_mode) == stat.S_IMODE(os.stat(card).st_mode)


def test_op_through_tiling_layer_equals_whole(temp_weights, small_rgb):
    from pixelmill.ops import get_op
    from pixelmill.pipeline import load_pipeline
    from pixelmill.tiled._array import process_array_tiled

    spec = get_op("super_resolve")
    params = spec.bind({"model": "fsrcnn", "scale": 2, "device": "cpu"})
    assert spec.scale(params) == 2.0 and spec.halo(params) >= 7
    pipe = load_pipeline([{"op": "super_resolve", "model": "fsrcnn", "scale": 2, "device": "cpu"}])
    image = small_rgb.astype(np.float32) / 255
    whole = pipe(image)
    if not isinstance(whole, np.ndarray):
        whole = whole.image
    tiled = process_array_tiled(pipe, image, tile=32)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    # the op loads its network once per process
    assert sr_weights._load.cache_info().misses == 1


def test_op_halo_follows_the_shipped_models_own_depth(tmp_path, monkeypatch, small_rgb):
    """The op's halo used the default architecture (4 EDSR blocks, 11 px): a shipped model
    with more blocks would have been tiled with too little context, and tiled output would
    have differed from whole-image output."""
    from pixelmill.ops import get_op
    from pixelmill.pipeline import load_pipeline
    from pixelmill.sr.receptive import receptive_field
    from pixelmill.tiled._array import process_array_tiled

    torch.manual_seed(1)
    net = build_model("edsr", 3, {"blocks": 6})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    card = {"architecture": "edsr", "scale": 3, "name": "edsr", "params": {"blocks": 6},
            "training": {"epochs": 0}}
    save_model(net, card, tmp_path / "edsr_x3")
    monkeypatch.setattr(sr_weights, "WEIGHTS_DIR", tmp_path)
    sr_weights._load.cache_clear()
    try:
        spec = get_op("super_resolve")
        params = spec.bind({"model": "edsr", "scale": 3, "device": "cpu"})
        assert spec.halo(params) == receptive_field("edsr", 3, {"blocks": 6}) == 15
        pipe = load_pipeline([{"op": "super_resolve", "model": "edsr", "scale": 3,
                               "device": "cpu"}])
        image = small_rgb[:60, :70].astype(np.float32) / 255
        np.testing.assert_allclose(process_array_tiled(pipe, image, tile=16), pipe(image),
                                   atol=2e-5)
    finally:
        sr_weights._load.cache_clear()


def test_op_rejects_missing_weights_before_work(temp_weights):
    from pixelmill.ops import get_op

    with pytest.raises(InvalidParameterError, match=r"no shipped weights.*espcn.*scale 3"):
        get_op("super_resolve").bind({"model": "espcn", "scale": 3})
    with pytest.raises(InvalidParameterError, match="scale"):
        get_op("super_resolve").bind({"model": "fsrcnn", "scale": 5})


# ---- geometric self-ensemble ---------------------------------------------------------------
@pytest.mark.parametrize(("arch", "scale"), [("edsr", 2), ("fsrcnn", 3)])
def test_self_ensemble_is_the_mean_of_the_eight_transforms(arch, scale, small_rgb):
    from pixelmill.sr.infer import upscale_luma

    model = random_model(arch, scale)
    plane = small_rgb[:23, :31, 1].astype(np.float32) / 255  # not square: rotations change shape
    expected = np.zeros((23 * scale, 31 * scale), np.float64)
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(plane, k)
            x = x[:, ::-1] if flip else x
            y = upscale_luma(model, np.ascontiguousarray(x))
            y = y[:, ::-1] if flip else y
            expected += np.rot90(y, -k)
    got = upscale_luma(model, plane, ensemble=True)
    np.testing.assert_allclose(got, expected / 8, atol=1e-5)
    assert np.abs(got - upscale_luma(model, plane)).max() > 1e-3  # not the plain pass


def test_self_ensemble_commutes_with_flips_and_tiles(small_rgb):
    model = random_model("edsr", 2)
    image = small_rgb[:45, :61].astype(np.float32) / 255
    whole = upscale_image(image, model, 2, ensemble=True)
    # an ensemble over the dihedral group is equivariant: flipping the input flips the output
    flipped = upscale_image(np.ascontiguousarray(image[::-1]), model, 2, ensemble=True)
    np.testing.assert_allclose(flipped[::-1], whole, atol=2e-5)
    tiled = upscale_tiled(image, model, 2, tile=16, batch=3, ensemble=True)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def test_op_ensemble_parameter(temp_weights, small_rgb):
    from pixelmill.ops import get_op

    spec = get_op("super_resolve")
    image = small_rgb[:30, :40]
    plain = spec(image, model="fsrcnn", scale=2, device="cpu")
    ens = spec(image, model="fsrcnn", scale=2, device="cpu", ensemble=True)
    assert ens.shape == plain.shape == (60, 80, 3) and not np.array_equal(ens, plain)
    with pytest.raises(InvalidParameterError, match="ensemble"):
        spec.bind({"model": "fsrcnn", "scale": 2, "ensemble": "yes please"})
