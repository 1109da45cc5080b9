"""Multi-frame super-resolution: sub-pixel registration, robust shift-and-add, back-projection.

Several low-resolution frames of one scene, each shifted by a fraction of a pixel, sample
the scene on interleaved grids; together they hold detail no single frame has. The pipeline:

1. **Registration** (:func:`register_frames`): each frame's translation against the first.
   Starts: the peaks of phase correlation and of plain cross-correlation, on the raw and on
   Hann-windowed frames (smooth scenes fool the raw ones into a zero-shift peak). Each start
   is refined by Gauss-Newton to the shift under which the first frame, brought to the fine
   grid and degraded as the frames were (shift, MATLAB bicubic 1/S), best reproduces the frame
   — modelling the degradation removes the bias aliasing leaves in correlation peaks — and the
   start ending with the least residual wins.
2. **Robust shift-and-add** (:func:`shift_and_add`): every low-resolution sample is placed at
   its registered position on the S-times finer grid; each fine pixel takes a
   gaussian-weighted average of the samples near it, and samples far from the local median
   are down-weighted (a few Huber-type reweighting passes), so a frame with an outlier
   (a misregistered or corrupted frame) does not smear the result.
3. **Detail recovery** (:func:`back_project`): iterative back-projection (Irani & Peleg 1991)
   with the imaging model the frames were made with: shift, then MATLAB's bicubic
   ``imresize(·, 1/S)``; the residual of every frame is upscaled, shifted back and added.

By default (``prior="edsr"``) the detail recovery starts from a learned single-frame upscale
of the first frame instead of the shift-and-add estimate, every registration is refined once
more against that sharper model, and back-projection then pulls in what the other frames add.
On frames made with MATLAB's antialiased bicubic (little aliasing left to exploit) a
well-trained network beats the classic estimate on its own, and the multi-frame step adds
>1 dB on top of it (tests/sr/test_fusion.py); ``prior=None`` is the classic pipeline.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import ndimage

from pixelmill.errors import InvalidParameterError
from pixelmill.sr.resample import imresize

__all__ = ["MIN_FRAME_SIDE", "MIN_MATCH", "REGISTRATION_WINDOW", "back_project", "fuse_frames",
           "match_score", "register_frames", "registration_window", "shift_and_add"]


def _luma(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, np.float64)
    if f.ndim == 3:
        f = f[..., :3] @ np.array([0.299, 0.587, 0.114]) if f.shape[2] >= 3 else f[..., 0]
    return f


#: least correlation of a registered frame's detail with the first frame's (see
#: :func:`match_score`): frames of one scene score > 0.6 even at low contrast with noise,
#: crops of unrelated photographs < 0.3
MIN_MATCH = 0.4


#: least overlap (per side) :func:`match_score` verifies a registration on
MIN_OVERLAP = 8
#: least frame side :func:`register_frames` takes: the overlap less a margin of
#: ``ceil(|shift|) + 2`` px on every side must leave MIN_OVERLAP px, for shifts up to 2 px
MIN_FRAME_SIDE = MIN_OVERLAP + 2 * (2 + 2)


def _check_scale(scale: object) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise InvalidParameterError(
            f"scale: expected an integer >= 2 (the upscaling factor), got {scale!r}",
            field="scale")


def _overlap_margin(shift: np.ndarray) -> int:
    return int(np.ceil(np.abs(shift).max())) + 2


def _detail(plane: np.ndarray) -> np.ndarray:
    return plane - ndimage.gaussian_filter(plane, 2.0, mode="nearest")


#: side (frame pixels) of the window frames are registered on: the translation is the same
#: over the whole frame, so larger frames are registered on their most detailed window of
#: this side (its cost no longer grows with the frame)
REGISTRATION_WINDOW = 512


def registration_window(ref: np.ndarray, side: int | None = None) -> tuple[slice, slice]:
    """The ``side``×``side`` window (clipped to the frame) of ``ref`` (a plane) with the most
    fine detail (energy of :func:`_detail`), on a grid of ``side // 4`` steps: a shift is
    measured best where there is texture to measure it on, and a smooth centre (sky, a wall)
    would leave it to noise. The whole frame where it is no larger. ``side`` defaults to
    :data:`REGISTRATION_WINDOW`."""
    side = REGISTRATION_WINDOW if side is None else int(side)
    h, w = ref.shape
    if h <= side and w <= side:
        return slice(0, h), slice(0, w)
    wh, ww = min(h, side), min(w, side)
    energy = np.pad(np.cumsum(np.cumsum(_detail(np.asarray(ref, np.float64)) ** 2, 0), 1),
                    ((1, 0), (1, 0)))
    step = max(1, side // 4)

    def starts(n: int, k: int) -> list[int]:
        return sorted({*range(0, n - k + 1, step), n - k})

    best, at = -1.0, (0, 0)
    for y in starts(h, wh):
        for x in starts(w, ww):
            e = energy[y + wh, x + ww] - energy[y, x + ww] - energy[y + wh, x] + energy[y, x]
            if e > best:
                best, at = float(e), (y, x)
    return slice(at[0], at[0] + wh), slice(at[1], at[1] + ww)


def match_score(ref: np.ndarray, mov: np.ndarray, shift: np.ndarray) -> float:
    """Zero-mean normalised correlation of the fine detail (image minus a σ = 2 gaussian) of
    ``ref`` and of ``mov`` moved back by ``shift``, over the frames' overlap (planes, h×w).

    1 for a shifted view of the same scene, about 0 for an unrelated image; 0 when the shift
    leaves less than 8×8 pixels of overlap. Two frames without any detail score 1.
    """
    m = _overlap_margin(shift)
    h, w = ref.shape
    if h - 2 * m < MIN_OVERLAP or w - 2 * m < MIN_OVERLAP:
        return 0.0
    back = ndimage.shift(mov, (-shift[0], -shift[1]), order=3, mode="nearest")
    a = _detail(ref)[m:h - m, m:w - m]
    b = _detail(back)[m:h - m, m:w - m]
    a, b = a - a.mean(), b - b.mean()
    ea, eb = float((a * a).sum()), float((b * b).sum())
    tiny = 1e-12 * max(float(np.abs(ref).max()), float(np.abs(mov).max()), 1e-12) ** 2 * a.size
    if ea <= tiny and eb <= tiny:
        return 1.0
    if ea <= tiny or eb <= tiny:
        return 0.0
    return float((a * b).sum() / np.sqrt(ea * eb))


def _peaks(ref: np.ndarray, mov: np.ndarray) -> list[np.ndarray]:
    """Starting shifts: the peaks of phase correlation and of plain cross-correlation, each on
    the raw frames and on Hann-windowed ones, at 1/20 px, less those within 0.25 px of one
    already found. On smooth or noisy frames the raw correlations peak near zero shift (the
    frame borders, which do not move, dominate the spectrum); on aliased ones phase
    correlation's peak is biased: no one of them is right on every scene."""
    from skimage.registration import phase_cross_correlation

    h, w = ref.shape
    if not (np.ptp(ref) > 0 and np.ptp(mov) > 0):  # a flat frame: any shift fits, keep 0
        return [np.zeros(2)]
    window = np.outer(np.hanning(h), np.hanning(w))
    found: list[np.ndarray] = []
    for a, b in ((ref, mov), ((ref - ref.mean()) * window, (mov - mov.mean()) * window)):
        if not (np.any(a) and np.any(b)):  # a flat frame: nothing to correlate
            continue
        for normalization in ("phase", None):
            peak, _, _ = phase_cross_correlation(a, b, upsample_factor=20,
                                                 normalization=normalization)
            d = -np.asarray(peak, np.float64)
            if np.all(np.isfinite(d)) and all(np.abs(d - f).max() > 0.25 for f in found):
                found.append(d)
    return found or [np.zeros(2)]


def _model_residual(model: tuple[np.ndarray, np.ndarray, np.ndarray], mov: np.ndarray,
                    d: np.ndarray, scale: int, margin: int) -> np.ndarray:
    """What the model does not explain of ``mov``, inside ``margin`` px of the border.

    ``model`` is ``(fine, base, coeffs)``: the first frame brought to the fine grid, that
    estimate degraded as the frames were (:func:`_degrade`) unshifted less the first frame,
    and ``fine``'s spline coefficients (:func:`_spline_coeffs`, computed once for the many
    shifts tried).
    The frame is predicted as the first frame plus the change shifting ``fine`` by ``d``
    makes to its degraded view, so the first frame itself is explained exactly at zero shift
    whether or not the fine estimate reproduces it (a bicubic upscale does not).
    """
    fine, base, coeffs = model
    r = mov - _degrade(fine, d, scale, coeffs) + base
    h, w = r.shape
    return r[margin:h - margin, margin:w - margin].ravel()


def _margin(shape: tuple[int, ...], shift: np.ndarray) -> int:
    return min(_overlap_margin(shift) + 1, (min(shape) - 4) // 2)


def _fine_model(fine: np.ndarray, ref: np.ndarray,
                scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``model`` of :func:`_model_residual` from a fine estimate of the first frame, first
    made consistent with it by a few back-projection steps (a bicubic upscale is not)."""
    fine = back_project(fine, [ref], np.zeros((1, 2)), scale, iterations=6)
    coeffs = _spline_coeffs(fine)
    return fine, _degrade(fine, np.zeros(2), scale, coeffs) - ref, coeffs


def _refine(model: tuple[np.ndarray, np.ndarray, np.ndarray], mov: np.ndarray, start: np.ndarray, scale: int, *,
            iterations: int = 8, h: float = 0.05, reach: float = 1.5) -> np.ndarray:
    """Gauss-Newton on the shift: least squares of :func:`_model_residual`, the Jacobian by
    central differences (``h`` px); steps of at most 0.5 px, at most ``reach`` px in all from
    ``start`` (a start far from the truth is left to the other starts)."""
    d = np.asarray(start, np.float64).copy()
    m = _margin(mov.shape, np.abs(start) + reach)  # one region wherever d goes within reach
    for _ in range(iterations):
        r = _model_residual(model, mov, d, scale, m)
        jac = np.stack([(_model_residual(model, mov, d + e * h, scale, m)
                         - _model_residual(model, mov, d - e * h, scale, m)) / (2 * h)
                        for e in np.eye(2)], axis=1)
        if not np.abs(jac).max() > 1e-9 * max(float(np.abs(mov).max()), 1e-12):
            break  # no detail to register on (a flat frame): lstsq would fit rounding noise
        step = np.clip(np.linalg.lstsq(jac, -r, rcond=None)[0], -0.5, 0.5)
        d = start + np.clip(d + step - start, -reach, reach)
        if np.abs(step).max() < 1e-3:
            break
    return d


def register_frames(frames: Sequence[np.ndarray], *, scale: int = 2, refine: bool = True,
                    min_match: float | None = MIN_MATCH) -> np.ndarray:
    """Translation ``(dy, dx)`` of each frame against the first, in its own pixels.

    ``frame_k(y, x) ≈ frame_0(y − dy_k, x − dx_k)``; the first row is ``(0, 0)``.

    Each frame starts from the correlation peaks of :func:`_peaks`; with ``refine`` each start
    is refined (Gauss-Newton) to the shift under which the first frame, brought to the
    ``scale``-times finer grid by MATLAB's bicubic, shifted and degraded as the frames are
    (:func:`_degrade`: bicubic ``imresize(·, 1/scale)``), best reproduces the frame, and the
    start that ends with the least residual wins. Modelling the degradation is what removes
    the bias aliasing leaves in correlation peaks (0.2–0.5 px on textured scenes), and trying
    every start is what survives smooth scenes where a correlation peaks at zero shift.

    A frame whose registered detail correlates with the first frame's less than ``min_match``
    (:func:`match_score`; None: no check) is no shifted view of the same scene, or one that
    could not be registered: :class:`InvalidParameterError` names it rather than fusing it.

    Frames larger than :data:`REGISTRATION_WINDOW` are registered (and checked) on the
    first frame's most detailed window of that side (:func:`registration_window`), the same
    window of every frame, unless a shift comes out larger than a quarter of the window or a
    frame fails there: then on whole frames (a window holds no shift beyond half its side).
    """
    _check_scale(scale)
    h, w = np.shape(frames[0])[:2]
    if min_match is not None and min(h, w) < MIN_FRAME_SIDE:
        raise InvalidParameterError(
            f"FRAMES: {w}×{h} frames are too small to register: a registration is verified "
            f"on the frames' overlap less a margin of (shift + 2) px on every side, which "
            f"must leave {MIN_OVERLAP}×{MIN_OVERLAP} px; frames need at least "
            f"{MIN_FRAME_SIDE}×{MIN_FRAME_SIDE} px (for shifts of up to 2 px)",
            field="FRAMES")
    full = _luma(frames[0])
    whole = (slice(0, full.shape[0]), slice(0, full.shape[1]))
    win = registration_window(full)
    if win != whole:
        try:
            shifts = _register_on(frames, full, win, scale, refine, min_match)
        except InvalidParameterError:
            shifts = None  # a shift the window cannot hold, or no match: whole frames decide
        if shifts is not None and _window_fits(win, shifts):
            return shifts
    return _register_on(frames, full, whole, scale, refine, min_match)


def _window_fits(win: tuple[slice, slice], shifts: np.ndarray) -> bool:
    """Whether every shift leaves most (3/4 a side) of the registration window overlapping:
    larger shifts are registered and refined on whole frames."""
    side = min(win[0].stop - win[0].start, win[1].stop - win[1].start)
    return float(np.abs(shifts).max(initial=0.0)) <= side / 4


def _register_on(frames: Sequence[np.ndarray], full: np.ndarray, win: tuple[slice, slice],
                 scale: int, refine: bool, min_match: float | None) -> np.ndarray:
    """:func:`register_frames` on the window ``win`` of every frame (``full``: the first
    frame's luma)."""
    ref = full[win]
    h, w = ref.shape
    model = _fine_model(imresize(ref, float(scale)), ref, scale) if refine else None
    shifts = np.zeros((len(frames), 2))

    def register(k: int) -> np.ndarray:  # frame k against the first: independent of the others
        mov = _luma(np.asarray(frames[k])[win])
        starts = _peaks(ref, mov)
        if model is None:
            d = starts[0]
        else:
            ends = [_refine(model, mov, s, scale) for s in starts]
            m = max(_margin(mov.shape, e) for e in ends)  # one region to compare them on
            d = min(ends, key=lambda e: float(np.mean(
                _model_residual(model, mov, e, scale, m) ** 2)))
        if min_match is not None:
            m = _overlap_margin(d)
            if min(h, w) - 2 * m < MIN_OVERLAP:
                raise InvalidParameterError(
                    f"FRAMES[{k}]: registration failed: the best shift found (dy {d[0]:+.2f}, "
                    f"dx {d[1]:+.2f} px) leaves less than {MIN_OVERLAP}×{MIN_OVERLAP} px of "
                    f"overlap with the {w}×{h} first frame to verify it on; frames of one "
                    "scene shifted this far need to be larger", field="FRAMES")
            score = match_score(ref, mov, d)
            if not score >= min_match:
                raise InvalidParameterError(
                    f"FRAMES[{k}]: registration failed: at the best shift found "
                    f"(dy {d[0]:+.2f}, dx {d[1]:+.2f} px) its detail correlates with the first "
                    f"frame's only {score:.2f} (< {min_match}); is it a view of the same scene?",
                    field="FRAMES")
        return d

    # in frame order: a failure names the first frame that fails, as a loop would
    for k, d in enumerate(_in_order(register, range(1, len(frames))), start=1):
        shifts[k] = d
    return shifts


def _splat(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, weights: np.ndarray,
           shape: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear splatting of weighted samples, then a gaussian: numerator and denominator."""
    num = np.zeros(shape)
    den = np.zeros(shape)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
            w = (wy * wx * weights)[ok]
            np.add.at(num, (yy[ok], xx[ok]), w * values[ok])
            np.add.at(den, (yy[ok], xx[ok]), w)
    return (ndimage.gaussian_filter(num, sigma, mode="nearest"),
            ndimage.gaussian_filter(den, sigma, mode="nearest"))


def shift_and_add(
    frames: Sequence[np.ndarray], shifts: np.ndarray, scale: int, *, sigma: float = 0.6,
    robust_passes: int = 2,
) -> np.ndarray:
    """Fuse registered frames (float planes, h×w) onto the S-times finer grid (float64).

    Low-resolution pixel ``i`` of frame ``k`` is centred at fine coordinate
    ``S·(i − d_k) + (S − 1)/2``. Fine pixels far from every sample are filled by the
    gaussian's reach, widened until every pixel has support.
    """
    h, w = frames[0].shape
    shape = (h * scale, w * scale)
    iy, ix = np.mgrid[0:h, 0:w].astype(np.float64)
    ys = np.concatenate([(scale * (iy - d[0]) + (scale - 1) / 2).ravel() for d in shifts])
    xs = np.concatenate([(scale * (ix - d[1]) + (scale - 1) / 2).ravel() for d in shifts])
    vals = np.concatenate([np.asarray(f, np.float64).ravel() for f in frames])
    weights = np.ones_like(vals)
    estimate = None
    for _ in range(robust_passes + 1):
        s = sigma
        num, den = _splat(vals, ys, xs, weights, shape, s)
        while den.min() < 1e-3 * den.max() and s < 4 * scale:  # holes: widen the kernel
            s *= 1.5
            num, den = _splat(vals, ys, xs, weights, shape, s)
        estimate = num / np.maximum(den, 1e-12)
        # Huber-type reweighting against the current estimate at each sample's position
        predicted = ndimage.map_coordinates(estimate, [ys, xs], order=1, mode="nearest")
        residual = np.abs(vals - predicted)
        mad = np.median(residual) * 1.4826 + 1e-12
        k = 2.0 * mad
        weights = k / np.maximum(residual, k)  # 1 inside the band, k/r outside
    return estimate


def _in_order(fn: Callable[..., Any], *items: Iterable[Any]) -> Iterator[Any]:
    """``map(fn, *items)`` on this machine's cores: the frames' work is independent and
    SciPy's interpolation and NumPy's arithmetic release the GIL (2 cores: back-projection
    1.6-1.9x faster). Results come in order, so sums over them add up as a loop would."""
    work = [tuple(t) for t in zip(*items, strict=True)]
    threads = min(len(work), os.cpu_count() or 1)
    if threads < 2:
        yield from (fn(*t) for t in work)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="pixelmill-fuse") as pool:
        yield from pool.map(fn, *zip(*work, strict=True))


#: the edge rows and columns SciPy pads an image with before its cubic spline filter (mode
#: "nearest"): shifts of up to this less the spline's reach stay inside them
_SPLINE_PAD = 12


def _spline_taps(shift: float) -> tuple[np.ndarray, int]:
    """The 4 cubic B-spline weights of a constant ``shift`` and the first padded sample they
    apply to (output pixel ``i`` reads padded samples ``i + first .. i + first + 3``)."""
    q = _SPLINE_PAD - shift
    k = math.floor(q)
    t = q - k
    taps = np.array([(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6,
                     (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6])
    return taps, k - 1


def _spline_coeffs(image: np.ndarray) -> np.ndarray:
    """The cubic B-spline coefficients :func:`_shift3` interpolates, of ``image`` (2-D) padded
    by :data:`_SPLINE_PAD` edge pixels: SciPy's spline filter, most of a shift's time, so an
    image shifted many ways (the registration's model, back-projection's estimate read by
    every frame) has them computed once."""
    return ndimage.spline_filter(np.pad(np.asarray(image, np.float64), _SPLINE_PAD,
                                        mode="edge"), 3, output=np.float64, mode="nearest")


def _shift3(image: np.ndarray, shift: tuple[float, float],
            coeffs: np.ndarray | None = None) -> np.ndarray:
    """``ndimage.shift(image, shift, order=3, mode="nearest")`` of a 2-D float image, within
    1e-11 (``tests/sr/test_fusion.py``) and ~3x faster: SciPy's spline filter (or ``coeffs``,
    :func:`_spline_coeffs` of ``image``, when given), then, the shift being the same at every
    pixel, the interpolation as the separable 4-tap filter it is (OpenCV) instead of SciPy's
    per-pixel evaluation (75 % of ``sr fuse``'s time)."""
    sy, sx = float(shift[0]), float(shift[1])
    if image.ndim != 2 or max(abs(sy), abs(sx)) > _SPLINE_PAD - 3:
        return ndimage.shift(image, (sy, sx), order=3, mode="nearest")
    import cv2

    if coeffs is None:
        coeffs = _spline_coeffs(image)
    ky, oy = _spline_taps(sy)
    kx, ox = _spline_taps(sx)
    out = cv2.sepFilter2D(coeffs, cv2.CV_64F, kx, ky, anchor=(0, 0),
                          borderType=cv2.BORDER_REPLICATE)
    h, w = image.shape
    return out[oy:oy + h, ox:ox + w].copy()


def _degrade(hr: np.ndarray, d: np.ndarray, scale: int,
             coeffs: np.ndarray | None = None) -> np.ndarray:
    moved = _shift3(hr, (scale * d[0], scale * d[1]), coeffs)
    return imresize(moved, 1.0 / scale)


def back_project(
    estimate: np.ndarray, frames: Sequence[np.ndarray], shifts: np.ndarray, scale: int, *,
    iterations: int = 20, step: float = 1.0,
) -> np.ndarray:
    """Iterative back-projection: make the estimate reproduce every frame under the model."""
    x = np.asarray(estimate, np.float64).copy()
    frames = [np.asarray(f, np.float64) for f in frames]
    coeffs = None

    def correction(f: np.ndarray, d: np.ndarray) -> np.ndarray:
        err = f - _degrade(x, d, scale, coeffs)
        up = imresize(err, float(scale))
        return _shift3(up, (-scale * d[0], -scale * d[1]))

    for _ in range(iterations):
        coeffs = _spline_coeffs(x) if x.ndim == 2 else None  # once for every frame's shift
        update = np.zeros_like(x)
        for part in _in_order(correction, frames, shifts):  # frame by frame, as a loop adds
            update += part
        x += step * update / len(frames)
    return x


def fuse_frames(
    frames: Sequence[np.ndarray], scale: int, *, iterations: int = 20,
    shifts: np.ndarray | None = None, prior: str | None = "edsr", device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-frame super-resolution of ``frames`` (same shape and dtype) by ``scale``.

    ``prior``: a shipped network name (``edsr``, the default; ``fsrcnn``, ``espcn``) or
    ``.safetensors`` path whose upscale of the first frame is the starting estimate of
    back-projection, and the model the registration is refined against; None: the classic
    pipeline (robust shift-and-add estimate, registration against the bicubic upscale).
    ``shifts``: known ``(dy, dx)`` of each frame (then nothing is registered).

    Returns ``(image, shifts)``: the fused (S·H)×(S·W)[×C] image in the frames' dtype
    (registered on the first frame) and the ``(dy, dx)`` of each frame used.
    """
    _check_scale(scale)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 0:
        raise InvalidParameterError(
            f"iterations: expected an integer >= 0, got {iterations!r}", field="iterations")
    if len(frames) < 2:
        raise InvalidParameterError("fuse: give at least 2 frames", field="FRAMES")
    frames = [np.asarray(f) for f in frames]
    first = frames[0]
    for k, f in enumerate(frames):
        if f.shape != first.shape or f.dtype != first.dtype:
            raise InvalidParameterError(
                f"FRAMES[{k}]: shape/dtype {f.shape} {f.dtype} differs from the first frame's "
                f"{first.shape} {first.dtype}", field="FRAMES")
        if f.dtype.kind not in "uif":
            raise InvalidParameterError(
                f"FRAMES[{k}]: {f.dtype} pixels cannot be fused (integer or float frames)",
                field="FRAMES")
        if f.dtype.kind == "f" and not np.isfinite(f).all():  # NaN would reach registration
            raise InvalidParameterError(
                f"FRAMES[{k}]: holds NaN or infinite values", field="FRAMES")
    if shifts is not None:
        given = np.asarray(shifts, np.float64)
        if given.shape != (len(frames), 2) or not np.isfinite(given).all():
            got = (f"shape {given.shape}" if given.shape != (len(frames), 2)
                   else "NaN or infinite values")
            raise InvalidParameterError(
                f"shifts: expected {len(frames)} finite (dy, dx) rows, one per frame; got {got}",
                field="shifts")
    net = None
    if prior is not None:  # an unknown prior: refused before the registration's work
        from pixelmill.sr.weights import load_model

        net = load_model(prior, scale, device)
    registered = shifts is None
    if registered:
        shifts = register_frames(frames, scale=scale)
    shifts = np.array(shifts, np.float64)  # a copy: refined in place below
    channels = 1 if first.ndim == 2 else first.shape[2]
    start = None
    if net is not None:
        from pixelmill.sr.infer import _white
        from pixelmill.sr.tiles import upscale_tiled

        white = _white(first.dtype)
        # in tiles (equal to the whole-image pass): a whole frame holds the network's
        # activations for every pixel at once (EDSR: ~0.7 GB per 1000×1000 px)
        start = upscale_tiled(np.asarray(first, np.float32) / white,
                              net, scale, device=device).astype(np.float64) * white
        if registered:  # the network's upscale is a sharper model than the bicubic one
            win = registration_window(_luma(first))  # the window register_frames took
            if not _window_fits(win, shifts):  # ... unless a shift was too large for it
                win = (slice(0, first.shape[0]), slice(0, first.shape[1]))
            fine_win = tuple(slice(scale * a.start, scale * a.stop) for a in win)
            model = _fine_model(_luma(start[fine_win]), _luma(first[win]), scale)
            refined = _in_order(lambda k: _refine(model, _luma(frames[k][win]), shifts[k],
                                                  scale, reach=0.5), range(1, len(frames)))
            for k, d in enumerate(list(refined), start=1):
                shifts[k] = d
    planes = []
    for c in range(channels):
        lr = [np.asarray(f if f.ndim == 2 else f[..., c], np.float64) for f in frames]
        if start is None:
            init = shift_and_add(lr, shifts, scale)
        else:
            init = start if start.ndim == 2 else start[..., c]
        planes.append(back_project(init, lr, shifts, scale, iterations=iterations))
    out = planes[0] if first.ndim == 2 else np.stack(planes, axis=2)
    if first.dtype.kind in "ui":
        info = np.iinfo(first.dtype)
        out = np.floor(np.clip(out, info.min, info.max) + 0.5).astype(first.dtype)
    else:
        out = out.astype(first.dtype)
    return out, shifts
