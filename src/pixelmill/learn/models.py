"""Trained models: one directory format for scikit-learn and CNN classifiers, training, loading.

A model directory holds ``model.json`` (kind, classes, the feature pipeline and columns, the
chosen hyperparameters and validation scores) and either ``model.skops`` (scikit-learn, no
pickle; see :mod:`pixelmill.learn.classifiers`) or ``weights.safetensors`` (CNN). Loading is
cached per process, so the ``classify`` op loads a model once per worker.
"""

from __future__ import annotations

import contextlib
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
from pixelmill.errors import InvalidParameterError, NoInputError, UnsuitableImageError, UsageError

__all__ = ["FeatureLengthError", "TrainedModel", "check_features", "feature_recipe",
           "load_model", "prob_column", "prob_columns", "read_images", "train"]

FORMAT = "pixelmill-model/1"
BUNDLED = {"textures": "weights/textures"}  #: bundled CNNs, relative to this package


def prob_column(label: str) -> str:
    """Manifest column holding the probability of class ``label`` (letters of any script,
    digits and ``_`` kept; see :func:`prob_columns` for a model's distinct names)."""
    return "prob_" + re.sub(r"\W+", "_", str(label))


def prob_columns(classes: Sequence[str]) -> list[str]:
    """One distinct ``prob_`` column per class, in ``classes`` order.

    Labels that differ only in punctuation or spaces (``"a b"`` and ``"a-b"``) would share a
    column and one probability would overwrite the other: later ones get ``_2``, ``_3`` ...
    """
    out: list[str] = []
    seen: set[str] = set()
    for label in classes:
        base = name = prob_column(label)
        n = 2
        while name in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name)
        out.append(name)
    return out


def feature_recipe(pipeline: Mapping[str, Any] | None, column: str) -> list[dict] | None:
    """The steps of ``pipeline`` that make the vector column ``column``: the image ops before
    its op, and the op itself (None when the pipeline or the column is unknown)."""
    if not pipeline:
        return None
    from pixelmill.pipeline import Pipeline

    try:
        pipe = Pipeline.from_dict(dict(pipeline))
    except Exception:  # a pipeline of ops this version does not know: cannot compare
        return None
    image_steps: list[dict] = []
    names: set[str] = set()
    for i, step in enumerate(pipe.steps):
        output = step.spec.output
        if output == "vector":
            name = step.op if step.op not in names else f"{step.op}_{i}"
            names.add(name)
            if "vec_" + name == column:
                return [*image_steps, step.to_dict()]
        elif output != "measures":
            image_steps.append(step.to_dict())
    return None


def _recipe_difference(theirs: list[dict], mine: list[dict]) -> str:
    """``op.param here vs model``, for steps of the same ops; else both step lists."""
    if [t.get("op") for t in theirs] != [m.get("op") for m in mine]:
        return f"steps {json.dumps(theirs)} here, {json.dumps(mine)} for the model"
    parts = [f"{t['op']}.{key} {json.dumps(t.get(key))} here, {json.dumps(m.get(key))} for "
             "the model" for t, m in zip(theirs, mine, strict=True)
             for key in sorted(set(t) | set(m)) if t.get(key) != m.get(key)]
    return "; ".join(parts)


class FeatureLengthError(UnsuitableImageError, UsageError):
    """An image whose feature vector has another length than the model's rows (an image of
    another size under an op without a fixed size): a property of that image, so a job records
    its row as ``invalid``; still a :class:`UsageError` for a caller classifying one image."""


def _length_mismatch(meta: Mapping[str, Any], n_features: int | None, source: str) -> str | None:
    """Why ``n_features`` values per row do not fit the model (None when they do)."""
    expected = meta.get("n_features")
    if expected is None or n_features is None or int(n_features) == int(expected):
        return None
    return (f"{source}: {n_features} feature values per row, the model was trained on "
            f"{expected} ({', '.join(meta.get('features') or [])}; images of another size? "
            "give the op a fixed size, or extract with the model's pipeline)")


def check_features(meta: Mapping[str, Any], n_features: int | None,
                   pipeline: Mapping[str, Any] | None, source: str,
                   models: Mapping[str, Any] | None = None) -> None:
    """Refuse feature rows that were not extracted the way the model's training rows were:
    another vector length, the same columns made by other op parameters, or by another
    version of a model a step names (``models``: the table's hashed model records)."""
    for field, rec in (models or {}).items():
        mine = (meta.get("models") or {}).get(field)
        if isinstance(rec, Mapping) and isinstance(mine, Mapping) and \
                rec.get("sha256") != mine.get("sha256"):
            raise UsageError(
                f"{source}: its {field} ({rec.get('uri')}) is not the one the model's training "
                f"rows were extracted with ({mine.get('uri')}, another version); extract the "
                "table with the model's pipeline and models")
    for column in meta.get("features") or []:
        mine = feature_recipe(meta.get("pipeline"), column)
        theirs = feature_recipe(pipeline, column)
        if mine is not None and theirs is not None and mine != theirs:
            raise UsageError(
                f"{source}: {column} was not extracted the way the model's training rows were "
                f"({_recipe_difference(theirs, mine)}); extract the table with the model's "
                "pipeline")
    mismatch = _length_mismatch(meta, n_features, source)
    if mismatch:
        raise UsageError(mismatch)


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

        if not self.meta.get("pipeline"):
            return None
        from pixelmill.learn.references import check_model_records

        # a CNN the training features came from, retrained since, would give other vectors
        check_model_records(self.meta.get("models"), "this model")
        return Pipeline.from_dict(self.meta["pipeline"])

    def vectors(self, image: np.ndarray) -> np.ndarray:
        """The model's feature vector of one image (its extraction pipeline, its columns).

        Raises
        ------
        FeatureLengthError
            The image gives another number of feature values than the model's rows (a
            property of the image: its job row is ``invalid``).
        """
        if self._pipeline is None:
            raise UsageError("this model was trained on a table without a pipeline; "
                             "it can only classify feature vectors")
        result = self._pipeline.run(image)
        vec = np.concatenate([result.vectors[c[4:]] for c in self.meta["features"]])
        mismatch = _length_mismatch(self.meta, len(vec), "the image")
        if mismatch:
            raise FeatureLengthError(mismatch)
        return vec

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in :attr:`classes` order) of feature rows."""
        X = np.asarray(X, np.float32)
        check_features(self.meta, X.shape[1] if X.ndim == 2 else None, None, "feature rows")
        return np.asarray(self.estimator.predict_proba(X), np.float64)

    def predict_proba_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self.kind == "cnn":
            return self.cnn.predict_proba(images)
        return self.predict_proba(np.stack([self.vectors(im) for im in images]))

    def classify_image(self, image: np.ndarray) -> dict[str, Any]:
        """``predicted``, ``confidence`` and ``prob_<class>`` of one image."""
        proba = self.predict_proba_images([image])[0]
        best = int(np.argmax(proba))
        row: dict[str, Any] = {"predicted": self.classes[best], "confidence": float(proba[best])}
        for name, p in zip(prob_columns(self.classes), proba, strict=True):
            row[name] = float(p)
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
        # what an earlier model in this folder (--overwrite) left: the other kind's weights and
        # the report of its evaluation, which would describe a model that is gone
        stale = ["model.skops" if self.kind == "cnn" else "weights.safetensors", "report.html"]
        fs, path = storage.get_fs(out, storage_options)
        for name in stale:
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(storage.join(path, name))
        return out


@functools.lru_cache(maxsize=8)
def _load_cached(uri: str) -> TrainedModel:
    return _load(uri, None)


def _not_a_model(uri: str, name: str, problem: Any) -> UsageError:
    """The usage error of a model directory whose file ``name`` is missing or unusable."""
    return UsageError(f"{uri}: not a pixelmill model directory ({name}: {problem})")


def _read_part(uri: str, path: str, name: str,
               storage_options: Mapping[str, Any] | None) -> bytes:
    try:
        return storage.read_bytes(storage.join(path, name), storage_options)
    except OSError as e:  # missing or unreadable: the directory is not a whole model
        raise _not_a_model(uri, name, e) from e


def _check_meta(uri: str, meta: Any) -> dict[str, Any]:
    """``model.json``'s fields that loading and classifying read, checked up front."""
    if not isinstance(meta, dict):
        raise _not_a_model(uri, "model.json", f"expected a JSON object, got "
                           f"{type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise UsageError(f"{uri}: unknown model format {meta.get('format')!r}")
    kind = meta.get("kind")
    if kind not in ("sklearn", "cnn"):
        raise _not_a_model(uri, "model.json", "'kind' missing or unknown (expected 'sklearn' "
                           f"or 'cnn', got {kind!r})")
    classes = meta.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) for c in classes)):
        raise _not_a_model(uri, "model.json", "'classes' missing or not a list of at least "
                           "two class names")
    if kind == "sklearn":
        features = meta.get("features")
        if not isinstance(features, list) or not all(
                isinstance(c, str) and c.startswith("vec_") for c in features):
            raise _not_a_model(uri, "model.json", "'features' missing or not a list of vec_ "
                               "columns")
        if meta.get("pipeline") is not None and not isinstance(meta["pipeline"], dict):
            raise _not_a_model(uri, "model.json", "'pipeline' is not a JSON object")
    elif not isinstance(meta.get("config"), dict):
        raise _not_a_model(uri, "model.json", "'config' (the CNN's settings) missing or not a "
                           "JSON object")
    return meta


def _load(uri: str, storage_options: Mapping[str, Any] | None) -> TrainedModel:
    from pixelmill.learn.classifiers import load_sklearn
    from pixelmill.learn.cnn import CNNModel

    path = _resolve(uri)
    try:
        meta = json.loads(storage.read_bytes(storage.join(path, "model.json"), storage_options))
    except (OSError, ValueError, RecursionError) as e:
        raise _not_a_model(uri, "model.json", e) from e
    meta = _check_meta(uri, meta)
    if meta["kind"] == "cnn":
        weights = _read_part(uri, path, "weights.safetensors", storage_options)
        try:
            net = CNNModel.from_parts(meta, weights)
        except UsageError as e:  # names the part (weights.safetensors, or a model.json field)
            raise UsageError(f"{uri}: not a pixelmill model directory ({e})") from e
        return TrainedModel("cnn", meta, cnn=net)
    blob = _read_part(uri, path, "model.skops", storage_options)
    try:
        estimator = load_sklearn(blob, classes=meta["classes"])
    except UsageError as e:
        raise _not_a_model(uri, "model.skops", e) from e
    if meta.get("n_features") is None:  # models saved before model.json recorded it
        meta["n_features"] = getattr(estimator, "n_features_in_", None)
    return TrainedModel("sklearn", meta, estimator=estimator)


def load_model(uri: str, storage_options: Mapping[str, Any] | None = None) -> TrainedModel:
    """A model directory (path or URL, or a bundled name); cached per process."""
    if storage_options:
        return _load(uri, storage_options)
    return _load_cached(str(uri))


def read_images(uris: Sequence[str], storage_options: Mapping[str, Any] | None = None,
                threads: int = 4, skip_unreadable: bool = False) -> list[Any]:
    """Decode images (threads; for CNN training and evaluation sets that fit in memory).

    With ``skip_unreadable`` a file that cannot be read or decoded gives its error in its
    place instead of raising."""
    from pixelmill.errors import PixelmillError
    from pixelmill.images import read_image

    def one(uri: str) -> Any:
        try:
            return read_image(uri, storage_options=storage_options)
        except (PixelmillError, OSError, ValueError) as e:
            if not skip_unreadable:
                raise
            return e

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, uris))


def _finite_or_error(image: Any) -> Any:
    """The image, or the reason it cannot be trained on: a float image with NaN / infinite
    pixels would make the training mean, every loss and the saved model NaN."""
    from pixelmill.learn.descriptors import check_finite

    if isinstance(image, np.ndarray):
        try:
            check_finite(image)
        except UnsuitableImageError as e:
            return e
    return image


def _image_table(images: str, label_from: str, storage_options, ratios, salt):
    """(uris, labels, split) of an image folder, split by relative path."""
    from pixelmill.learn.split import assign_split

    entries = storage.list_files(images, recursive=True, storage_options=storage_options)
    if not entries:  # as learn extract on an empty folder: exit 4, not a usage error
        raise NoInputError(f"--images: {images}: no image files found")
    labels = [storage.label_from_path(e.relpath, label_from) for e in entries]
    split = assign_split([e.relpath for e in entries], ratios, salt)
    return [e.uri for e in entries], labels, split


def _warn_unlabelled(labels: Sequence[Any], source: Any, log: Any) -> None:
    """Say how many images have no label (with ``--label-from parent``, the files directly in
    the scanned folder): they are left out of training, not made a class of their own."""
    n = sum(v is None for v in labels)
    if n and log is not None:
        log(f"warning: {n} image{'s' if n > 1 else ''} of {source} {'have' if n > 1 else 'has'} "
            "no label (e.g. files directly in the folder with --label-from parent) and "
            f"{'are' if n > 1 else 'is'} left out of training")


def _warn_untrained(labels: Sequence[Any], split: Sequence[Any], log: Any,
                    fitted: Sequence[str] = ("train",)) -> None:
    """Say which classes have no train image (the hash split is stratified only in
    expectation; a class of 1-3 images may miss train).

    ``fitted``: the splits the final model is fitted on. A feature-table model is refitted on
    train + val, so a class with val images only is still learned (from those alone, and the
    search scored every candidate as wrong on it); a class in neither is never predicted."""
    if log is None:
        return
    known = np.array([v is not None for v in labels], bool)
    labels = np.asarray([str(v) for v in labels], dtype=object)[known]
    split = np.asarray(split, dtype=object)[known]

    def shown(names: list[str]) -> str:
        return ", ".join(repr(c) for c in names[:10]) + (" ..." if len(names) > 10 else "")

    def classes(n: int) -> str:
        return f"{n} class{'es' if n > 1 else ''}"

    trained = set(labels[split == "train"])
    learned = set(labels[np.isin(split, list(fitted))])
    missing = sorted(set(labels) - learned)
    if missing:
        also = " and none in val" if "val" in fitted else ""
        log(f"warning: {classes(len(missing))} with no train image ({shown(missing)}){also}: "
            "the model cannot predict them")
    val_only = sorted(learned - trained)
    if val_only:
        log(f"warning: {classes(len(val_only))} with no train image ({shown(val_only)}): "
            "learned from val images only, after the search scored every candidate on them "
            "as unseen")


def _warn_duplicates(X: np.ndarray, split: Sequence[Any], log: Any) -> None:
    """Say when val/test rows have a feature vector identical to a train row (duplicate images
    under other names: split by content to keep them in one split)."""
    if log is None or not len(X):
        return
    split = np.asarray(split, dtype=object)
    rows = np.ascontiguousarray(X, np.float32)
    digests = [row.tobytes() for row in rows]
    train = {d for d, s in zip(digests, split, strict=True) if s == "train"}
    leaked = sum(1 for d, s in zip(digests, split, strict=True) if s != "train" and d in train)
    if leaked:
        log(f"warning: {leaked} val/test rows have the same feature vector as a train row "
            "(duplicate images? extract with --split-by content to keep copies in one split)")


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
        Split settings for ``images`` (split by relative path). Every model records the
        settings of its split in ``model.json`` (``split``: ratios, split_by, salt, and where
        they came from; None when the table recorded none), for :func:`evaluate
        <pixelmill.learn.evaluate>` to check that the rows it scores were held out.
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
    from pixelmill.learn.split import split_settings

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
        from pixelmill.learn.cnn import CNNConfig, train_cnn

        cnn_config = cnn_config or CNNConfig()
        cnn_config.check()  # before any image is read

        if images is not None:
            uris, labels, split = _image_table(images, label_from, storage_options, ratios, salt)
            source = images
            settings = split_settings(ratios, "relpath", salt, source="images", uri=images)
        elif features is not None:
            from pixelmill.learn.features import read_table, table_split_settings

            table = read_table(features, storage_options)
            settings = table_split_settings(table, features)
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
        _warn_unlabelled(labels, source, log)
        split_arr = np.asarray(split, dtype=object)
        has_label = np.array([v is not None for v in labels], bool)
        pick = {s: np.flatnonzero((split_arr == s) & has_label) for s in ("train", "val")}
        train_classes = {str(labels[i]) for i in pick["train"]}
        if len(train_classes) < 2:  # before any image is read
            raise UsageError(f"{source}: training needs at least two classes in the train "
                             f"split (found {len(pick['train'])} train images of "
                             f"{len(train_classes)} class{'es' if len(train_classes) != 1 else ''})")
        _warn_untrained(labels, split, log)
        wanted = np.concatenate([pick["train"], pick["val"]]).tolist()  # test: not read
        read = [_finite_or_error(im) for im in
                read_images([uris[i] for i in wanted], storage_options, skip_unreadable=True)]
        pixels = {i: im for i, im in zip(wanted, read, strict=True) if isinstance(im, np.ndarray)}
        unreadable = [{"uri": uris[i], "reason": str(im)} for i, im in zip(wanted, read,
                                                                           strict=True)
                      if not isinstance(im, np.ndarray)]
        if unreadable and log is not None:  # one bad file must not end a long training
            first = unreadable[0]
            shown = (first["reason"] if first["uri"] in first["reason"]
                     else f"{first['uri']}: {first['reason']}")
            log(f"warning: {len(unreadable)} image{'s' if len(unreadable) > 1 else ''} could "
                f"not be read and {'are' if len(unreadable) > 1 else 'is'} left out, e.g. "
                f"{shown}")
        tr = [i for i in pick["train"].tolist() if i in pixels]
        va = [i for i in pick["val"].tolist() if i in pixels]
        net = train_cnn([pixels[i] for i in tr], [labels[i] for i in tr],
                        [pixels[i] for i in va], [labels[i] for i in va],
                        cnn_config, threads=workers, log=log)
        meta = {**net.metadata(), "format": FORMAT, "model": "cnn", "features": [],
                "pipeline": None, "source": source, "split": settings,
                "n_train": len(tr), "n_val": len(va),
                "unreadable": unreadable[:100], "n_unreadable": len(unreadable),
                "val_accuracy": max((h["val_accuracy"] for h in net.history
                                     if "val_accuracy" in h), default=None),
                "fit_seconds": time.perf_counter() - t0}
        trained = TrainedModel("cnn", meta, cnn=net)
    else:
        if features is None:
            raise UsageError(f"{model}: needs a feature table (pixelmill learn extract)")
        fs = load_features(features, columns, storage_options)
        if fs.labels is None:
            raise UsageError(f"{features}: no label column (extract with --label-from)")
        if not fs.labelled.any():
            raise UsageError(f"{features}: no row has a label (extract with --label-from; "
                             "with parent, files directly in the folder have none)")
        X_tr, y_tr = fs.subset("train")
        X_va, y_va = fs.subset("val")
        if len(y_tr) == 0:
            raise UsageError(f"{features}: no rows in the train split")
        _warn_unlabelled(fs.labels, features, log)
        _warn_untrained(fs.labels, fs.split, log, fitted=("train", "val"))
        _warn_duplicates(fs.X, fs.split, log)
        result = fit_classifier(model, X_tr, y_tr.astype(str), X_va, y_va.astype(str),
                                grid=grid, workers=workers)
        if len(y_va) == 0 and log is not None:
            from pixelmill.learn.classifiers import search_grid

            if len(search_grid(model, grid)) > 1:
                log(f"warning: no labelled val rows: nothing was searched, the grid's first "
                    f"candidate {result.params} is used (give the split a val share, e.g. "
                    "extract --ratios 7:1:2)")
        meta = {"format": FORMAT, "kind": "sklearn", "model": model,
                "classes": [str(c) for c in result.model.classes_], "features": fs.columns,
                "n_features": int(X_tr.shape[1]),
                "pipeline": fs.pipeline, "models": fs.models or None, "params": result.params,
                "val_accuracy": result.val_score,
                "search": result.candidates, "source": features,
                "split": fs.split_settings, "n_train": len(y_tr),
                "n_val": len(y_va), "fit_seconds": result.fit_seconds}
        trained = TrainedModel("sklearn", meta, estimator=result.model)
    trained.meta["trained_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    trained.save(out, storage_options)
    return trained
