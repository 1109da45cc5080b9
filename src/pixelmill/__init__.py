"""pixelmill: image processing at scale — collections and huge images, locally, on Dask or Spark.

The top-level names are loaded lazily so that ``import pixelmill`` stays cheap in workers.
"""

from __future__ import annotations

import os

from pixelmill._lazy import lazy_exports

# OpenCV logs its own warnings for broken files ("PNG input buffer is incomplete") to stderr;
# pixelmill reports every such file itself (an error naming it, or a manifest row with the
# reason), so keep OpenCV to fatal messages unless the user set a level.
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "Pipeline": "pixelmill.pipeline",
    "load_pipeline": "pixelmill.pipeline",
    "scan": "pixelmill.inventory",
    "read_image": "pixelmill.images",
    "write_image": "pixelmill.images",
    "iter_images": "pixelmill.images",
    "run": "pixelmill.jobs",
    "run_tiled": "pixelmill.tiled",
    "get_engine": "pixelmill.engines",
    "get_op": "pixelmill.ops",
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
