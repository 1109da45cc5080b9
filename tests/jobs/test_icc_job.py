"""A job writes its input's ICC colour profile into each output whose values are still in that
colour space (a P3 or Adobe RGB photo's thumbnail would otherwise be read as sRGB and shift)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

from pixelmill import codecs
from pixelmill.jobs import run
from pixelmill.pipeline import Pipeline


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
    # the manifest names the profile each output carries, and only those
    from pixelmill.manifest import read_manifest

    icc = {r["relpath"]: r.get("icc") for r in read_manifest(str(out / "manifest.parquet"))}
    assert icc == {"p3.jpg": "sRGB built-in", "srgb.png": "sRGB built-in",
                   "tagged.webp": "sRGB built-in", "tagged_t.tif": "sRGB built-in",
                   "plain.png": None, "gray_rgbprofile.jpg": None}
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


def test_tiled_outputs_carry_the_profile_on_every_route(tmp_path, engine):
    import tifffile

    from pixelmill.tiled import run_tiled

    _, other = _profiles()
    img = np.random.default_rng(5).integers(0, 256, (300, 260, 3), np.uint8)
    tifffile.imwrite(tmp_path / "scan.tif", img, tile=(64, 64), iccprofile=other,
                     photometric="rgb")
    Image.fromarray(img).save(tmp_path / "scan.png", icc_profile=other)

    def tiff_icc(path):
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(34675)
            return None if tag is None else bytes(tag.value)

    blur = [{"op": "gaussian", "sigma": 1.0}]
    routes = {"canvas": {}, "pyramid": {"pyramid": True}, "zlib": {"compression": "zlib"}}
    for name, kw in routes.items():
        for src in ("scan.tif", "scan.png"):
            out = tmp_path / f"{name}-{src}.tif"
            s = run_tiled(blur, str(tmp_path / src), str(out), tile=64, engine=engine,
                          progress=False, **kw)
            assert s.status == "ok" and tiff_icc(out) == other, (name, src)
            np.testing.assert_array_equal(tifffile.imread(out, level=0) if kw else
                                          tifffile.imread(out),
                                          Pipeline.from_steps(blur)(img))
    out = tmp_path / "gray.tif"  # a result that is no longer in the profile's space: none
    run_tiled([{"op": "sobel"}], str(tmp_path / "scan.tif"), str(out), tile=64, engine=engine,
              progress=False)
    assert tiff_icc(out) is None
    # a job input above --tile-threshold takes the tiled route and keeps its profile too
    src = tmp_path / "in"
    src.mkdir()
    (src / "scan.tif").write_bytes((tmp_path / "scan.tif").read_bytes())
    s = run({"steps": blur}, str(src), str(tmp_path / "job"), engine=engine, progress=False,
            report=False, tile_threshold=10_000)
    assert s.ok == 1 and tiff_icc(tmp_path / "job" / "scan.tif") == other
    from pixelmill.manifest import read_manifest

    row = next(r for r in read_manifest(str(tmp_path / "job" / "manifest.parquet"))
               if r["relpath"] == "scan.tif")
    assert row["tiled"] and row["icc"] == "sRGB built-in"


def test_which_pipelines_keep_the_colour_space_measuring_steps_and_laplacian():
    """A measuring step leaves the image as it is: ``gaussian`` + ``component_stats`` wrote the
    blurred colour image untagged (the op is filed under segmentation). ``laplacian`` (a
    signed second derivative, an edge map as ``sobel`` is) wrote a float TIFF tagged RGB."""
    keeps = [[{"op": "gaussian", "sigma": 1}, {"op": "component_stats"}],
             [{"op": "resize", "long_side": 40}, {"op": "phash"}, {"op": "sharpness"}],
             [{"op": "gaussian", "sigma": 1}]]
    leaves = [[{"op": "laplacian"}], [{"op": "gaussian", "sigma": 1}, {"op": "laplacian"}],
              [{"op": "sobel"}], [{"op": "threshold"}], [{"op": "convert", "to": "gray"}]]
    assert [Pipeline.from_steps(s).keeps_colour_space for s in keeps] == [True] * len(keeps)
    assert [Pipeline.from_steps(s).keeps_colour_space for s in leaves] == [False] * len(leaves)


def test_a_measuring_step_keeps_the_outputs_profile_in_a_job(tmp_path, engine):
    _, other = _profiles()
    src = tmp_path / "in"
    src.mkdir()
    img = np.random.default_rng(5).integers(0, 256, (30, 40, 3), np.uint8)
    Image.fromarray(img).save(src / "a.png", icc_profile=other)
    out = tmp_path / "out"
    run({"steps": [{"op": "gaussian", "sigma": 1}, {"op": "component_stats"}]}, str(src),
        str(out), engine=engine, progress=False, report=False)
    assert codecs.icc_profile((out / "a.png").read_bytes()) == other
    lap = tmp_path / "lap"
    run({"steps": [{"op": "laplacian"}]}, str(src), str(lap), engine=engine, progress=False,
        report=False, format="tif")
    assert codecs.icc_profile((lap / "a.tif").read_bytes()) is None
