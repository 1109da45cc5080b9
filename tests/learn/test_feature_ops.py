"""Feature ops against scikit-image / NumPy / SciPy references, and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from skimage import color as skcolor
from skimage import feature as skfeature

from pixelmill.errors import InvalidParameterError
from pixelmill.learn.regions import pool_regions, region_windows
from pixelmill.ops import get_op, registry
from pixelmill.pipeline import Pipeline

FEATURE_OPS = sorted(n for n, s in registry().items() if s.output == "vector")


def test_registry_declares_every_feature_op():
    assert set(FEATURE_OPS) == {"color_histogram", "color_moments", "hog", "lbp_histogram", "glcm",
                                "gradient_stats", "cnn_embedding"}
    for name in FEATURE_OPS:
        spec = get_op(name)
        assert {"grid", "overlap", "pool"} <= set(spec.params), name
        assert spec.params["pool"].choices == ("concat", "mean", "max")
        assert all(p.doc for p in spec.params.values()), name
    assert get_op("classify").output == "measures"


@pytest.mark.parametrize("name", FEATURE_OPS)
def test_vector_is_float32_1d_and_equal_across_dtypes(name, astronaut):
    img = astronaut[::4, ::4]
    spec = get_op(name)
    v8 = spec(img)
    assert v8.dtype == np.float32 and v8.ndim == 1 and v8.size > 0 and np.isfinite(v8).all()
    v16 = spec(img.astype(np.uint16) * 257)
    vf = spec(img.astype(np.float32) / 255)
    # the same picture in another dtype gives the same vector (8-bit quantisation aside)
    assert np.allclose(v8, vf, atol=2e-2, rtol=2e-2), name
    assert np.allclose(v8, v16, atol=2e-2, rtol=2e-2), name


def test_hog_equals_scikit_image(camera):
    ours = get_op("hog")(camera, orientations=8, pixels_per_cell=[16, 16],
                         cells_per_block=[2, 2])
    ref = skfeature.hog(camera.astype(np.float32) / 255, orientations=8,
                        pixels_per_cell=(16, 16), cells_per_block=(2, 2), block_norm="L2-Hys")
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_lbp_histogram_equals_scikit_image(camera):
    ours = get_op("lbp_histogram")(camera, P=8, R=2.0, method="uniform")
    codes = skfeature.local_binary_pattern(camera, 8, 2.0, method="uniform").astype(int)
    ref = np.bincount(codes.ravel(), minlength=10) / codes.size
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert ours.size == 10 and abs(ours.sum() - 1) < 1e-5


def test_glcm_equals_scikit_image(camera):
    ours = get_op("glcm")(camera, distances=[1, 3], angles=[0, 90], levels=16,
                          props=["contrast", "correlation", "energy"], average_angles=False)
    q = np.clip(np.floor(camera.astype(np.float32) / 255 * 16), 0, 15).astype(np.uint8)
    m = skfeature.graycomatrix(q, [1, 3], [0, np.pi / 2], levels=16, symmetric=True, normed=True)
    ref = np.stack([skfeature.graycoprops(m, p) for p in ("contrast", "correlation", "energy")])
    np.testing.assert_allclose(ours, ref.ravel(), rtol=1e-5)


def test_color_histogram_equals_numpy(rng):
    img = rng.random((40, 50, 3), dtype=np.float32)
    ours = get_op("color_histogram")(img, bins=5, space="rgb")
    ref = np.concatenate([np.histogram(img[:, :, c], bins=5, range=(0, 1))[0] for c in range(3)])
    np.testing.assert_allclose(ours, ref / img[:, :, 0].size, atol=1e-6)
    joint = get_op("color_histogram")(img, bins=4, space="rgb", joint=True)
    ref_joint, _ = np.histogramdd(img.reshape(-1, 3), bins=4, range=[(0, 1)] * 3)
    np.testing.assert_allclose(joint, ref_joint.ravel() / 2000, atol=1e-6)


@pytest.mark.parametrize("space", ["hsv", "lab"])
def test_color_spaces_agree_with_scikit_image(space, astronaut):
    img = astronaut[::8, ::8]
    # OpenCV's float Lab (D65) differs from scikit-image's by < 0.2 of L* in [0, 100]
    ours = get_op("color_moments")(img, space=space).reshape(3, 3)  # channel × (mean, std, skew)
    ref_img = (skcolor.rgb2hsv(img) if space == "hsv" else skcolor.rgb2lab(img)).reshape(-1, 3)
    np.testing.assert_allclose(ours[:, 0], ref_img.mean(0), atol=0.2 if space == "lab" else 2e-3)
    np.testing.assert_allclose(ours[:, 1], ref_img.std(0), atol=0.2 if space == "lab" else 2e-3)


def test_color_moments_equal_scipy(rng):
    img = (rng.gamma(2.0, 30.0, (30, 30, 3))).clip(0, 255).astype(np.uint8)
    ours = get_op("color_moments")(img, space="rgb").reshape(3, 3)
    x = img.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(ours[:, 0], x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ours[:, 1], x.std(0), rtol=1e-5)
    np.testing.assert_allclose(ours[:, 2], stats.skew(x, axis=0, bias=True), rtol=1e-4)
    flat = get_op("color_moments")(np.full((5, 5, 3), 7, np.uint8), space="rgb")
    assert np.all(flat.reshape(3, 3)[:, 2] == 0)  # constant channel: skewness 0, not nan


def test_gradient_stats_of_a_ramp():
    slope = 0.01  # gray units per pixel
    ramp = (np.arange(64, dtype=np.float32) * slope)[None, :].repeat(32, axis=0)
    v = get_op("gradient_stats")(ramp, bins=4, threshold=0.005)
    mean, std, p50, p90, p99, density, *hist = v
    assert mean <= p99 and std > 0 and p90 == pytest.approx(slope, rel=1e-4)
    assert p50 == pytest.approx(slope, rel=1e-4)  # interior pixels see the exact slope
    assert density > 0.9
    assert hist[0] == pytest.approx(1.0, abs=1e-6)  # all magnitude at 0° (horizontal gradient)
    v_t = get_op("gradient_stats")(np.ascontiguousarray(ramp.T), bins=4, threshold=0.005)
    assert v_t[6 + 2] == pytest.approx(1.0, abs=1e-6)  # 90°: third of four bins


def test_region_windows_partition_and_overlap():
    wins = region_windows((10, 13), (3, 4))
    cover = np.zeros((10, 13), int)
    for r, c in wins:
        cover[r, c] += 1
    assert len(wins) == 12 and (cover == 1).all()  # a grid partitions the image
    wins = region_windows((100, 100), (3, 3), overlap=0.5)
    sizes = {(r.stop - r.start, c.stop - c.start) for r, c in wins}
    assert len(sizes) == 1 and wins[0][0].start == 0 and wins[-1][0].stop == 100
    size = sizes.pop()[0]
    assert wins[1][1].start == pytest.approx(size / 2, abs=1)  # neighbours share half
    with pytest.raises(InvalidParameterError, match="grid"):
        region_windows((2, 2), (3, 1))


@pytest.mark.parametrize("pool", ["concat", "mean", "max"])
def test_pooling_matches_regions_by_hand(pool, astronaut):
    img = astronaut[:120, :90]
    op = get_op("color_histogram")
    pooled = op(img, bins=4, grid=[2, 3], pool=pool)
    regions = np.stack([op(img[r, c], bins=4) for r, c in region_windows(img.shape, (2, 3))])
    expected = {"concat": regions.ravel(), "mean": regions.mean(0), "max": regions.max(0)}[pool]
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    assert pool_regions(img, lambda a: np.array([a.shape[0]]), grid=(2, 1), pool="max")[0] == 60


def test_hog_regions_need_a_size_and_bad_params_name_the_field():
    with pytest.raises(InvalidParameterError, match=r"steps\[0\].*size"):
        Pipeline.from_steps([{"op": "hog", "grid": [2, 2]}])
    with pytest.raises(InvalidParameterError, match=r"steps\[0\]\.pool"):
        Pipeline.from_steps([{"op": "lbp_histogram", "pool": "median"}])
    with pytest.raises(InvalidParameterError, match="joint"):
        Pipeline.from_steps([{"op": "color_histogram", "joint": True, "bins": 32}])
    with pytest.raises(InvalidParameterError, match=r"props\[0\]"):
        Pipeline.from_steps([{"op": "glcm", "props": ["sharpness"]}])
    pipe = Pipeline.from_steps([{"op": "hog", "size": [32, 32], "grid": [2, 2], "overlap": 0.5,
                                 "pool": "mean"}])
    v1 = pipe.run(np.zeros((50, 70), np.uint8)).vectors["hog"]
    v2 = pipe.run(np.zeros((90, 40), np.uint8)).vectors["hog"]
    assert v1.shape == v2.shape  # one length whatever the image size


def test_image_smaller_than_a_hog_block_is_an_invalid_row_with_its_reason(tmp_path):
    import cv2
    import pandas as pd

    from pixelmill.errors import UnsuitableImageError
    from pixelmill.jobs import run

    with pytest.raises(UnsuitableImageError, match=r"20 rows × 30 columns.*24 × 24.*size"):
        get_op("hog")(np.zeros((20, 30), np.uint8))
    assert get_op("hog")(np.zeros((24, 24), np.uint8)).size == 81  # one block of 3×3 cells
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "small.png"), np.full((20, 30), 7, np.uint8))
    cv2.imwrite(str(src / "big.png"), np.full((40, 40), 7, np.uint8))
    summary = run({"steps": [{"op": "hog"}]}, str(src), None,
                  manifest=str(tmp_path / "m.parquet"), report=False)
    rows = pd.read_parquet(tmp_path / "m.parquet").set_index("relpath")
    assert (summary.ok, summary.invalid, summary.failed) == (1, 1, 0)
    assert rows.loc["small.png", "status"] == "invalid"
    assert "smaller than one block" in rows.loc["small.png", "reason"]


def test_cnn_embedding_is_deterministic_and_loaded_once(astronaut):
    from pixelmill.learn.models import load_model

    op = get_op("cnn_embedding")
    a = op(astronaut[::4, ::4])
    b = op(astronaut[::4, ::4])
    assert a.shape == (64,) and np.array_equal(a, b)
    probs = op(astronaut[::4, ::4], layer="probabilities")
    assert probs.shape == (20,) and abs(probs.sum() - 1) < 1e-5
    assert load_model("textures") is load_model("textures")  # one load per process
