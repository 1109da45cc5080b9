"""The networks' forward passes, made faster, compute what the textbook layers compute.

FSRCNN's 9×9 deconvolution runs as the sub-pixel convolution it equals (one output channel per
phase, then a pixel shuffle); EDSR's residual blocks add in place; every network runs its
feature maps channels-last. The references here are PyTorch's own ``ConvTranspose2d`` and the
plain out-of-place formulas, values and gradients alike.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from pixelmill.sr.models import build_model


def _fsrcnn_reference(net, x):
    return net.deconv(net.body(x.contiguous()))


def _edsr_reference(net, x):
    base = F.interpolate(x, scale_factor=net.scale, mode="bicubic", align_corners=False)
    feat = net.head(x)
    h = feat
    for blk in net.body:
        h = h + blk.res_scale * blk.conv2(F.relu(blk.conv1(h)))
    feat = feat + net.body_tail(h)
    return base + F.pixel_shuffle(net.tail(feat), net.scale)


def _espcn_reference(net, x):
    y = torch.tanh(net.conv2(torch.tanh(net.conv1(x))))
    return F.pixel_shuffle(net.conv3(y), net.scale)


REFERENCES = {"fsrcnn": _fsrcnn_reference, "edsr": _edsr_reference, "espcn": _espcn_reference}


def _randomised(arch: str, scale: int, **params):
    torch.manual_seed(scale)
    net = build_model(arch, scale, params)
    with torch.no_grad():  # the zero-initialised tails would hide a wrong tail
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("arch,params", [("fsrcnn", {}), ("espcn", {}),
                                         ("edsr", {"blocks": 2, "res_scale": 1.0}),
                                         ("edsr", {"blocks": 2, "res_scale": 0.1})])
def test_forward_and_gradients_equal_the_plain_layers(arch, params, scale):
    net = _randomised(arch, scale, **params)
    x = torch.rand(2, 1, 13, 17)
    got = net(x)
    want = REFERENCES[arch](net, x)
    assert got.shape == want.shape == (2, 1, 13 * scale, 17 * scale)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    target = torch.rand_like(want)
    grads = []
    for fn in (net, lambda z: REFERENCES[arch](net, z)):
        net.zero_grad()
        F.l1_loss(fn(x), target).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for g, w in zip(*grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_fsrcnn_subpixel_weights_follow_the_deconvolution_as_it_trains():
    net = _randomised("fsrcnn", 3)
    x = torch.rand(1, 1, 9, 9)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    F.l1_loss(net(x), torch.zeros(1, 1, 27, 27)).backward()
    opt.step()  # the deconvolution's weights change in place
    with torch.no_grad():
        torch.testing.assert_close(net(x), _fsrcnn_reference(net, x), rtol=0, atol=2e-5)


def test_channels_last_weights_save_and_load_as_the_same_network(tmp_path):
    from safetensors.torch import load_file

    from pixelmill.sr.weights import load_model, save_model

    net = _randomised("edsr", 2, blocks=1)
    w = net.body[0].conv1.weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    assert not w.is_contiguous()  # the case safetensors refuses as it is
    card = {"name": "t", "architecture": "edsr", "scale": 2, "params": {"blocks": 1}}
    path = save_model(net, card, tmp_path / "t")
    stored = load_file(path)
    assert all(t.is_contiguous() for t in stored.values())
    torch.testing.assert_close(stored["body.0.conv1.weight"], w.detach())
    loaded = load_model(str(path), 2).net
    x = torch.rand(1, 1, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)


def test_fsrcnn_trains_after_a_first_pass_under_inference_mode():
    """The sub-pixel index is built on the first pass: built under inference_mode (a
    validation or upscale pass first) it was an inference tensor, and every later training
    pass failed ("Inference tensors cannot be saved for backward")."""
    net = _randomised("fsrcnn", 2)
    x = torch.rand(1, 1, 8, 8)
    with torch.inference_mode():
        first = net(x)
    out = net(x)
    out.mean().backward()
    assert net.deconv.weight.grad is not None and net.deconv.weight.grad.abs().sum() > 0
    torch.testing.assert_close(out.detach(), first, rtol=0, atol=1e-6)
