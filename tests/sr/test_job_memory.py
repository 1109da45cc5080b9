"""A tiled super-resolution job's memory is what its plan says: the driver never loads torch
(it only plans and writes rows), and a worker's peak over a tile stays within what
``super_resolve`` declares per tile pixel (the planner sizes tiles with it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pixelmill.engines.local import WORKER_ENV

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _run(code: str, env: dict[str, str] | None = None) -> str:
    import os

    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_tiled_sr_driver_does_not_import_torch(tmp_path):
    src = tmp_path / "in.npy"
    rng = np.random.default_rng(0)
    np.save(src, rng.integers(0, 256, (300, 260, 3), dtype=np.uint8))
    out = tmp_path / "out.tif"
    line = _run(f"""
        import json, sys
        from pixelmill.tiled import run_tiled
        s = run_tiled([{{'op': 'super_resolve', 'model': 'espcn', 'scale': 2}}], {str(src)!r},
                      {str(out)!r}, tile=128, workers=1, memory='2GB', progress=False)
        print(json.dumps([s.status, s.out_width, s.out_height, 'torch' in sys.modules]))
    """)
    assert json.loads(line) == ["ok", 520, 600, False]


@pytest.mark.parametrize("model", ["espcn"])  # edsr: up to ~1360 B/px, see ops/sr.py
def test_declared_pixel_bytes_cover_a_tile(model):
    # what a local worker runs with (glibc keeps freed memory), one tile of 264 pixels
    line = _run(f"""
        import os
        from pixelmill.engines.local import WORKER_ENV
        assert all(os.environ.get(k) == v for k, v in WORKER_ENV.items())
        import numpy as np
        from pixelmill.engines.local import release_memory
        from pixelmill.ops.sr import SR_PIXEL_BYTES
        from pixelmill.pipeline import load_pipeline

        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

        p = load_pipeline([{{'op': 'super_resolve', 'model': {model!r}, 'scale': 2}}])
        rng = np.random.default_rng(1)
        p.run(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))  # torch and the model
        worst = 0
        for _ in range(3):
            tile = rng.integers(0, 256, (264, 264, 3), dtype=np.uint8)
            release_memory()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
            before = status("VmRSS")
            p.run(tile)
            worst = max(worst, status("VmHWM") - before)
        print(worst / 264**2, SR_PIXEL_BYTES)
    """, WORKER_ENV) if _env_ok() else pytest.skip("no /proc/self/clear_refs")
    measured, declared = map(float, line.split())
    assert measured <= declared, f"{model}: {measured:.0f} B/px measured, {declared:.0f} declared"


def _env_ok() -> bool:
    import os

    return os.access("/proc/self/clear_refs", os.W_OK)
