"""Trained models: one directory format for scikit-learn and CNN classifiers, training, loading.

A model directory holds ``model.json`` (kind, classes, the feature pipeline and columns, the
chosen hyperparameters and validation scores) and either ``model.skops`` (scikit-learn, no
pickle; see :mod:`pixelmill.learn.classifiers`) or ``weights.safetensors`` (CNN). Loading is
cached per process, so the ``classify`` op loads a model once per worker.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixelmill import storage
from pixelmill.errors import InvalidParameterError, UsageError

__all__ = ["TrainedModel", "load_model", "prob_column", "read_images", "train"]

FORMAT = "pixelmill-model/1"
BUNDLED = {"textures": "weights/textures"}  #: bundled CNNs, relative to this package


def prob_column(label: str) -> str:
    """Manifest column holding the probability of class ``label``."""
    return "prob_" + re.sub(r"[^0-9A-Za-z_]+", "_", str(label))


def _resolve(uri: str) -> str:
    if uri in BUNDLED:
        from importlib.resources import files

        return str(files("pixelmill.learn").joinpath(BUNDLED[uri]))
    return uri


@dataclass
class TrainedModel:
    """A classifier with what it needs to classify an image from scratch."""

    kind: str  #: "sklearn" or "cnn"
    meta: dict[str, Any]
    estimator: Any = None  #: the scikit-learn pipeline (kind sklearn)
    cnn: Any = None  #: the :class:`~pixelmill.learn.cnn.CNNModel` (kind cnn)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @functools.cached_property
    def _pipeline(self):
        from pixelmill.pipeline import Pipeline

        return Pipeline.from_dict(self.meta["pipeline"]) if self.meta.get("pipeline") else None

    def vectors(self, image: np.ndarray) -> np.ndarray:
        """The model's feature vector of one image (its extraction pipeline, its columns)."""
        if self._pipeline is None:
            raise UsageError("this model was trained on a table without a pipeline; "
                             "it can only classify feature vectors")
        result = self._pipeline.run(image)
        return np.concatenate([result.vectors[c[4:]] for c in self.meta["features"]])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in :attr:`classes` order) of feature rows."""
        return np.asarray(self.estimator.predict_proba(np.asarray(X, np.float32)), np.float64)

    def predict_proba_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self.kind == "cnn":
            return self.cnn.predict_proba(images)
        return self.predict_proba(np.stack([self.vectors(im) for im in images]))

    def classify_image(self, image: np.ndarray) -> dict[str, Any]:
        """``predicted``, ``confidence`` and ``prob_<class>`` of one image."""
        proba = self.predict_proba_images([image])[0]
        best = int(np.argmax(proba))
        row: dict[str, Any] = {"predicted": self.classes[best], "confidence": float(proba[best])}
        for label, p in zip(self.classes, proba, strict=True):
            row[prob_column(label)] = float(p)
        return row

    def save(self, out: str, storage_options: Mapping[str, Any] | None = None) -> str:
        from pixelmill.learn.classifiers import save_sklearn

        if self.kind == "cnn":
            storage.write_atomic(storage.join(out, "weights.safetensors"), self.cnn.weights_bytes(),
                                 storage_options)
        else:
            storage.write_atomic(storage.join(out, "model.skops"), save_sklearn(self.estimator),
                                 storage_options)
        storage.write_atomic(storage.join(out, "model.json"),
                             json.dumps(self.meta, indent=2, default=str).encode(), storage_options)
        return out


@functools.lru_cache(maxsize=8)
def _load_cached(uri: str) -> TrainedModel:
    return _load(uri, None)


def _load(uri: str, storage_options: Mapping[str, Any] | None) -> TrainedModel:
    from pixelmill.learn.classifiers import load_sklearn
    from pixelmill.learn.cnn import CNNModel

    path = _resolve(uri)
    try:
        meta = json.loads(storage.read_bytes(storage.join(path, "model.json"), storage_options))
    except (OSError, ValueError) as e:
        raise UsageError(f"{uri}: not a pixelmill model directory (model.json: {e})") from e
    if meta.get("format") != FORMAT:
        raise UsageError(f"{uri}: unknown model format {meta.get('format')!r}")
    if meta["kind"] == "cnn":
        weights = storage.read_bytes(storage.join(path, "weights.safetensors"), storage_options)
        return TrainedModel("cnn", meta, cnn=CNNModel.from_parts(meta, weights))
    blob = storage.read_bytes(storage.join(path, "model.skops"), storage_options)
    return TrainedModel("sklearn", meta, estimator=load_sklearn(blob))


def load_model(uri: str, storage_options: Mapping[str, Any] | None = None) -> TrainedModel:
    """A model directory (path or URL, or a bundled name); cached per process."""
    if storage_options:
        return _load(uri, storage_options)
    return _load_cached(str(uri))


def read_images(uris: Sequence[str], storage_options: Mapping[str, Any] | None = None,
                threads: int = 4) -> list[np.ndarray]:
    """Decode images (threads; for CNN training and evaluation sets that fit in memory)."""
    from pixelmill.images import read_image

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda u: read_image(u, storage_options=storage_options), uris))


def _image_table(images: str, label_from: str, storage_options, ratios, salt):
    """(uris, labels, split) of an image folder, split by relative path."""
    from pixelmill.learn.split import assign_split

    entries = storage.list_files(images, recursive=True, storage_options=storage_options)
    if not entries:
        raise UsageError(f"--images: no images under {images}")
    labels = [storage.label_from_path(e.relpath, label_from) for e in entries]
    split = assign_split([e.relpath for e in entries], ratios, salt)
    return [e.uri for e in entries], labels, split


def train(
    features: str | None,
    model: str,
    out: str,
    *,
    images: str | None = None,
    label_from: str = "parent",
    columns: Sequence[str] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    cnn_config: Any = None,
    workers: int | None = None,
    ratios: Any = None,
    salt: str = "",
    storage_options: Mapping[str, Any] | None = None,
    log: Any = None,
) -> TrainedModel:
    """Train ``model`` and save it to the directory ``out``.

    Parameters
    ----------
    features : str or None
        A feature table (:func:`pixelmill.learn.extract`); for ``cnn`` its ``uri``, ``label``
        and ``split`` columns name the images.
    model : str
        linear_svm, rbf_svm, random_forest, gradient_boosting, logistic_regression or cnn.
    out : str
        Model directory to write.
    images : str, optional
        For ``cnn`` without a table: an image folder, labels from ``label_from``.
    columns : sequence of str, optional
        Vector columns to train on (default all).
    grid : mapping, optional
        Hyperparameter values to search (see :mod:`pixelmill.learn.classifiers`).
    cnn_config : CNNConfig, optional
        CNN architecture and training settings.
    workers : int, optional
        Threads (random forest, PyTorch).
    ratios, salt : optional
        Split settings for ``images``.
    storage_options : mapping, optional
        fsspec options.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    TrainedModel
    """
    from pixelmill.learn.classifiers import MODEL_NAMES, fit_classifier
    from pixelmill.learn.features import load_features

    t0 = time.perf_counter()
    if model not in (*MODEL_NAMES, "cnn"):
        raise InvalidParameterError(
            f"--model: unknown model {model!r} (valid: {', '.join(MODEL_NAMES)}, cnn)",
            field="model")
    if grid is not None:
        if model == "cnn":
            raise UsageError("--grid searches the feature-table models; cnn takes its "
                             "settings from CNNConfig (learn train --epochs, --size ...)")
        from pixelmill.learn.classifiers import search_grid

        search_grid(model, grid)  # a wrong name or value fails before anything is read
    if images is not None and model != "cnn":
        raise UsageError(f"--images trains a CNN from image files; {model} trains on a "
                         "feature table (pixelmill learn extract)")
    if model == "cnn":
        from pixelmill.learn.cnn import train_cnn

        if images is not None:
            uris, labels, split = _image_table(images, label_from, storage_options, ratios, salt)
            source = images
        elif features is not None:
            from pixelmill.learn.features import read_table

            table = read_table(features, storage_options)
            rows = [r for r in table.select([c for c in ("uri", "label", "split", "status")
                                             if c in table.column_names]).to_pylist()
                    if r.get("status", "ok") == "ok"]
            if not rows or "label" not in rows[0] or "split" not in rows[0]:
                raise UsageError(f"{features}: needs uri, label and split columns")
            uris = [r["uri"] for r in rows]
            labels = [r["label"] for r in rows]
            split = [r["split"] for r in rows]
            source = features
        else:
            raise UsageError("cnn: give a feature table or --images FOLDER")
        split_arr = np.asarray(split)
        pick = {s: np.flatnonzero(split_arr == s) for s in ("train", "val")}
        pixels = read_images(uris, storage_options)
        net = train_cnn([pixels[i] for i in pick["train"]], [labels[i] for i in pick["train"]],
                        [pixels[i] for i in pick["val"]], [labels[i] for i in pick["val"]],
                        cnn_config, threads=workers, log=log)
        meta = {**net.metadata(), "format": FORMAT, "model": "cnn", "features": [],
                "pipeline": None, "source": source, "n_train": len(pick["train"]),
                "val_accuracy": max((h.get("val_accuracy", -1) for h in net.history),
                                    default=None),
                "fit_seconds": time.perf_counter() - t0}
        trained = TrainedModel("cnn", meta, cnn=net)
    else:
        if features is None:
            raise UsageError(f"{model}: needs a feature table (pixelmill learn extract)")
        fs = load_features(features, columns, storage_options)
        if fs.labels is None:
            raise UsageError(f"{features}: no label column (extract with --label-from)")
        X_tr, y_tr = fs.subset("train")
        X_va, y_va = fs.subset("val")
        if len(y_tr) == 0:
            raise UsageError(f"{features}: no rows in the train split")
        result = fit_classifier(model, X_tr, y_tr.astype(str), X_va, y_va.astype(str),
                                grid=grid, workers=workers)
        meta = {"format": FORMAT, "kind": "sklearn", "model": model,
                "classes": [str(c) for c in result.model.classes_], "features": fs.columns,
                "pipeline": fs.pipeline, "params": result.params, "val_accuracy": result.val_score,
                "search": result.candidates, "source": features, "n_train": len(y_tr),
                "n_val": len(y_va), "fit_seconds": result.fit_seconds}
        trained = TrainedModel("sklearn", meta, estimator=result.model)
    trained.meta["trained_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    trained.save(out, storage_options)
    return trained
