"""Images with more than 4 channels: reported as they are, refused on decoding, never cut to 4.

Bug: a TIFF of 5 samples per pixel probed as 2 channels (``LA``), decoded to 4 channels (the
5th silently dropped), and a run wrote it on as an RGBA TIFF marked ok. pixelmill's layouts
(and its ops and encoders) take 1 to 4 channels, so decoding refuses more with a reason, and
the file is an invalid row of ``scan --verify`` and ``run``. tifffile writes the files and says
how many samples they store (the independent reference).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from pixelmill import codecs
from pixelmill.cli import cli
from pixelmill.errors import DecodeError
from pixelmill.images import read_image
from pixelmill.inventory import scan

REASON = "5 channels: pixelmill reads images with 1 to 4 channels (gray, gray+alpha, RGB, RGBA)"


@pytest.fixture(scope="module")
def samples(photo, gray_photo) -> np.ndarray:
    """96×128×5 uint8: a photo's RGB, its gray, and one more plane."""
    return np.dstack([photo, gray_photo, 255 - gray_photo])


def _tiff(tmp_path, name: str, array: np.ndarray, **kw) -> bytes:
    path = tmp_path / name
    tifffile.imwrite(path, array, **kw)
    return path.read_bytes()


def _five_channel_tiffs(tmp_path, samples) -> dict[str, bytes]:
    out = {
        "gray-contig": _tiff(tmp_path, "gray-contig.tif", samples, photometric="minisblack",
                             planarconfig="contig"),
        "gray-planar": _tiff(tmp_path, "gray-planar.tif", np.moveaxis(samples, -1, 0),
                             photometric="minisblack", planarconfig="separate"),
        "rgb-contig": _tiff(tmp_path, "rgb-contig.tif", samples, photometric="rgb"),
        "rgb-planar": _tiff(tmp_path, "rgb-planar.tif", np.moveaxis(samples, -1, 0),
                            photometric="rgb", planarconfig="separate"),
        # CMYK + 2 extra samples: RGB + 2 once converted
        "cmyk-contig": _tiff(tmp_path, "cmyk-contig.tif", np.dstack([samples, samples[..., :1]]),
                             photometric="separated"),
    }
    for name in out:
        with tifffile.TiffFile(tmp_path / f"{name}.tif") as tif:
            assert tif.pages.first.samplesperpixel in (5, 6), name
            assert len(tif.pages) == 1, name
    return out


def test_probe_reports_every_channel(tmp_path, samples):
    for name, data in _five_channel_tiffs(tmp_path, samples).items():
        info = codecs.probe(data)
        assert (info.width, info.height, info.channels) == (128, 96, 5), name
        assert info.mode == "", name  # no pixelmill layout has 5 channels
        assert info.shape() == (96, 128, 5), name


def test_decoding_more_than_4_channels_is_refused(tmp_path, samples):
    for name, data in _five_channel_tiffs(tmp_path, samples).items():
        for fn in (codecs.decode, codecs.verify):
            with pytest.raises(DecodeError) as e:
                fn(data)
            assert str(e.value) == REASON, name
    with pytest.raises(DecodeError, match=r"gray-planar\.tif: 5 channels"):
        read_image(str(tmp_path / "gray-planar.tif"))


def test_a_later_page_with_more_channels_is_refused(tmp_path, samples):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(samples[..., :3], photometric="rgb")
        tw.write(samples, photometric="minisblack", planarconfig="contig")
    data = path.read_bytes()
    np.testing.assert_array_equal(codecs.decode(data), samples[..., :3])
    with pytest.raises(DecodeError, match=r"^5 channels: "):
        codecs.decode(data, page=1)
    reverse = tmp_path / "reverse.tif"  # a first page pixelmill cannot read, a second it can
    with tifffile.TiffWriter(reverse) as tw:
        tw.write(samples, photometric="minisblack", planarconfig="contig")
        tw.write(samples[..., :3], photometric="rgb")
    np.testing.assert_array_equal(codecs.decode(reverse.read_bytes(), page=1), samples[..., :3])


def test_up_to_4_channels_still_decode_as_probed(tmp_path, samples):
    cases = {
        "la": (samples[..., 3:5], dict(photometric="minisblack", planarconfig="contig"), "LA"),
        "la-planar": (samples[..., 3:5], dict(photometric="minisblack",
                                              planarconfig="separate"), "LA"),
        "rgba": (samples[..., :4], dict(photometric="rgb", extrasamples=["unassalpha"]), "RGBA"),
        "rgba-planar": (samples[..., :4], dict(photometric="rgb", planarconfig="separate",
                                               extrasamples=["unassalpha"]), "RGBA"),
        "gray+2": (samples[..., 2:5], dict(photometric="minisblack", planarconfig="contig"),
                   "RGB"),  # decoded as its 3 samples (it was probed as 2)
    }
    for name, (arr, kw, mode) in cases.items():
        stored = np.moveaxis(arr, -1, 0) if kw.get("planarconfig") == "separate" else arr
        data = _tiff(tmp_path, f"{name}.tif", stored, **kw)
        info = codecs.probe(data)
        out = codecs.decode(data)
        np.testing.assert_array_equal(out, arr, err_msg=name)
        assert (info.channels, info.mode) == (arr.shape[2], mode), name
        assert info.shape() == out.shape, name


def test_cmyk_with_alpha_is_rgba(tmp_path, samples):
    data = _tiff(tmp_path, "cmyka.tif", samples, photometric="separated",
                 extrasamples=["unassalpha"])
    info = codecs.probe(data)
    out = codecs.decode(data)
    assert (info.channels, info.mode) == (4, "RGBA") and out.shape == (96, 128, 4)
    np.testing.assert_array_equal(out[..., 3], samples[..., 4])


def test_scan_lists_the_true_channels_and_verify_marks_it_invalid(tmp_path, samples, engine):
    _five_channel_tiffs(tmp_path, samples)
    header = {r["uri"].rsplit("/", 1)[-1]: r for r in scan(str(tmp_path), engine=engine)
              .to_pylist()}
    assert {r["channels"] for r in header.values()} == {5}
    assert {r["mode"] for r in header.values()} == {""}
    # the header alone already says pixelmill cannot read them (was valid until --verify)
    assert not any(r["valid"] for r in header.values())
    assert all(REASON in r["reason"] for r in header.values())
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), "--verify", "--json", "--no-progress",
                                   "--workers", "1"])
    assert res.exit_code == 3, res.output
    summary = json.loads(res.output)
    assert summary["invalid"] == 5 and summary["valid"] == 0, summary
    reasons = json.dumps(summary)
    assert REASON in reasons, reasons
