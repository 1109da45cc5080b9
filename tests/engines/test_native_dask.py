"""pixelmill.dask: lazy huge images and chunked pipelines equal to the whole-image pipeline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.array")
tifffile = pytest.importorskip("tifffile")

import pixelmill.dask as pmd  # noqa: E402
from pixelmill.errors import InvalidParameterError, TilingError  # noqa: E402
from pixelmill.pipeline import Pipeline  # noqa: E402

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def photo():
    """An odd-sized crop of a real photograph (tiles will not divide it evenly)."""
    from skimage import data

    return np.ascontiguousarray(np.tile(data.astronaut(), (1, 2, 1))[:301, :457])


@pytest.fixture(scope="module")
def tiff_uri(photo, tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "photo.tif"
    tifffile.imwrite(path, photo, tile=(64, 64))
    return str(path)


def test_from_image_reads_windows_lazily(tiff_uri, photo):
    arr = pmd.from_image(tiff_uri, chunks=(100, 128))
    assert arr.shape == photo.shape and arr.dtype == photo.dtype
    assert arr.chunks[:2] == ((100, 100, 100, 1), (128, 128, 128, 73))
    assert np.array_equal(arr[37:211, 99:300].compute(scheduler="sync"), photo[37:211, 99:300])
    assert np.array_equal(arr.compute(scheduler="sync"), photo)


def test_from_image_npy_and_formats_without_random_access(photo, tmp_path):
    np.save(tmp_path / "gray.npy", photo[..., 1])
    arr = pmd.from_image(str(tmp_path / "gray.npy"), chunks=64)
    assert np.array_equal(arr.compute(scheduler="sync"), photo[..., 1])
    import cv2

    cv2.imwrite(str(tmp_path / "photo.png"), photo[..., ::-1])
    png = pmd.from_image(str(tmp_path / "photo.png"), chunks=64)
    assert np.array_equal(png.compute(scheduler="sync"), photo)


@pytest.mark.parametrize("steps", [
    [{"op": "gaussian", "sigma": 3.0}],
    [{"op": "median", "size": 5}, {"op": "gaussian", "sigma": 1.5}],
    [{"op": "resize", "factor": 2.0}],
    [{"op": "dilate", "size": 7}, {"op": "unsharp_mask", "radius": 2.0, "amount": 1.0}],
])
def test_apply_equals_the_whole_image_pipeline(tiff_uri, photo, steps):
    pipe = Pipeline.from_steps(steps)
    out = pmd.apply(pmd.from_image(tiff_uri, chunks=(70, 90)), pipe)
    expected = pipe(photo)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert np.array_equal(out.compute(scheduler="threads"), expected)


def test_apply_changes_channels_and_dtype(photo):
    pipe = Pipeline.from_steps([{"op": "convert", "to": "gray"}, {"op": "sobel"}])
    out = pmd.apply(photo, pipe)  # numpy input is chunked for you
    expected = pipe(photo)
    assert out.shape == expected.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.compute(scheduler="threads"), expected, rtol=0, atol=1e-3)


def test_chunks_smaller_than_the_halo(photo):
    import dask.array as da

    crop = photo[:101, :133]
    pipe = Pipeline.from_steps([{"op": "gaussian", "sigma": 4.0}])  # halo 16 > chunk 10
    out = pmd.apply(da.from_array(crop, chunks=(10, 10, 3)), pipe)
    assert np.array_equal(out.compute(scheduler="threads"), pipe(crop))


def test_the_overlap_is_what_makes_it_exact(photo):
    import dask.array as da

    pipe = Pipeline.from_steps([{"op": "gaussian", "sigma": 3.0}])
    seams = pmd.apply(da.from_array(photo[..., 0], chunks=64), pipe, halo=0)
    assert not np.array_equal(seams.compute(scheduler="sync"), pipe(photo[..., 0]))


def test_untileable_pipelines_are_refused_naming_the_step(photo):
    with pytest.raises(TilingError, match=r"steps\[1\] \(sharpness\)"):
        pmd.apply(photo, [{"op": "gaussian"}, {"op": "sharpness"}])
    with pytest.raises(InvalidParameterError, match="chunks"):
        pmd.from_image("unused.tif", chunks=0)
