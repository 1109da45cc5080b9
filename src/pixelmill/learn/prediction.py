"""Batch prediction: the ``classify`` op over a collection, as a job on any engine.

Each worker loads the model once, runs its feature pipeline (or its CNN) on every image and
writes ``predicted``, ``confidence`` and ``prob_<class>`` columns to the job's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["predict"]


def predict(model: str, input: str, out: str, *, engine: Any = "local",
            workers: int | None = None, label_from: str | None = None,
            storage_options: Mapping[str, Any] | None = None, progress: bool = False,
            **job_options: Any):
    """Classify every image of ``input``; write the predictions to the Parquet manifest ``out``.

    Parameters
    ----------
    model : str
        A model directory (path or URL) written by :func:`pixelmill.learn.train`.
    input : str
        Folder, file, glob URL or scan manifest.
    out : str
        The predictions manifest (``.parquet``).
    engine, workers, label_from, storage_options, progress
        As :func:`pixelmill.jobs.run` (``job_options`` are passed on too).

    Returns
    -------
    JobSummary
    """
    from pixelmill.errors import UsageError
    from pixelmill.jobs import run
    from pixelmill.learn.models import load_model
    from pixelmill.learn.references import check_model_records

    # (the job makes a local model path absolute and loads it once before any work)
    trained = load_model(model, storage_options)
    if trained.kind == "sklearn" and not trained.meta.get("pipeline"):
        # every image would fail the same way: say so before the job starts
        raise UsageError(f"{model}: this model was trained on a feature table without a "
                         "pipeline, so it cannot extract features from an image; train it on "
                         "a table from 'pixelmill learn extract'")
    check_model_records(trained.meta.get("models"), model, storage_options)
    job_options.setdefault("report", False)
    job_options.setdefault("manifest_field", "--out")
    pipeline = [{"op": "classify", "model": model}]
    return run(pipeline, input, None, manifest=out, engine=engine, workers=workers,
               label_from=label_from, storage_options=storage_options, progress=progress,
               **job_options)
