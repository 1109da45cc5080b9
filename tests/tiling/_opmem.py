"""Peak working memory per input value of every image op (output included, input excluded),
and what the tiler's plan declares for it; run as a script by test_plan.py (a fresh process,
glibc told to unmap every large block so the resident peak is the live memory)."""
import gc
import json
import sys

import numpy as np

from pixelmill.ops import registry
from pixelmill.pipeline import load_pipeline
from pixelmill.tiled._plan import analyze

REQ = {"crop": {"x": 0, "y": 0, "width": 64, "height": 64}, "resize": {"factor": 0.5},
       "rotate": {"angle": 30}, "affine": {"matrix": [1, 0.1, 0, 0.1, 1, 0]},
       "center_crop": {"width": 64, "height": 64}, "threshold": {"method": "fixed", "value": 0.5}}
SKIP = {"super_resolve"}  # declares pixel_bytes (a network), measured in tests/sr

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024

side = int(sys.argv[1]) if len(sys.argv) > 1 else 512
rng = np.random.default_rng(0)
smooth = np.cumsum(np.cumsum(rng.normal(size=(side, side, 3)), 0), 1)
smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
res = []
for name, spec in sorted(registry().items()):
    if spec.output not in ("image", "labels") or name in SKIP:
        continue
    for ch in (1, 3):
        for dt in spec.dtypes:
            if dt not in ("uint8", "float32"):
                continue
            img = smooth if ch == 3 else smooth[..., 1]
            img = np.ascontiguousarray((img * 255).astype(np.uint8) if dt == "uint8"
                                       else img.astype(np.float32))
            params = dict(REQ.get(name, {}))
            try:
                spec(img, **spec.bind(params))  # warm: imports, caches
            except Exception:
                continue
            gc.collect()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            r0 = status("VmRSS:")
            out = spec(img, **spec.bind(params))
            peak = status("VmHWM:") - r0
            del out
            declared = analyze(load_pipeline([{"op": name, **params}])).value_bytes(dt)
            res.append((name, dt, ch, round(peak / img.size, 1), declared))
print(json.dumps(res))
