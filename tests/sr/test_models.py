"""Shipped weights: complete cards, loadable safetensors (no pickle), and each model beats
MATLAB bicubic under the evaluation protocol on photographs never used for training
(scikit-image's coffee and chelsea samples)."""

from __future__ import annotations

import json

import pytest

from pixelmill.sr.evaluate import evaluate_arrays
from pixelmill.sr.infer import upscale_image
from pixelmill.sr.weights import WEIGHTS_DIR, available_models, load_model

from .conftest import require_shipped

CARDS = available_models()


def test_every_weights_file_has_a_card_and_no_pickle_ships():
    for path in WEIGHTS_DIR.glob("*.safetensors"):
        card = json.loads(path.with_suffix(".json").read_text())
        assert {"architecture", "scale", "params", "training", "validation",
                "training_data"} <= set(card), path.name
        assert path.stat().st_size < 5 * 2**20
    assert not [p for p in WEIGHTS_DIR.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".bin")]


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return [data.coffee()[100:220, 150:294], data.chelsea()[60:180, 120:264]]


@pytest.mark.parametrize("card", CARDS, ids=[c["file"] for c in CARDS])
def test_shipped_model_beats_bicubic_on_unseen_photos(card, photos):
    scale = int(card["scale"])
    model = load_model(card["name"], scale)
    gains, ssim_gains = [], []
    for hr in photos:
        ours = evaluate_arrays(hr, scale, lambda lr, m=model: upscale_image(lr, m, scale))
        bicubic = evaluate_arrays(hr, scale, lambda lr: upscale_image(lr, None, scale))
        gains.append(ours["psnr"] - bicubic["psnr"])
        ssim_gains.append(ours["ssim"] - bicubic["ssim"])
    assert min(gains) > 0.0 and sum(gains) / len(gains) > 0.3, gains
    assert sum(ssim_gains) > 0, ssim_gains


def test_best_x2_model_is_shipped_and_cached():
    require_shipped("edsr", 2)
    assert load_model("edsr", 2) is load_model("edsr", 2)


def test_a_deeper_edsr_grown_from_a_shallower_one_starts_as_the_same_function(tmp_path):
    """`sr train --param blocks=6 --init edsr_x3.safetensors` (how the shipped 6-block ×3
    was made): the appended blocks start as identities instead of random noise."""
    import torch
    from safetensors.torch import save_file

    from pixelmill.sr.models import build_model
    from pixelmill.sr.training import _init_from

    torch.manual_seed(0)
    small = build_model("edsr", 3, {"blocks": 4})
    with torch.no_grad():
        for p in small.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, tmp_path / "s.safetensors")
    grown = build_model("edsr", 3, {"blocks": 6})
    assert _init_from(grown, str(tmp_path / "s.safetensors")) == len(small.state_dict())
    x = torch.rand(1, 1, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), small(x))
        assert grown.body[4].conv1.weight.abs().sum() > 0  # still trainable, not dead


def test_a_wider_edsr_grown_from_a_narrower_one_starts_as_the_same_function(tmp_path):
    """`sr train --param channels=48 --init <32-channel edsr>`: the source fills the leading
    channels, old channels ignore the new ones, so the output is unchanged; the new channels
    carry features and the weights that read them get a gradient (training can use them)."""
    import torch
    from safetensors.torch import save_file

    from pixelmill.sr.models import build_model
    from pixelmill.sr.training import _init_from

    torch.manual_seed(0)
    narrow = build_model("edsr", 3, {"blocks": 3, "channels": 16})
    with torch.no_grad():
        for p in narrow.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_file({k: v.contiguous() for k, v in narrow.state_dict().items()}, tmp_path / "n.safetensors")
    wide = build_model("edsr", 3, {"blocks": 4, "channels": 24})
    assert _init_from(wide, str(tmp_path / "n.safetensors")) == len(narrow.state_dict())
    x = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), narrow(x))
        torch.testing.assert_close(wide.body[1].conv1.weight[:16, :16], narrow.body[1].conv1.weight)
        assert wide.head(x)[:, 16:].abs().mean() > 1e-3  # the new channels are not dead
    loss = (wide(x) - torch.rand(2, 1, 60, 72)).abs().mean()
    loss.backward()
    assert wide.tail.weight.grad[:, 16:].abs().sum() > 0  # the tail can learn to read them
    assert wide.body[3].conv2.weight.grad.abs().sum() > 0  # the appended block too

    # a different scale's tail (x2: 4 sub-pixel channels, x3: 9) is never copied in part
    x2 = build_model("edsr", 2, {"blocks": 3, "channels": 16})
    save_file({k: v.contiguous() for k, v in x2.state_dict().items()}, tmp_path / "x2.safetensors")
    before = wide.tail.weight.detach().clone()
    assert _init_from(wide, str(tmp_path / "x2.safetensors")) == len(x2.state_dict()) - 2
    torch.testing.assert_close(wide.tail.weight, before)


_SR_TRAIN = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared/data/sr-train"


@pytest.mark.skipif(not _SR_TRAIN.is_dir(), reason="the training data (../shared/data/sr-train) "
                    "is beside the repository only on the machine that trained the models")
@pytest.mark.parametrize(("model", "scale"), [("espcn", 2), ("fsrcnn", 3)])
def test_card_figures_are_what_eval_gives_for_the_shipped_weights(model, scale):
    """The cards' held-out PSNR/SSIM are reproduced by `sr eval --split val` (ESPCN ×2 said
    32.266 where the shipped float16 weights give 32.2645)."""
    from click.testing import CliRunner

    from pixelmill.cli import cli

    res = CliRunner().invoke(cli, ["sr", "eval", str(_SR_TRAIN), "--split", "val", "--scale",
                                    str(scale), "--model", model, "--json"])
    assert res.exit_code == 0, res.output
    mean = json.loads(res.output[res.output.index("{"):])["mean"]
    card = json.loads((WEIGHTS_DIR / f"{model}_x{scale}.json").read_text())["validation"]
    assert round(mean["psnr"], 3) == card["heldout_psnr"]
    assert round(mean["ssim"], 4) == card["heldout_ssim"]
