"""Batch jobs: run a pipeline over a collection, with a manifest, resume and crash isolation.

>>> import pixelmill
>>> summary = pixelmill.run("thumb.yaml", "photos/", "thumbs/", workers=2)  # doctest: +SKIP
>>> summary.ok, summary.invalid, summary.failed  # doctest: +SKIP

The flow: :func:`plan_units` lists the inputs and builds small picklable
:class:`WorkUnit` values (URI, relative path, output URI, label); the engine maps
:func:`process_unit` over them in batches (each worker reads, decodes with shrink-on-load,
runs the pipeline, encodes and writes atomically, and returns a manifest row); the driver
appends rows to the manifest as they finish, so a job killed at any moment resumes where it
stopped (``resume=True`` processes only inputs without an ``ok`` row).
"""

from pixelmill.jobs._plan import (
    DEFAULT_NAME_TEMPLATE,
    OUTPUT_FORMATS,
    WorkUnit,
    plan_units,
    render_name,
)
from pixelmill.jobs._run import JobSummary, default_manifest_uri, execute, run
from pixelmill.jobs._worker import JobSpec, plan_shrink, process_unit, resize_target

__all__ = [
    "DEFAULT_NAME_TEMPLATE",
    "OUTPUT_FORMATS",
    "JobSpec",
    "JobSummary",
    "WorkUnit",
    "default_manifest_uri",
    "execute",
    "plan_shrink",
    "plan_units",
    "process_unit",
    "render_name",
    "resize_target",
    "run",
]
