"""A job writes its input's ICC colour profile into each output whose values are still in that
colour space (a P3 or Adobe RGB photo's thumbnail would otherwise be read as sRGB and shift)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

from pixelmill import codecs
from pixelmill.jobs import run


def _profiles():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # a second RGB profile (another description): which one an output got is visible
    other = srgb[:16] + b"RGB " + srgb[20:-8] + b"pmtest01"
    return srgb, other


def test_outputs_carry_their_inputs_profile_unless_the_pipeline_changes_colour_space(tmp_path,
                                                                                   engine):
    srgb, other = _profiles()
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (60, 80, 3), np.uint8)
    Image.fromarray(img).save(src / "p3.jpg", quality=92, icc_profile=other)
    Image.fromarray(img).save(src / "srgb.png", icc_profile=srgb)
    Image.fromarray(img).save(src / "plain.png")
    Image.fromarray(img).save(src / "tagged.webp", lossless=True, icc_profile=other)
    Image.fromarray(img).save(src / "tagged_t.tif", icc_profile=other)
    Image.fromarray(img[..., 0]).save(src / "gray_rgbprofile.jpg", icc_profile=srgb)

    def icc_of(path):
        with Image.open(path) as im:
            return im.info.get("icc_profile")

    blur = {"steps": [{"op": "resize", "long_side": 40, "method": "area"},
                      {"op": "gaussian", "sigma": 1.0}]}
    out = tmp_path / "same"
    s = run(blur, str(src), str(out), engine=engine, progress=False, report=False)
    assert s.ok == 6
    assert icc_of(out / "p3.jpg") == other and icc_of(out / "srgb.png") == srgb
    assert icc_of(out / "tagged.webp") == other and icc_of(out / "tagged_t.tif") == other
    assert icc_of(out / "plain.png") is None
    assert icc_of(out / "gray_rgbprofile.jpg") is None  # a gray image: an RGB profile cannot fit
    # with another --format, the profile goes with the values into the new format
    pngs = tmp_path / "as_png"
    run(blur, str(src), str(pngs), engine=engine, progress=False, report=False, format="png")
    assert icc_of(pngs / "p3.png") == other and icc_of(pngs / "tagged_t.png") == other
    # the pixels are those of the untagged input's output
    np.testing.assert_array_equal(codecs.decode((pngs / "tagged.png").read_bytes()),
                                  codecs.decode((pngs / "plain.png").read_bytes()))
    # a colour conversion leaves the profile's space: no profile
    to_ycc = {"steps": [{"op": "convert", "to": "ycbcr"}]}
    conv = tmp_path / "conv"
    run(to_ycc, str(src), str(conv), engine=engine, progress=False, report=False)
    assert icc_of(conv / "p3.jpg") is None and icc_of(conv / "srgb.png") is None
    with Image.open(io.BytesIO((out / "p3.jpg").read_bytes())) as im:  # a valid JPEG still
        im.load()


def test_upscale_keeps_the_input_profile(tmp_path):
    from click.testing import CliRunner

    from pixelmill.cli import cli

    _, other = _profiles()
    img = np.random.default_rng(4).integers(0, 256, (24, 32, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png", icc_profile=other)
    result = CliRunner().invoke(cli, ["upscale", str(tmp_path / "in.png"),
                                      str(tmp_path / "out.jpg"), "--scale", "2",
                                      "--model", "bicubic"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (64, 48) and im.info.get("icc_profile") == other
