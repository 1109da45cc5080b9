"""PSNR/SSIM against scikit-image's implementations on the same arrays (the literature's SSIM:
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pixelmill.errors import InvalidParameterError
from pixelmill.metrics import psnr, rgb_to_y, ssim

SK_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.fixture
def pair(astronaut, rng):
    ref = astronaut[:120, :140]
    noisy = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    return ref, noisy


def test_psnr_equals_skimage(pair):
    ref, test = pair
    assert psnr(ref, test, data_range=255) == pytest.approx(
        peak_signal_noise_ratio(ref, test, data_range=255), abs=1e-10
    )


def test_ssim_equals_skimage_rgb_and_gray(pair):
    ref, test = pair
    assert ssim(ref, test, data_range=255) == pytest.approx(
        structural_similarity(ref, test, data_range=255, channel_axis=2, **SK_SSIM), abs=1e-9
    )
    assert ssim(ref[..., 0], test[..., 0], data_range=255) == pytest.approx(
        structural_similarity(ref[..., 0], test[..., 0], data_range=255, **SK_SSIM), abs=1e-9
    )


def test_y_channel_and_crop_border_follow_bt601(pair):
    ref, test = pair
    y = lambda im: 16 + (65.481 * im[..., 0] + 128.553 * im[..., 1] + 24.966 * im[..., 2]) / 255  # noqa: E731
    yr, yt = y(ref.astype(float))[4:-4, 4:-4], y(test.astype(float))[4:-4, 4:-4]
    assert psnr(ref, test, data_range=255, crop_border=4, y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(yr, yt, data_range=255), abs=1e-10
    )
    assert ssim(ref, test, data_range=255, crop_border=4, y_channel=True) == pytest.approx(
        structural_similarity(yr, yt, data_range=255, **SK_SSIM), abs=1e-9
    )
    np.testing.assert_allclose(rgb_to_y(np.array([[1.0, 1.0, 1.0]]), 1.0), [235 / 255])


def test_float_data_range_is_explicit(pair):
    ref, test = (a.astype(np.float32) / 255 for a in pair)
    assert psnr(ref, test, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(ref, test, data_range=1.0), abs=1e-6
    )
    assert psnr(ref, ref, data_range=1.0) == float("inf")
    with pytest.raises(InvalidParameterError, match="data_range"):
        psnr(ref, test, data_range=0)
    with pytest.raises(InvalidParameterError, match="shape"):
        psnr(ref, test[1:], data_range=1.0)
