"""JPEG → JPEG on the file's own Y/Cb/Cr planes, where the pipeline allows it.

An area resize and a gaussian are linear and treat every channel alike, so they commute with
JPEG's YCbCr ↔ RGB conversion (an affine map): run on the luma plane and on the half-size
chroma planes, they give the thumbnail the RGB route gives, without upsampling and converting
3 × H × W pixels on decode, filtering the chroma at full size, and converting and
downsampling again on encode (about 13 % of the thumbnail job's CPU per photo). The results
differ from the RGB route only by rounding and by where chroma is averaged (JPEG's own
chroma subsampling), as much as two RGB-route outputs of slightly different decoders do: both
are as close to an exact float computation from the full-size decode
(``tests/jobs/test_planar.py`` bounds it).

A ``rotate`` by a multiple of 90°, a ``flip`` and a ``crop`` move pixels without computing
any: on planes whose sizes are even, each chroma pixel (2×2 luma pixels) lands on a chroma
pixel (a crop's window must start and end on even rows and columns, or at the image's edge),
so they run on the planes too, and exactly: the chroma is not upsampled, converted and
averaged back, the only change is the JPEG encoding's own.

Taken for an input JPEG stored 8-bit 4:2:0 YCbCr (its planes turned upright for its EXIF
orientation, exactly, as rotations are), undamaged, written as a JPEG, when every step is an area ``resize``, a ``rotate`` by a multiple of 90°,
a ``flip``, a ``crop`` or a ``gaussian`` (any border but
``constant``, where a zero chroma value is not a neutral colour, and ``mirror``, whose axis
is half a luma pixel off on chroma), every resize gives an even width
and height (a chroma pixel is then exactly 2×2 luma pixels) no larger than its input, and the
result's chroma is half its luma each way. Anything else is decoded to RGB as before.

An odd-sized result (a 3:2 photo's 512×341 thumbnail) could be made exactly on planes —
chroma resized to the luma size, then averaged 2×2 as the encoder averages an RGB image's,
the odd last row paired with itself — and was tried: outputs −0.03..+0.07 dB from the RGB
route's against the exact result, but the job was 4–5 % *slower* on 3000×2000 photos
(``bench_pipelines.py --jobs thumb-3x2``, A/B), since OpenCV's area resize from the 1/4-scale
decode (750×500 → 512×341, no short period for the block-matrix path) costs more on three
planes than on one interleaved RGB image, and that is most of what the planes save there.
So odd sizes stay RGB.
``run(..., planes=False)`` (``--no-planes``) turns it off.

Three cases stay on RGB because the half-size chroma plane cannot follow the luma there:

- an enlargement: ``area`` enlarges by replicating pixels, and a chroma pixel replicated is a
  2×2 block of the stored chroma rather than of the decoder's interpolated chroma (a 64×48 photo
  to 512 px came out 11 dB, a 16×8 one 19 dB, further from the exact result than on RGB);
- a gaussian truncated at fewer than :data:`MIN_TRUNCATE` sigmas: the kernel radius
  ``int(truncate * sigma + 0.5)`` is rounded at each plane's own scale, so the chroma kernel ends
  up to a chroma pixel (two luma pixels) away from the luma one, where its taps still weigh
  much (``truncate=1``: 4.4 dB worse than the RGB route);
- a gaussian of sigma below :data:`MIN_CHROMA_SIGMA` chroma pixels (``sigma < 1`` on half-size
  chroma): a gaussian sampled that narrow has far less than its sigma's variance, and the
  chroma is left under-blurred (sigma 0.6: 0.9 dB worse, 43 dB from the RGB route's output).
  Sigma 0 (the identity) is fine.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from pixelmill.pipeline import Pipeline, PipelineResult

__all__ = ["planar_fits", "planar_pipeline", "run_planes"]

#: gaussian borders the half-size chroma cannot follow: ``constant`` pads with 0, which is not
#: a neutral chroma value; ``mirror`` reflects about the edge pixel's centre, which on a chroma
#: pixel (2×2 luma pixels) is half a luma pixel further in than on luma
_OFF_GRID_MODES = frozenset({"constant", "mirror"})
#: fewest sigmas a gaussian may be truncated at to run on planes (module docstring)
MIN_TRUNCATE = 2.0
#: smallest non-zero sigma, in chroma pixels, a gaussian may have on the chroma planes
MIN_CHROMA_SIGMA = 0.5


@functools.lru_cache(maxsize=64)
def planar_pipeline(pipeline: Pipeline) -> bool:
    """Whether every step of ``pipeline`` can run on Y/Cb/Cr planes (sizes aside)."""
    if not pipeline.steps:
        return False
    for step in pipeline.steps:
        kw = step.kwargs
        if step.op == "resize":
            if kw["method"] != "area":
                return False
        elif step.op == "gaussian":
            if kw["mode"] in _OFF_GRID_MODES or kw["truncate"] < MIN_TRUNCATE:
                return False
        elif step.op == "rotate":
            if kw["angle"] % 90:  # other angles interpolate (and fill corners): RGB
                return False
        elif step.op not in ("flip", "crop"):
            return False
    return True


def _crop_window(kw: dict[str, Any], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The luma window ``(x0, y0, x1, y1)`` a ``crop`` keeps of a width×height image (clipped
    as the op clips it), or None when it lies outside (the op's error: the RGB way names it)."""
    x0, y0 = kw["x"], kw["y"]
    if x0 >= width or y0 >= height:
        return None
    return x0, y0, min(x0 + kw["width"], width), min(y0 + kw["height"], height)


def _quarter_turns(angle: float) -> int:
    """Counter-clockwise quarter turns of a rotation by a multiple of 90° (0-3)."""
    return int(angle // 90) % 4


def _chroma_pitch(reduce: int) -> int:
    """Luma pixels per chroma pixel of a 4:2:0 JPEG decoded at 1/``reduce``: 2 at full size;
    1 when scaled, where libjpeg-turbo enlarges chroma in its inverse DCT to the luma size."""
    return 2 if reduce == 1 else 1


@functools.lru_cache(maxsize=512)
def planar_fits(pipeline: Pipeline, width: int, height: int, reduce: int) -> bool:
    """Whether a ``width``×``height`` 4:2:0 JPEG decoded at 1/``reduce`` runs through
    ``pipeline`` on planes with chroma exactly half the luma (see the module docstring)."""
    from pixelmill.jobs._worker import resize_target

    if not planar_pipeline(pipeline):
        return False
    lw, lh = -(-width // reduce), -(-height // reduce)
    pitch = _chroma_pitch(reduce)
    if pitch == 2 and (lw % 2 or lh % 2):
        return False
    for step in pipeline.steps:
        kw = step.kwargs
        if step.op in ("rotate", "flip"):  # sizes stay even; a quarter turn swaps them
            if step.op == "rotate" and _quarter_turns(kw["angle"]) % 2:
                lw, lh = lh, lw
            continue
        if step.op == "crop":  # on whole chroma pixels where chroma is at half size
            window = _crop_window(kw, lw, lh)
            if window is None or (pitch == 2 and any(v % 2 for v in window)):
                return False
            x0, y0, x1, y1 = window
            lw, lh = x1 - x0, y1 - y0
            continue
        if step.op != "resize":  # a gaussian: not too narrow for the chroma planes
            if pitch == 2 and 0 < kw["sigma"] / 2 < MIN_CHROMA_SIGMA:
                return False
            continue
        target = resize_target(kw, lw, lh)
        if target is None:
            return False
        tw, th = target
        if tw > lw or th > lh:
            return False  # an enlargement replicates chroma pixels: RGB (module docstring)
        factor = kw.get("factor")
        if factor is not None and not (tw / lw == factor == th / lh):
            return False  # OpenCV samples on the factor's grid, not the sizes'
        if tw % 2 or th % 2:
            return False
        lw, lh, pitch = tw, th, 2
    return pitch == 2 or (lw % 2 == 0 and lh % 2 == 0)


def run_planes(pipeline: Pipeline, y: Any, cb: Any, cr: Any) -> PipelineResult:
    """Run ``pipeline`` (one :func:`planar_fits` accepted for these planes' size) on the
    planes; the result's ``image`` is the ``(y, cb, cr)`` tuple, chroma half of luma."""
    from pixelmill.ops.filters import gaussian
    from pixelmill.ops.geometry import resize

    result = PipelineResult(image=None)  # type: ignore[arg-type]
    pitch = y.shape[0] // cb.shape[0]  # 2 at full size, 1 when libjpeg scaled chroma up
    for i, step in enumerate(pipeline.steps):
        kw = step.kwargs
        t0 = time.perf_counter()
        if step.op == "resize":
            y = step.spec.func(y, **kw)
            h, w = y.shape
            cb = resize(cb, width=w // 2, height=h // 2, method="area")
            cr = resize(cr, width=w // 2, height=h // 2, method="area")
            pitch = 2
        elif step.op in ("rotate", "flip"):  # the same pixels moved on every plane
            y, cb, cr = (step.spec.func(p, **kw) for p in (y, cb, cr))
        elif step.op == "crop":  # the window on luma; on chroma, halved where it is half size
            x0, y0, x1, y1 = _crop_window(kw, y.shape[1], y.shape[0])  # type: ignore[misc]
            y = y[y0:y1, x0:x1].copy()
            cb, cr = (p[y0 // pitch : y1 // pitch, x0 // pitch : x1 // pitch].copy()
                      for p in (cb, cr))
        else:  # gaussian: sigma and truncation in luma pixels, as the RGB route has them
            y = step.spec.func(y, **kw)
            ckw = {**kw, "sigma": kw["sigma"] / pitch}
            cb, cr = gaussian(cb, **ckw), gaussian(cr, **ckw)
        result.timings[f"{i}:{step.op}"] = time.perf_counter() - t0
    if pitch == 1:  # no resize after a scaled decode: JPEG's own 2×2 chroma average
        h, w = y.shape
        cb = resize(cb, width=w // 2, height=h // 2, method="area")
        cr = resize(cr, width=w // 2, height=h // 2, method="area")
    result.image = (y, cb, cr)
    return result
