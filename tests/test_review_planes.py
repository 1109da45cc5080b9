"""Review of the planes route (jobs/_worker.py): what a unit keeps alive while its output is
encoded and written."""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixelmill import codecs
from pixelmill.jobs import JobSpec, WorkUnit, _worker, process_unit
from pixelmill.pipeline import Pipeline

needs_planes = pytest.mark.skipif(not codecs.planes_available(),
                                  reason="the plane decoder (C extension) is not built here")


def _jpeg(size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), size,
                     interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@needs_planes
@pytest.mark.parametrize("steps", [
    [{"op": "gaussian", "sigma": 2.0}],  # full-size planes (reduce 1)
    [{"op": "resize", "long_side": 160, "method": "area"}, {"op": "gaussian", "sigma": 1.5}],
])
def test_planes_route_frees_the_file_and_the_decoded_planes_before_encoding(
        tmp_path, monkeypatch, steps):
    """As the RGB route does (``del data``, ``del image``): the planes route kept the input's
    bytes and the full decoded planes referenced from _process_unit's frame through the
    encode and the write (its own ``del`` only dropped a second reference)."""
    data = bytes(bytearray(_jpeg((640, 480))))
    src = tmp_path / "in.jpg"
    src.write_bytes(data)
    unit = WorkUnit(0, str(src), "in.jpg", output=str(tmp_path / "out.jpg"), format="jpg")

    decoded: list[weakref.ref] = []
    seen: list[tuple[list[bool], int]] = []
    real_decode, real_encode = codecs.decode_planes, codecs.encode_planes

    def decode(*args, **kwargs):
        planes = real_decode(*args, **kwargs)
        if planes is not None:
            decoded.extend(weakref.ref(p) for p in planes)
        return planes

    def encode(*args, **kwargs):
        seen.append(([r() is not None for r in decoded], sys.getrefcount(data)))
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(codecs, "decode_planes", decode)
    monkeypatch.setattr(codecs, "encode_planes", encode)
    monkeypatch.setattr(_worker, "_read", lambda uri, so: data)
    base = sys.getrefcount(data)
    row = process_unit(JobSpec(Pipeline.from_steps(steps), quality=85), unit)
    assert row["status"] == "ok" and row.get("decode_planes") is True, row
    [(alive, refs)] = seen
    assert alive == [False, False, False], "the decoded planes outlive the filtering"
    assert refs == base, "the input's bytes are still referenced while encoding"
    assert Path(unit.output).read_bytes()[:2] == b"\xff\xd8"
