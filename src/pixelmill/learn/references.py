"""Pipelines that name trained models (``classify``, ``cnn_embedding``): where and what.

A step's ``model`` is a directory written by ``pixelmill learn train``. A job resolves it once,
in the driver, before any work:

- a local relative path becomes absolute, so workers (in other folders, on a cluster) and the
  models and indexes built from the job's table find it from anywhere;
- the model is loaded, so a missing or broken one is a usage error naming the step, not a
  failed row per image;
- its files are hashed (:func:`model_digest`), so a job resumed after the model was retrained
  at the same path is refused instead of mixing the two models' results.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from pixelmill import storage
from pixelmill.errors import UsageError

__all__ = ["MODEL_FILES", "MODEL_OPS", "check_model_records", "check_outside_models",
           "model_digest", "model_records", "resolve_models"]

#: ops whose ``model`` parameter names a model directory (or a bundled network)
MODEL_OPS = ("classify", "cnn_embedding")

#: the files of a model directory that make the model (``report.html`` is renewed by every
#: ``learn evaluate`` and is not part of it)
MODEL_FILES = ("model.json", "model.skops", "weights.safetensors")


def _is_local_path(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def model_digest(uri: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) of a model directory's files, or of the bundled network's name."""
    from pixelmill.learn.models import BUNDLED

    if uri in BUNDLED:
        return hashlib.sha256(f"bundled:{uri}".encode()).hexdigest()
    h = hashlib.sha256()
    for name in MODEL_FILES:
        try:
            data = storage.read_bytes(storage.join(uri, name), storage_options)
        except (OSError, ValueError):
            continue
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def resolve_models(pipeline: Any, storage_options: Mapping[str, Any] | None = None) -> Any:
    """``pipeline`` with every model step's local relative ``model`` made absolute, after
    loading each model once (a missing or unusable one is a :class:`UsageError` naming
    ``steps[i].model``). Pipelines without model steps come back unchanged."""
    from pixelmill.learn.models import BUNDLED, load_model
    from pixelmill.pipeline import Pipeline

    steps = list(pipeline.steps)
    if not any(s.op in MODEL_OPS for s in steps):
        return pipeline
    out = []
    for i, step in enumerate(steps):
        params = step.to_dict()
        model = params.get("model")
        if step.op not in MODEL_OPS or not isinstance(model, str):
            out.append(params)
            continue
        if model not in BUNDLED and _is_local_path(model):
            local = model[len("file://"):] if model.startswith("file://") else model
            model = params["model"] = os.path.abspath(local)
        try:
            trained = load_model(model, storage_options)
        except UsageError as e:
            raise UsageError(f"steps[{i}].model: {e}") from e
        except (OSError, ValueError, KeyError) as e:  # a damaged model file
            raise UsageError(f"steps[{i}].model: {model}: not a usable pixelmill model "
                             f"({type(e).__name__}: {e})") from e
        if step.op == "cnn_embedding" and trained.kind != "cnn":
            raise UsageError(f"steps[{i}].model: {model!r} is a {trained.kind} model, "
                             "not a CNN (cnn_embedding needs one)")
        out.append(params)
    return Pipeline.from_steps(out)


def model_records(pipeline: Any, storage_options: Mapping[str, Any] | None = None
                  ) -> dict[str, dict[str, str]]:
    """``{"steps[i].model": {"uri": ..., "sha256": ...}}`` for the models a pipeline's steps
    name (empty without any): kept in feature tables, models and indexes, so that features of
    a new image are refused when the model that made the stored ones has changed since."""
    out = {}
    for i, s in enumerate(pipeline.steps):
        model = dict(s.params).get("model")
        if s.op in MODEL_OPS and isinstance(model, str):
            out[f"steps[{i}].model"] = {"uri": model,
                                        "sha256": model_digest(model, storage_options)}
    return out


def check_model_records(records: Mapping[str, Any] | None, what: str,
                        storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse to extract features for ``what`` (a model, an index) when a model its stored
    features were made with has changed since (retrained or replaced at the same path): the
    new vectors would not be comparable with the stored ones."""
    for field, rec in (records or {}).items():
        if not isinstance(rec, Mapping) or "uri" not in rec or "sha256" not in rec:
            continue
        if model_digest(str(rec["uri"]), storage_options) != rec["sha256"]:
            raise UsageError(
                f"{what}: its features were made with {field} = {rec['uri']}, which has changed "
                "since (retrained or replaced); extract the features again with the model as "
                "it is now, then retrain or rebuild")


def check_outside_models(pipeline: Any, uri: str | None, field: str) -> None:
    """Refuse an output (``uri``, named ``field``) that is or lies inside a model directory a
    step reads: ``--overwrite`` would replace the model's files before the job reads them."""
    if uri is None:
        return
    for i, step in enumerate(pipeline.steps):
        model = dict(step.params).get("model")
        if step.op not in MODEL_OPS or not isinstance(model, str):
            continue
        if storage.within(uri, model):
            raise UsageError(f"{field}: {uri} is inside the model directory {model} "
                             f"(steps[{i}].model), an input of this job; write it elsewhere")
